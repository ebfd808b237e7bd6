"""What idverify tells its operators about itself, none of it personal data.

``telemetry`` holds the OpenTelemetry traces and metrics and the one attribute allow-list every
span, metric and log attribute passes; ``light_spans`` is the tracer for idverify's own spans;
``otlp_encoding`` writes OTLP/gRPC export requests straight to protobuf wire format; ``logs``
configures logging to stderr as text or JSON lines carrying the trace and request ids.
"""

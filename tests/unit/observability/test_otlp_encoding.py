"""The hand-written OTLP encoding builds the same message as the OpenTelemetry exporters' encoder."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from idverify.observability.otlp_encoding import HandEncodedSpanExporter, encode_export_request


def _spans() -> list[ReadableSpan]:
    """Spans of two resources and three scopes, with every kind of field set somewhere."""
    kept = InMemorySpanExporter()
    for service in ("idverify", "other"):
        provider = TracerProvider(resource=Resource.create({"service.name": service, "service.instance": 7}))
        provider.add_span_processor(SimpleSpanProcessor(kept))
        plain = provider.get_tracer("idverify")
        versioned = provider.get_tracer("lib", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.21.0")
        remote = SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C,
            0xB7AD6B7169203331,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("vendor", "value"), ("other", "x")]),
        )
        with plain.start_as_current_span(
            "LookupIp",
            context=set_span_in_context(NonRecordingSpan(remote)),
            kind=SpanKind.SERVER,
            attributes={"rpc.method": "LookupIp", "rpc.grpc.status_code": "OK"},
        ) as server:
            with plain.start_span("geo.lookup", kind=SpanKind.CLIENT) as leaf:
                leaf.set_attributes({"count": 3, "negative": -5, "ratio": 0.25, "ok": True, "off": False})
                leaf.set_attribute("codes", ["CN", "US"])
                leaf.set_attribute("empty", "")
            server.set_status(Status(StatusCode.ERROR, "deadline"))
        with versioned.start_span(
            "root", links=[Link(remote, {"why": "batch"})], kind=SpanKind.PRODUCER
        ) as root:
            root.add_event("retry", {"attempt": 2})
            root.add_event("plain")
            root.set_status(Status(StatusCode.OK))
        with versioned.start_span("consumer", kind=SpanKind.CONSUMER):
            pass
    return list(kept.get_finished_spans())


def test_the_same_message_as_the_stock_encoder() -> None:
    spans = _spans()
    ours = ExportTraceServiceRequest.FromString(encode_export_request(spans))
    assert ours == encode_spans(spans)
    assert len(ours.resource_spans) == 2
    assert sum(len(scope.spans) for rs in ours.resource_spans for scope in rs.scope_spans) == len(spans)


def test_each_span_alone_matches_too() -> None:
    for span in _spans():
        assert ExportTraceServiceRequest.FromString(encode_export_request([span])) == encode_spans([span])


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_export_request([]) == b""


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []

    def Export(  # noqa: N802 - the generated name
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        del context
        self.requests.append(request)
        return ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[_Collector, int]]:
    received = _Collector()
    server = grpc.server(ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(received, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield received, port
    finally:
        server.stop(None)


def test_the_exporter_delivers_the_stock_message_to_a_collector(collector: tuple[_Collector, int]) -> None:
    received, port = collector
    spans = _spans()
    exporter = HandEncodedSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, timeout=10)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert received.requests == [encode_spans(spans)]

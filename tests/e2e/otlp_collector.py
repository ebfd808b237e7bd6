"""An OTLP trace collector for the e2e tests: a gRPC TraceService that decodes and keeps the spans.

The server under test exports to it as to any collector (``telemetry.traces = "otlp"``); the
requests are decoded with the ``opentelemetry-proto`` messages, not with the project's encoder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


class OtlpCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span exported to it; ``endpoint`` is what the server's config names."""

    def __init__(self) -> None:
        self.spans: list[trace_pb2.Span] = []
        self._arrived = threading.Condition()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{port}"

    def Export(  # noqa: N802 - the gRPC method's name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        del context
        with self._arrived:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend(scope.spans)
            self._arrived.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(grace=None)

    def wait_for(
        self, predicate: Callable[[list[trace_pb2.Span]], bool], timeout: float = 30.0
    ) -> list[trace_pb2.Span]:
        """Waits until ``predicate(spans)`` holds; the spans then."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not predicate(self.spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not exported in time: {len(self.spans)} spans")
                self._arrived.wait(left)
            return list(self.spans)

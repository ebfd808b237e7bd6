"""A stand-in OTLP collector for benchmarks: accepts traces and metrics over gRPC and drops them.

It does not even decode what it receives (a real collector runs on other machines; here it
shares the benchmark's cores), and counts export requests and bytes instead of spans.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import grpc

_SERVICES = (
    "opentelemetry.proto.collector.trace.v1.TraceService",
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
)


class OtlpSink:
    """Runs the sink on a free loopback port."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes_received = 0
        self._server = grpc.server(ThreadPoolExecutor(max_workers=2))
        handlers = [
            grpc.method_handlers_generic_handler(
                service, {"Export": grpc.unary_unary_rpc_method_handler(self._drop)}
            )
            for service in _SERVICES
        ]
        self._server.add_generic_rpc_handlers(handlers)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def _drop(self, request: bytes, context: Any) -> bytes:
        del context
        self.exports += 1
        self.bytes_received += len(request)
        return b""  # an empty Export*ServiceResponse

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(grace=None)

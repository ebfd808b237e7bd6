"""A stand-in OTLP collector for benchmarks: accepts traces and metrics over gRPC and drops them.

It runs in a process of its own, as a real collector would: in the benchmark's process it took
the GIL from the load generator, whose calls per second are the figure being measured, and
charged the collector's work to the service's telemetry. It does not decode what it receives,
and counts export requests and bytes instead of spans.

    python bench/otlp_sink.py   # prints its port; for each line read, its counts as JSON
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Self

import grpc

_SERVICES = (
    "opentelemetry.proto.collector.trace.v1.TraceService",
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
)


class _Counting:
    """The collector itself: a gRPC server whose Export methods count and drop."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes_received = 0
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        handlers = [
            grpc.method_handlers_generic_handler(
                service, {"Export": grpc.unary_unary_rpc_method_handler(self._drop)}
            )
            for service in _SERVICES
        ]
        self.server.add_generic_rpc_handlers(handlers)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _drop(self, request: bytes, context: Any) -> bytes:
        del context
        self.exports += 1
        self.bytes_received += len(request)
        return b""  # an empty Export*ServiceResponse


class OtlpSink:
    """Runs the collector in a child process on a free loopback port."""

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.port = int(self._pipes()[1].readline())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._process is not None  # noqa: S101
        self._process.communicate(timeout=30)  # closing stdin ends the collector

    @property
    def exports(self) -> int:
        """Export requests received so far."""
        return int(self._counts()["exports"])

    @property
    def bytes_received(self) -> int:
        """Bytes of export requests received so far."""
        return int(self._counts()["bytes_received"])

    def _counts(self) -> dict[str, int]:
        ask, answer = self._pipes()
        ask.write("\n")
        ask.flush()
        counts: dict[str, int] = json.loads(answer.readline())
        return counts

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self._process is not None  # noqa: S101
        assert self._process.stdin is not None  # noqa: S101 - opened with pipes
        assert self._process.stdout is not None  # noqa: S101
        return self._process.stdin, self._process.stdout


def main() -> None:
    collector = _Counting()
    collector.server.start()
    print(collector.port, flush=True)
    for _ in sys.stdin:
        counts = {"exports": collector.exports, "bytes_received": collector.bytes_received}
        print(json.dumps(counts), flush=True)
    collector.server.stop(grace=None)


if __name__ == "__main__":
    main()

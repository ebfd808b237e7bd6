"""The gRPC side of the IP-location benchmark: batches and lookups against a running server.

Measured in one run, all against ``idverify serve`` on its embedded default:

- the floor: throughput of an empty gRPC call (the health service's Check: no auth, no work);
- ``GetIpLocations`` with 100 accounts: throughput, its ratio to the floor, p50/p99 latency;
- ``LookupIp`` throughput with telemetry off, and with traces and metrics on (OTLP to a
  collector stand-in that drops the data): the cost of telemetry on that call.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from otlp_sink import OtlpSink

from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, account_pb2_grpc

TELEMETRY = """
[telemetry]
traces = "otlp"
metrics = "otlp"
otlp_endpoint = "http://127.0.0.1:{port}"
"""
LOOSE = """
[rate_limits]
per_principal_per_minute = 1000000000
"""
ACCOUNTS = 100


async def _load(
    call: Callable[[], Awaitable[Any]], seconds: float, concurrency: int
) -> tuple[float, list[float]]:
    """Calls as fast as ``concurrency`` workers can for ``seconds``; (calls/s, latencies)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - began), latencies


async def _measure(server: ServerProcess, seconds: float, *, with_batch: bool) -> dict[str, float]:
    metadata = (("authorization", f"Bearer {server.token('platform')}"),)
    figures: dict[str, float] = {}
    async with grpc.aio.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        accounts = account_pb2_grpc.AccountServiceStub(channel)
        ids = [f"bench-geo-{n}" for n in range(ACCOUNTS)]
        for n, account in enumerate(ids):
            await accounts.RecordLoginIp(
                account_pb2.RecordLoginIpRequest(account_id=account, ip=f"8.8.{n % 250}.8"), metadata=metadata
            )
        lookup = account_pb2.LookupIpRequest(ip="8.8.8.8")
        await accounts.LookupIp(lookup, metadata=metadata)  # waits for the database to be loaded
        if with_batch:
            empty, _ = await _load(lambda: health.Check(health_pb2.HealthCheckRequest()), seconds, 16)
            batch_request = account_pb2.GetIpLocationsRequest(account_ids=ids)
            batch, latencies = await _load(
                lambda: accounts.GetIpLocations(batch_request, metadata=metadata), seconds, 16
            )
            quantiles = statistics.quantiles(latencies, n=100)
            # p99 on an idle machine: one caller at a time.
            _, idle = await _load(
                lambda: accounts.GetIpLocations(batch_request, metadata=metadata), seconds / 2, 1
            )
            idle_quantiles = statistics.quantiles(idle, n=100)
            figures |= {
                "empty_call_per_s": empty,
                "get_ip_locations_100_per_s": batch,
                "batch_ratio_to_empty_call": batch / empty,
                "batch_p50_ms_loaded": quantiles[49] * 1000,
                "batch_p99_ms_loaded": quantiles[98] * 1000,
                "batch_p99_ms_idle": idle_quantiles[98] * 1000,
            }
        figures["lookup_ip_per_s"], _ = await _load(
            lambda: accounts.LookupIp(lookup, metadata=metadata), seconds, 16
        )
    return figures


def measure_grpc(seconds: float = 3.0) -> dict[str, float]:
    """Starts servers (telemetry off, then on) and measures; returns rounded figures."""
    with tempfile.TemporaryDirectory(prefix="idverify-geo-grpc-") as scratch:
        root = Path(scratch)
        with ServerProcess(root / "plain", config=LOOSE) as plain:
            figures = asyncio.run(_measure(plain, seconds, with_batch=True))
        with (
            OtlpSink() as sink,
            ServerProcess(root / "traced", config=LOOSE + TELEMETRY.format(port=sink.port)) as traced,
        ):
            traced_figures = asyncio.run(_measure(traced, seconds, with_batch=False))
            figures["otlp_exports_received"] = sink.exports
    figures["lookup_ip_traced_per_s"] = traced_figures["lookup_ip_per_s"]
    figures["lookup_ip_telemetry_cost"] = 1 - traced_figures["lookup_ip_per_s"] / figures["lookup_ip_per_s"]
    return {key: round(value, 3) for key, value in figures.items()}

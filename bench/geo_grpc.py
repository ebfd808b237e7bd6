"""The gRPC side of the IP-location benchmark: batches and lookups against a running server.

Measured in one run, all against ``idverify serve`` on its embedded default:

- the floor: throughput of an empty gRPC call (the health service's Check: no auth, no work);
- ``GetIpLocations`` with 100 accounts: throughput, its ratio to the floor, p50/p99 latency;
- ``LookupIp`` throughput with telemetry off, and with traces and metrics on (OTLP to a
  collector stand-in that drops the data): the cost of telemetry on that call, as lost
  throughput and as the share of the server's CPU per call that telemetry takes.
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
_TABLE_BUILD_ATTEMPTS = 12


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


class _Target:
    """One running server with the stubs and requests the measurements send it."""

    def __init__(self, server: ServerProcess, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.metadata = (("authorization", f"Bearer {server.token('platform')}"),)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.accounts = account_pb2_grpc.AccountServiceStub(channel)
        self.ids = [f"bench-geo-{n}" for n in range(ACCOUNTS)]
        self.batch = account_pb2.GetIpLocationsRequest(account_ids=self.ids)
        self.lookup = account_pb2.LookupIpRequest(ip="8.8.8.8")

    async def prepare(self) -> None:
        # A worker builds its IP tables on its first lookup (longer than a call may take on a
        # loaded machine): wait for them before the labels are recorded.
        for _ in range(_TABLE_BUILD_ATTEMPTS):
            try:
                await self.accounts.LookupIp(self.lookup, metadata=self.metadata)
                break
            except grpc.aio.AioRpcError as error:
                if error.code() not in {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE}:
                    raise
        for n, account in enumerate(self.ids):
            await self.accounts.RecordLoginIp(
                account_pb2.RecordLoginIpRequest(account_id=account, ip=f"8.8.{n % 250}.8"),
                metadata=self.metadata,
            )
        await self.accounts.LookupIp(self.lookup, metadata=self.metadata)  # waits for the database
        await asyncio.to_thread(self.server.wait_quiet)

    async def empty_calls(self, seconds: float) -> float:
        calls_per_s, _ = await _load(lambda: self.health.Check(health_pb2.HealthCheckRequest()), seconds, 16)
        return calls_per_s

    async def batches(self, seconds: float, concurrency: int) -> tuple[float, list[float]]:
        return await _load(
            lambda: self.accounts.GetIpLocations(self.batch, metadata=self.metadata), seconds, concurrency
        )

    async def lookups(self, seconds: float) -> tuple[float, float]:
        """LookupIp calls per second, and the server's CPU microseconds per call."""
        cpu_before = self.server.cpu_seconds()
        calls_per_s, latencies = await _load(
            lambda: self.accounts.LookupIp(self.lookup, metadata=self.metadata), seconds, 16
        )
        return calls_per_s, (self.server.cpu_seconds() - cpu_before) / len(latencies) * 1e6


async def _measure(
    plain: ServerProcess, traced: ServerProcess, seconds: float, rounds: int
) -> dict[str, float]:
    """Alternates the measurements over ``rounds`` and keeps each one's median.

    The machine's speed drifts by tens of percent within a minute here; comparing figures taken
    side by side, round after round, keeps that drift out of the ratios.
    """
    samples: dict[str, list[float]] = {}

    def keep(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    async with (
        grpc.aio.insecure_channel(plain.target) as plain_channel,
        grpc.aio.insecure_channel(traced.target) as traced_channel,
    ):
        off, on = _Target(plain, plain_channel), _Target(traced, traced_channel)
        await off.prepare()
        await on.prepare()
        for _ in range(rounds):
            empty = await off.empty_calls(seconds)
            batch, latencies = await off.batches(seconds, 16)
            keep("empty_call_per_s", empty)
            keep("get_ip_locations_100_per_s", batch)
            keep("batch_ratio_to_empty_call", batch / empty)
            quantiles = statistics.quantiles(latencies, n=100)
            keep("batch_p50_ms_loaded", quantiles[49] * 1000)
            keep("batch_p99_ms_loaded", quantiles[98] * 1000)
            # p99 on an idle machine: one caller at a time.
            _, idle = await off.batches(seconds / 2, 1)
            keep("batch_p99_ms_idle", statistics.quantiles(idle, n=100)[98] * 1000)
            plain_rate, plain_cpu = await off.lookups(seconds)
            traced_rate, traced_cpu = await on.lookups(seconds)
            keep("lookup_ip_per_s", plain_rate)
            keep("lookup_ip_traced_per_s", traced_rate)
            keep("lookup_ip_telemetry_cost", 1 - traced_rate / plain_rate)
            # The same cost as the server's own CPU per call: on two cores the load generator,
            # Redis and the collector stand-in share the other core, and throughput counts them.
            keep("lookup_ip_server_cpu_us", plain_cpu)
            keep("lookup_ip_traced_server_cpu_us", traced_cpu)
            keep("lookup_ip_telemetry_cpu_cost", 1 - plain_cpu / traced_cpu)
    return {name: statistics.median(values) for name, values in samples.items()}


def measure_grpc(seconds: float = 3.0, rounds: int = 3) -> dict[str, float]:
    """Starts a server with telemetry off and one with it on, and measures both; rounded figures.

    Each server runs one worker, which the supervisor pins to one core: the load generator's one
    connection reaches one worker anyway, and an unpinned one sometimes shared a core with the
    load generator, which halved a run's figures at random.
    """
    one_worker = ["--workers", "1"]
    with tempfile.TemporaryDirectory(prefix="idverify-geo-grpc-") as scratch:
        root = Path(scratch)
        with (
            OtlpSink() as sink,
            ServerProcess(root / "plain", config=LOOSE, extra_args=one_worker) as plain,
            ServerProcess(
                root / "traced", config=LOOSE + TELEMETRY.format(port=sink.port), extra_args=one_worker
            ) as traced,
        ):
            figures = asyncio.run(_measure(plain, traced, seconds, rounds))
            figures["rounds"] = rounds
            figures["otlp_exports_received"] = sink.exports
    return {key: round(value, 3) for key, value in figures.items()}

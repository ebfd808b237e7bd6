"""Event streams: StreamEvents from a cursor, WatchVerification until final, both on a budget.

A client holds at most ``streams_per_client`` streams at once, over every worker and replica (a
lease per stream in Redis, ending on its own at the stream's lifetime plus a margin). A stream
ends after ``stream_lifetime_seconds`` with DEADLINE_EXCEEDED naming the cursor to resume from,
so a stream never outlives a token's revocation by more than that, and connections rebalance.

The leases are taken and given back through :class:`StreamLeases`, the port declared here;
``store.stream_leases.RedisStreamLeases`` implements it (the client's sorted set of leases,
``event_stream_lease.lua``). Events are read through :class:`EventReads` and waited for through
:class:`EventWaits` (``events.outbox.Outbox`` and ``events.tail.OutboxTail``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, Protocol

from idverify.config import EventSettings
from idverify.domain.errors import RateLimited, StreamEnded
from idverify.events.outbox import Event, check_cursor, check_types
from idverify.flows.verification import VerificationView
from idverify.security.principals import Principal

__all__ = ["FINAL_STATUSES", "EventReads", "EventStreams", "EventWaits", "StreamLeases"]

FINAL_STATUSES: Final = frozenset({"VERIFIED", "REJECTED", "EXPIRED"})
_BATCH: Final = 200
# A lease outlives its stream by this much: a stream ending at its lifetime gives it back first.
_LEASE_MARGIN_MS: Final = 10_000
# A watched verification is read again this long after it expires (its expiry is lazy).
_EXPIRY_MARGIN_SECONDS: Final = 0.05


class StreamLeases(Protocol):
    """Each client's open streams, over every worker and replica; every method may raise StoreUnavailable."""

    async def take(self, tenant: str, client_id: str, token: str, *, limit: int, lease_ms: int) -> bool:
        """Takes a lease named ``token``, ending by itself after ``lease_ms``; False: ``limit`` are held."""
        ...

    async def give(self, tenant: str, client_id: str, token: str) -> None:
        """Gives the lease back (nothing when it ended already)."""
        ...


class EventReads(Protocol):
    """A tenant's events as read from its outbox (``events.outbox.Outbox``)."""

    async def check_kept(self, tenant: str, after: str) -> None:
        """Refuses (OutOfRange) a cursor whose successors are no longer kept."""
        ...

    async def read(
        self, tenant: str, after: str, count: int, types: frozenset[str] = frozenset()
    ) -> tuple[list[Event], str]:
        """Up to ``count`` records after ``after`` as events (of ``types``), and the cursor read to."""
        ...

    async def last_cursor(self, tenant: str) -> str:
        """The newest event's cursor, or empty while there is none."""
        ...


class EventWaits(Protocol):
    """Waits for a tenant's next events (``events.tail.OutboxTail``)."""

    async def wait_past(self, tenant: str, cursor: str, seconds: float) -> bool:
        """Whether an event after ``cursor`` arrived within ``seconds``."""
        ...


class EventStreams:
    """The streams of one worker."""

    def __init__(
        self, outbox: EventReads, tail: EventWaits, leases: StreamLeases, settings: EventSettings
    ) -> None:
        self._outbox = outbox
        self._tail = tail
        self._leases = leases
        self._settings = settings

    @contextlib.asynccontextmanager
    async def _lease(self, principal: Principal) -> AsyncIterator[None]:
        tenant, client_id = principal.tenant, principal.client_id
        token = secrets.token_hex(8)
        lease_ms = int(self._settings.stream_lifetime_seconds * 1000) + _LEASE_MARGIN_MS
        limit = self._settings.streams_per_client
        if not await self._leases.take(tenant, client_id, token, limit=limit, lease_ms=lease_ms):
            raise RateLimited(
                f"this client already holds {limit} open event streams (events.streams_per_client)",
                reason="STREAM_BUDGET_EXHAUSTED",
                retry_after=1.0,
            )
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await self._leases.give(tenant, client_id, token)

    async def events(
        self,
        principal: Principal,
        types: list[str],
        after: str,
        *,
        until_caught_up: bool,
        on_batch: Callable[[list[Event]], Awaitable[None]] | None = None,
    ) -> AsyncIterator[Event]:
        """The tenant's events after ``after`` (of ``types``), then new ones, until the lifetime ends.

        ``on_batch`` is told each batch read before it is sent (the read accounting).

        Raises:
            InvalidArgument: an unknown type (naming its index) or a malformed cursor.
            OutOfRange: the events after ``after`` are no longer kept.
            RateLimited: the client holds its budget of streams.
            StreamEnded: the lifetime ran out (metadata ``cursor``: where to resume).
        """
        wanted = check_types(types)
        cursor = check_cursor(after)
        tenant = principal.tenant
        await self._outbox.check_kept(tenant, cursor)
        async with self._lease(principal):
            deadline = asyncio.get_running_loop().time() + self._settings.stream_lifetime_seconds
            while True:
                events, read_to = await self._outbox.read(tenant, cursor, _BATCH, wanted)
                if events and on_batch is not None:
                    await on_batch(events)
                for event in events:
                    yield event
                if read_to != cursor:
                    cursor = read_to  # records were there (some perhaps of other types): read on
                    continue
                if until_caught_up:
                    return
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0 or not await self._tail.wait_past(tenant, cursor, remaining):
                    raise _ended(cursor)

    async def watch(
        self,
        principal: Principal,
        read: Callable[[], Awaitable[VerificationView]],
        verification_id: str,
    ) -> AsyncIterator[VerificationView]:
        """A verification's state now and after each of its events, until final or the lifetime ends.

        ``read`` reads the state (GetVerification's flow), also once the verification is due to
        expire, since expiry is written when it is read. The caller drops repeats.

        Raises:
            RateLimited: the client holds its budget of streams.
            StreamEnded: the lifetime ran out.
        """
        tenant = principal.tenant
        async with self._lease(principal):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._settings.stream_lifetime_seconds
            # The cursor first: a change after it is seen, whether before or after the read.
            cursor = await self._outbox.last_cursor(tenant)
            view = await read()
            yield view
            while view.status not in FINAL_STATUSES:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise _ended(cursor)
                until_expiry = max(view.expires_ms / 1000 - time.time(), 0.0) + _EXPIRY_MARGIN_SECONDS
                await self._tail.wait_past(tenant, cursor, min(remaining, until_expiry))
                events, cursor = await self._drain(tenant, cursor)
                concerned = any(event.verification_id == verification_id for event in events)
                if not concerned and time.time() * 1000 < view.expires_ms:
                    continue
                view = await read()
                yield view

    async def _drain(self, tenant: str, cursor: str) -> tuple[list[Event], str]:
        found: list[Event] = []
        while True:
            events, after = await self._outbox.read(tenant, cursor, _BATCH)
            found += events
            if after == cursor:
                return found, cursor
            cursor = after


def _ended(cursor: str) -> StreamEnded:
    error = StreamEnded(
        "the stream reached its maximum lifetime (events.stream_lifetime_seconds): resume after its cursor",
        reason="STREAM_LIFETIME_ENDED",
    )
    error.metadata["cursor"] = cursor
    return error

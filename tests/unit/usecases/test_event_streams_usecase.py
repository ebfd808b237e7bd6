"""EventStreams over in-memory leases and a list of events: budgets, reading on, endings; no Redis or gRPC.

Each test shows one decision of ``events.streams``: a client's budget of open streams over every
worker, the lease given back however a stream ends, a stream reading on past records of other
types, and a stream that outlives its lifetime ending with the cursor to resume from.
``tests/e2e/test_events.py`` runs it over Redis and through the server.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from idverify.config import EventSettings
from idverify.domain.errors import OutOfRange, RateLimited, StoreUnavailable, StreamEnded
from idverify.events.outbox import Event, cursor_key
from idverify.events.streams import EventStreams
from idverify.security.principals import Principal, Role
from idverify.testing.memory_stream_leases import MemoryStreamLeases

PLATFORM = Principal("acme", Role.PLATFORM, "c1")


class Events:
    """A tenant's outbox as a list: records ``(cursor, type)``, read a few at a time."""

    def __init__(self, records: list[tuple[str, str]], oldest_kept: int = 0) -> None:
        self.records = records
        self.oldest_kept = oldest_kept
        self.waits = 0

    async def check_kept(self, tenant: str, after: str) -> None:
        del tenant
        if after and int(after.split("-", maxsplit=1)[0]) < self.oldest_kept:
            raise OutOfRange("trimmed", reason="CURSOR_EXPIRED")

    async def read(
        self, tenant: str, after: str, count: int, types: frozenset[str] = frozenset()
    ) -> tuple[list[Event], str]:
        del tenant
        later = [r for r in self.records if cursor_key(r[0]) > cursor_key(after)]
        batch = later[:count]
        if not batch:
            return [], after
        events = [Event(cursor, kind, 0, 0) for cursor, kind in batch if not types or kind in types]
        return events, batch[-1][0]

    async def last_cursor(self, tenant: str) -> str:
        del tenant
        return self.records[-1][0] if self.records else ""

    async def wait_past(self, tenant: str, cursor: str, seconds: float) -> bool:
        del tenant, cursor, seconds
        self.waits += 1
        return False  # nothing new arrives


def streams(
    events: Events, leases: MemoryStreamLeases, settings: EventSettings | None = None
) -> EventStreams:
    return EventStreams(events, events, leases, settings or EventSettings())


async def drain(stream: AsyncIterator[Event]) -> list[str]:
    return [event.cursor async for event in stream]


async def test_a_stream_reads_on_past_other_types_and_gives_its_lease_back() -> None:
    records = [(f"{n}-0", "verification.verified" if n % 2 else "challenge.sent") for n in range(1, 451)]
    events, leases = Events(records), MemoryStreamLeases()
    got = await drain(
        streams(events, leases).events(PLATFORM, ["verification.verified"], "", until_caught_up=True)
    )
    assert got == [f"{n}-0" for n in range(1, 451, 2)]
    assert leases.held("acme", "c1") == 0


async def test_a_client_holds_at_most_its_budget_of_streams() -> None:
    events, leases = Events([("1-0", "challenge.sent")]), MemoryStreamLeases()
    hub = streams(events, leases, EventSettings(streams_per_client=2))
    open_ = [hub.events(PLATFORM, [], "", until_caught_up=False) for _ in range(3)]
    assert [e.cursor for e in [await anext(open_[0]), await anext(open_[1])]] == ["1-0", "1-0"]
    with pytest.raises(RateLimited) as refused:
        await anext(open_[2])
    assert (refused.value.reason, refused.value.retry_after) == ("STREAM_BUDGET_EXHAUSTED", 1.0)
    other = streams(events, leases).events(
        Principal("acme", Role.PLATFORM, "c2"), [], "", until_caught_up=True
    )
    assert await drain(other) == ["1-0"]  # another client's budget
    first = open_[0]
    assert isinstance(first, AsyncGenerator)  # a stream is one: closing it ends the stream
    await first.aclose()
    assert leases.held("acme", "c1") == 1
    assert await drain(hub.events(PLATFORM, [], "", until_caught_up=True)) == ["1-0"]


async def test_a_stream_ends_at_its_lifetime_naming_the_cursor_to_resume_from() -> None:
    events, leases = Events([("5-0", "challenge.sent"), ("7-0", "challenge.sent")]), MemoryStreamLeases()
    stream = streams(events, leases, EventSettings(stream_lifetime_seconds=0.0)).events(
        PLATFORM, [], "", until_caught_up=False
    )
    assert [await anext(stream), await anext(stream)] == [
        Event("5-0", "challenge.sent", 0, 0),
        Event("7-0", "challenge.sent", 0, 0),
    ]
    with pytest.raises(StreamEnded) as ended:
        await anext(stream)
    assert (ended.value.reason, ended.value.metadata["cursor"]) == ("STREAM_LIFETIME_ENDED", "7-0")
    assert leases.held("acme", "c1") == 0


async def test_a_cursor_no_longer_kept_is_refused_before_a_lease_is_taken() -> None:
    events, leases = Events([("5-0", "challenge.sent")], oldest_kept=3), MemoryStreamLeases()
    with pytest.raises(OutOfRange):
        await drain(streams(events, leases).events(PLATFORM, [], "2-0", until_caught_up=True))
    leases.down = True  # no lease was asked for
    with pytest.raises(OutOfRange):
        await drain(streams(events, leases).events(PLATFORM, [], "2-0", until_caught_up=True))


async def test_a_lease_not_given_back_is_no_error_for_the_stream() -> None:
    events, leases = Events([("5-0", "challenge.sent")]), MemoryStreamLeases()
    stream = streams(events, leases).events(PLATFORM, [], "", until_caught_up=True)
    assert (await anext(stream)).cursor == "5-0"
    leases.down = True  # Redis gone before the lease is given back: it ends by itself
    assert await drain(stream) == []
    with pytest.raises(StoreUnavailable):
        await drain(streams(events, leases).events(PLATFORM, [], "", until_caught_up=True))

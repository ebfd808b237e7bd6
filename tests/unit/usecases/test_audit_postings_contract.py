"""The console charts' AuditPostings port's contract, on the in-memory log and on Redis alike.

``testing.memory_audit_postings.MemoryAuditPostings`` over a ``MemoryAuditLog`` (what
``test_console_charts_usecase.py`` draws the charts on) and ``store.audit_postings.RedisAuditPostings``
over a real redis-server (entries appended by the prelude's real ``audit()``, its index
postings, ``audit_seek.lua`` and GETRANGE) answer every assertion here the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from idverify.audit.events import parse_entry
from idverify.audit.query import Posting, PostingSeek
from idverify.console.charts import AuditPostings
from idverify.flows.audit import AuditLog
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.audit_postings import RedisAuditPostings
from idverify.store.connection import RedisClient
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender
from idverify.testing.memory_audit_log import MemoryAuditLog
from idverify.testing.memory_audit_postings import MemoryAuditPostings

Event = tuple[Mapping[str, str], Mapping[str, str]]
STARTED, VERIFIED = Posting("type", "verification.started"), Posting("type", "verification.verified")
SMS, NONE = Posting("method", "sms"), Posting("type", "rate_limit.hit")


class Appender:
    def __init__(self, memory: MemoryAuditLog | None, redis: RedisClient | None) -> None:
        self._memory = memory
        self._redis = SyntheticAppender(redis) if redis is not None else None

    async def __call__(self, tenant: str, events: list[Event]) -> None:
        if self._memory is not None:
            for request, fields in events:
                self._memory.append(tenant, request, fields)
                self._memory.now += 1  # some entries' times differ, so a seek has somewhere to land
        else:
            assert self._redis is not None
            await self._redis.append(tenant, events)


@dataclass(frozen=True, slots=True)
class World:
    postings: AuditPostings
    log: AuditLog  # to read the entries' times back
    append: Appender


@pytest.fixture(params=["memory", "redis"])
def world(request: pytest.FixtureRequest, own_client: RedisClient) -> World:
    if request.param == "memory":
        memory = MemoryAuditLog()
        return World(MemoryAuditPostings(memory), memory, Appender(memory, None))
    log = RedisAuditLog(own_client, Scripts(own_client))
    return World(RedisAuditPostings(log), log, Appender(None, own_client))


def events(count: int) -> list[Event]:
    """Starts and verifications alternating; every third by sms."""
    return [
        (
            {"principal": "acme/registrar/c1", "request_id": f"r{n}"},
            {
                "type": "verification.verified" if n % 2 else "verification.started",
                "outcome": "verified" if n % 2 else "started",
                "method": "sms" if n % 3 == 0 else "email",
                "account": f"a{n}",
            },
        )
        for n in range(count)
    ]


async def times(world: World, tenant: str) -> list[int]:
    size = await world.log.size(tenant)
    return [parse_entry(entry).time_ms for entry in await world.log.entries(tenant, range(size)) if entry]


async def test_contract_an_empty_log_has_empty_postings(world: World) -> None:
    postings = world.postings
    assert await postings.seek_times("acme", [0, 2**62]) == [0, 0]
    assert await postings.seek_postings("acme", [STARTED, SMS], 0) == [PostingSeek(0, 0), PostingSeek(0, 0)]
    assert await postings.read_posting("acme", STARTED, 0, 10) == []


async def test_contract_times_seek_the_first_entry_at_or_after_them(world: World) -> None:
    await world.append("acme", events(9))
    entry_times = await times(world, "acme")
    assert len(entry_times) == 9
    asked = [0, *entry_times, entry_times[-1] + 1, 2**62]
    expected = [next((i for i, t in enumerate(entry_times) if t >= time_ms), 9) for time_ms in asked]
    assert await world.postings.seek_times("acme", asked) == expected


async def test_contract_postings_hold_each_value_s_entry_numbers_in_order(world: World) -> None:
    await world.append("acme", events(9))
    await world.append("globex", events(2))
    postings = world.postings
    assert await postings.read_posting("acme", STARTED, 0, 100) == [0, 2, 4, 6, 8]
    assert await postings.read_posting("acme", VERIFIED, 1, 2) == [3, 5]
    assert await postings.read_posting("acme", SMS, 0, 100) == [0, 3, 6]
    assert await postings.read_posting("acme", Posting("acct", "a4"), 0, 100) == [4]
    assert await postings.read_posting("acme", NONE, 0, 100) == []
    assert await postings.read_posting("globex", STARTED, 0, 100) == [0]
    assert await postings.seek_postings("acme", [STARTED, VERIFIED, SMS, NONE], 3) == [
        PostingSeek(2, 5),
        PostingSeek(1, 4),
        PostingSeek(1, 3),
        PostingSeek(0, 0),
    ]
    assert await postings.seek_postings("acme", [STARTED], 9) == [PostingSeek(5, 5)]

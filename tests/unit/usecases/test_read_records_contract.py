"""The ReadRecords port's contract: the in-memory records and Redis answer alike.

Each test runs on ``idverify.testing.memory_read_records.MemoryReadRecords`` and on
``store.read_records.RedisReadRecords`` over the suite's redis-server (a tenant of its own per
test), in one script and step by step (the accounts read, then the read's accounting). Both
clocks are set to the same times, some minutes ahead of Redis's own (the deployment's clock
floor, ``store/clock.py``), so a minute's closing is judged alike.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from idverify.audit.events import EventType
from idverify.flows.read_accounting import (
    MINUTE_MS,
    Category,
    MinuteClose,
    Reader,
    ReadRecords,
    accounts_digest,
)
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.read_records import RedisReadRecords
from idverify.store.scripts import Scripts
from idverify.testing.memory_read_records import MemoryReadRecords
from tests.unit.usecases.contract import audit_events

_tenants = itertools.count()
LEAKED = Reader("c0ffee", "t/platform/c0ffee", "GetAccount")
OTHER = Reader("beef00", "t/platform/beef00", "ListConsents")
VERIFICATION = [Category.VERIFICATION]
DAYS = 7
Summary = tuple[str, dict[str, str]]  # principal, attributes


@dataclass(slots=True)
class Port:
    store: ReadRecords
    clock: Callable[[int], Awaitable[None]]  # sets the store's time (ms), later each call
    account: Callable[[str, str, str], Awaitable[None]]  # tenant, pseudonym, identity ref or ""
    summaries: Callable[[str], Awaitable[list[Summary]]]


@pytest.fixture
def tenant() -> str:
    return f"reads-contract-{next(_tenants)}"


def memory_port() -> Port:
    memory = MemoryReadRecords()

    async def clock(ms: int) -> None:
        memory.now = ms

    async def account(tenant: str, ps: str, ref: str) -> None:
        memory.accounts[tenant, ps] = ref

    async def summaries(tenant: str) -> list[Summary]:
        return [(s.principal, s.attributes) for s in memory.summaries if s.tenant == tenant]

    return Port(memory, clock, account, summaries)


def redis_port(redis: RedisClient, *, step_by_step: bool = False) -> Port:
    """Redis's; ``step_by_step``: the accounts read, then the read's accounting, as on a Cluster."""

    def store() -> RedisReadRecords:
        scripts = Scripts(redis)
        return RedisReadRecords(redis, scripts, steps=StepRunner(scripts, step_by_step=step_by_step))

    async def clock(ms: int) -> None:
        # A process samples the floor every few seconds: new scripts read the one set here now.
        await redis.set(GlobalKeys.CLOCK_FLOOR, ms)
        made.store = store()

    async def account(tenant: str, ps: str, ref: str) -> None:
        # A bound account names its identity; an unbound one has a record all the same.
        field, value = ("identity", ref) if ref else ("superseded_ms", "1")
        await redis.hset(TenantKeys(tenant).account(ps), field, value)

    async def summaries(tenant: str) -> list[Summary]:
        events = await audit_events(redis, tenant)
        assert {event.type for event in events} <= {EventType.READS_SUMMARIZED}
        return [(event.principal, dict(event.attributes)) for event in events]

    made = Port(store(), clock, account, summaries)
    return made


@pytest.fixture(params=["memory", "redis", "redis-step-by-step"])
async def port(request: pytest.FixtureRequest, redis: RedisClient) -> AsyncIterator[Port]:
    if request.param == "memory":
        yield memory_port()
    else:
        yield redis_port(redis, step_by_step=request.param == "redis-step-by-step")
    await redis.delete(GlobalKeys.CLOCK_FLOOR)


@pytest.fixture
async def minute(redis: RedisClient) -> int:
    """A minute ten minutes ahead of Redis's clock: the tests' times start there."""
    seconds, _ = await redis.time()
    return int(seconds) // 60 + 10


async def test_contract_the_clock(port: Port, minute: int) -> None:
    await port.clock(minute * MINUTE_MS + 123)
    assert await port.store.now_ms() == minute * MINUTE_MS + 123


async def test_contract_what_a_read_counts(port: Port, tenant: str, minute: int) -> None:
    await port.clock(minute * MINUTE_MS)
    await port.account(tenant, "bound", "ref-1")
    await port.account(tenant, "unbound", "")
    assert (
        await port.store.record(
            tenant, LEAKED, VERIFICATION, DAYS, ["bound", "unbound", "unknown"], only_existing=True
        )
        == 2
    )
    assert await port.store.record(tenant, LEAKED, VERIFICATION, DAYS, ["unknown"], only_existing=False) == 1
    assert await port.store.record(tenant, LEAKED, VERIFICATION, DAYS, [], only_existing=True) == 0  # a call
    [member] = await port.store.open_minutes(tenant, minute)
    assert member == f"{minute}:{LEAKED.client_id}"
    assert await port.store.minute_accounts(tenant, member) == {"bound", "unbound", "unknown"}
    assert await port.store.minute_accounts(tenant + "-other", member) == frozenset()


async def test_contract_open_minutes_oldest_first_up_to_the_one_asked(
    port: Port, tenant: str, minute: int
) -> None:
    await port.clock(minute * MINUTE_MS)
    await port.store.record(tenant, OTHER, VERIFICATION, DAYS, [], only_existing=True)
    await port.store.record(tenant, LEAKED, VERIFICATION, DAYS, [], only_existing=True)
    await port.clock((minute + 1) * MINUTE_MS)
    await port.store.record(tenant, LEAKED, VERIFICATION, DAYS, [], only_existing=True)
    both = [f"{minute}:{OTHER.client_id}", f"{minute}:{LEAKED.client_id}"]
    assert await port.store.open_minutes(tenant, minute - 1) == []
    assert await port.store.open_minutes(tenant, minute) == both
    assert await port.store.open_minutes(tenant, minute + 1) == [*both, f"{minute + 1}:{LEAKED.client_id}"]


async def test_contract_a_minute_closes_once_past_its_delay_unchanged_and_once(
    port: Port, tenant: str, minute: int
) -> None:
    await port.account(tenant, "a1", "ref-1")
    await port.account(tenant, "a2", "")
    await port.clock(minute * MINUTE_MS + 5_000)
    await port.store.record(tenant, LEAKED, VERIFICATION, DAYS, ["a1", "a2"], only_existing=True)
    await port.store.record(tenant, LEAKED, VERIFICATION, DAYS, ["a1"], only_existing=True)
    view = Reader(LEAKED.client_id, LEAKED.principal, "GetVerification")
    await port.store.record(tenant, view, VERIFICATION, DAYS, [], only_existing=True)
    member = f"{minute}:{LEAKED.client_id}"
    digest = accounts_digest(["a1", "a2"])
    await port.clock((minute + 1) * MINUTE_MS + 60_000 - 1)
    assert await port.store.close_minute(tenant, member, 2, digest, 60_000) is MinuteClose.OPEN
    await port.clock((minute + 1) * MINUTE_MS + 60_000)
    assert await port.store.close_minute(tenant, member, 3, digest, 60_000) is MinuteClose.CHANGED
    assert await port.summaries(tenant) == []
    assert await port.store.close_minute(tenant, member, 2, digest, 60_000) is MinuteClose.CLOSED
    assert await port.store.close_minute(tenant, member, 2, digest, 60_000) is MinuteClose.GONE
    assert await port.store.open_minutes(tenant, minute + 5) == []
    assert await port.summaries(tenant) == [
        (
            LEAKED.principal,
            {
                "client_id": LEAKED.client_id,
                "minute_ms": str(minute * MINUTE_MS),
                "accounts": "2",
                "digest": digest,
                "calls": "3",
                "calls:GetAccount": "2",
                "accounts:GetAccount": "3",
                "calls:GetVerification": "1",
                "accounts:GetVerification": "0",
            },
        )
    ]

"""The IncidentStore port's contract: the in-memory store and Redis answer alike.

Each test runs on ``idverify.testing.memory_incident.MemoryIncidentStore`` and on
``store.incident_reads.RedisIncidentStore`` over the suite's redis-server (a tenant of its own
per test). Redis counts distinct reads with HyperLogLogs, the memory store with sets: a count
from Redis must lie within three standard errors of the true one, and every other answer (a
zero, the readers, the lock, the appended entry, the holdings) is exact.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import pytest

from idverify.flows.incident import IncidentStore, ReadFigure, ReportEntry
from idverify.flows.read_accounting import HLL_STANDARD_ERROR, Category
from idverify.store.connection import RedisClient
from idverify.store.incident_reads import MERGE_CHUNK, RedisIncidentStore
from idverify.store.read_keys import ReadKeys
from idverify.store.scripts import Scripts
from idverify.testing.memory_incident import MemoryIncidentStore, nothing_held
from tests.unit.usecases.contract import audit_events

H0 = 490_000  # an hour bucket (2025-11-24)
A, B = "c0ffee01", "beef0002"
_tenants = itertools.count()

Entry = tuple[str, int, int, int]  # kind, since, until, principals named


@dataclass(frozen=True, slots=True)
class Port:
    """An implementation and how a test writes reads into it and sees the entries appended."""

    store: IncidentStore
    read: Callable[[str, int, str, Category, Iterable[str], Iterable[str]], Awaitable[None]]
    entries: Callable[[str], Awaitable[list[Entry]]]


@pytest.fixture
def tenant() -> str:
    return f"contract-{next(_tenants)}"


@pytest.fixture(params=["memory", "redis"])
async def port(request: pytest.FixtureRequest, redis: RedisClient) -> AsyncIterator[Port]:
    if request.param == "memory":
        memory = MemoryIncidentStore()

        async def read_memory(
            tenant: str,
            hour: int,
            client: str,
            category: Category,
            accounts: Iterable[str],
            ids: Iterable[str],
        ) -> None:
            memory.read(tenant, hour, client, category, accounts=accounts, identities=ids)

        async def memory_entries(tenant: str) -> list[Entry]:
            return [(e.kind, e.since_ms, e.until_ms, e.principals) for t, e in memory.entries if t == tenant]

        yield Port(memory, read_memory, memory_entries)
        return

    async def read_redis(
        tenant: str, hour: int, client: str, category: Category, accounts: Iterable[str], ids: Iterable[str]
    ) -> None:
        # As the prelude's record_reads writes them.
        keys = ReadKeys(tenant)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.pfadd(keys.accounts(hour, client, category), *accounts)
            pipe.pfadd(keys.identities(hour, client, category), *ids)
            pipe.sadd(keys.who(hour), client)
            await pipe.execute()

    async def redis_entries(tenant: str) -> list[Entry]:
        return [
            (a["kind"], int(a["since_ms"]), int(a["until_ms"]), int(a["principals"]))
            for a in (event.attributes for event in await audit_events(redis, tenant))
        ]

    yield Port(RedisIncidentStore(redis, Scripts(redis)), read_redis, redis_entries)


def close_to(figure: ReadFigure, true_count: int) -> bool:
    """Whether a count is within three HyperLogLog standard errors of the true one (exact at zero)."""
    return abs(figure.count - true_count) <= math.ceil(true_count * 3 * HLL_STANDARD_ERROR)


def names(prefix: str, numbers: range) -> list[str]:
    return [f"{prefix}{n}" for n in numbers]


async def test_contract_the_clock_is_the_epoch_in_ms(port: Port) -> None:
    now = await port.store.now_ms()
    assert abs(now - time.time() * 1000) < 5000


async def test_contract_one_lock_per_tenant_until_released(port: Port, tenant: str) -> None:
    first = await port.store.try_lock(tenant, 60.0)
    assert first is not None
    assert await port.store.try_lock(tenant, 60.0) is None
    other = await port.store.try_lock(tenant + "-other", 60.0)  # another tenant's reports go on
    assert other is not None
    await first.release()
    again = await port.store.try_lock(tenant, 60.0)
    assert again is not None
    await again.release()
    await other.release()


async def test_contract_an_expired_lock_is_taken_and_its_late_release_leaves_the_new_one(
    port: Port, tenant: str
) -> None:
    crashed = await port.store.try_lock(tenant, 0.1)
    assert crashed is not None
    await asyncio.sleep(0.25)
    taken = await port.store.try_lock(tenant, 60.0)
    assert taken is not None
    await crashed.release()  # too late: not its lock any more
    assert await port.store.try_lock(tenant, 60.0) is None
    await taken.release()


async def test_contract_readers_per_hour_sorted_and_of_the_tenant_only(port: Port, tenant: str) -> None:
    await port.read(tenant, H0, B, Category.IP_LOCATION, ["a1"], ["i1"])
    await port.read(tenant, H0, A, Category.CONSENT, ["a2"], ["i2"])
    await port.read(tenant, H0 + 2, A, Category.AUDIT, ["a1"], ["i1"])
    await port.read(tenant + "-other", H0 + 1, B, Category.AUDIT, ["a1"], ["i1"])
    assert await port.store.readers(tenant, [H0, H0 + 1, H0 + 2]) == [[B, A], [], [A]]
    assert await port.store.readers(tenant, []) == []


async def test_contract_no_pairs_is_an_exact_nothing_in_figure_order(port: Port, tenant: str) -> None:
    figures = await port.store.read_figures(tenant, [])
    order = [*(str(c) for c in Category), "*"]
    assert [(f.kind, f.category) for f in figures] == [
        (kind, category) for kind in ("accounts", "identities") for category in order
    ]
    assert all(f.nothing_listed and f.count == 0 for f in figures)


async def test_contract_distinct_reads_of_the_pairs_by_category_and_in_any(port: Port, tenant: str) -> None:
    # A read 0-599 of ip_location in H0 and 300-899 in H0+1 (600 persons: two accounts each);
    # B read 800-999 of consent in H0; A's read after the asked hours is left out.
    await port.read(tenant, H0, A, Category.IP_LOCATION, names("a", range(600)), names("p", range(300)))
    await port.read(
        tenant, H0 + 1, A, Category.IP_LOCATION, names("a", range(300, 900)), names("p", range(150, 450))
    )
    await port.read(
        tenant, H0, B, Category.CONSENT, names("a", range(800, 1000)), names("p", range(400, 500))
    )
    await port.read(tenant, H0 + 5, A, Category.CONSENT, names("a", range(5000, 6000)), names("p", range(9)))
    figures = await port.store.read_figures(tenant, [(H0, A), (H0 + 1, A), (H0, B), (H0 + 2, B)])
    got = {(f.kind, f.category): f for f in figures}
    expected = {
        ("accounts", Category.IP_LOCATION): 900,
        ("accounts", Category.CONSENT): 200,
        ("accounts", "*"): 1000,
        ("identities", Category.IP_LOCATION): 450,
        ("identities", Category.CONSENT): 100,
        ("identities", "*"): 500,
    }
    for (kind, category), figure in got.items():
        assert not figure.nothing_listed
        true_count = expected.get((kind, category), 0)
        assert close_to(figure, true_count), (kind, category, figure.count, true_count)
        if true_count == 0:
            assert figure.count == 0  # no key held anything: exact


async def test_contract_more_pairs_than_one_count_takes(port: Port, tenant: str) -> None:
    # Redis merges the HyperLogLogs by chunks past MERGE_CHUNK keys: the union is the same.
    hours = range(H0, H0 + MERGE_CHUNK + 44)
    read_hours = hours[::50]  # six reads of 100 accounts, each half new: 350 in all
    for hour in read_hours:
        await port.read(tenant, hour, A, Category.AUDIT, names("a", range(hour, hour + 100)), [f"p{hour}"])
    figures = await port.store.read_figures(tenant, [(hour, client) for hour in hours for client in (A, B)])
    got = {(f.kind, f.category): f for f in figures}
    assert close_to(got["accounts", "*"], read_hours[-1] + 100 - H0)
    assert close_to(got["identities", str(Category.AUDIT)], 6)
    assert got["accounts", str(Category.CONSENT)].count == 0


async def test_contract_the_report_entry_is_appended_to_the_tenant(port: Port, tenant: str) -> None:
    entry = ReportEntry('{"principal": "admin01", "request_id": "r1"}', "store_breach", 10, 20, 3)
    await port.store.append_report(tenant, entry)
    await port.store.append_report(tenant, ReportEntry('{"principal": "admin01"}', "reads", 30, 40, 0))
    assert await port.entries(tenant) == [("store_breach", 10, 20, 3), ("reads", 30, 40, 0)]
    assert await port.entries(tenant + "-other") == []


async def test_contract_a_tenant_with_no_keys_holds_nothing(port: Port, tenant: str) -> None:
    await port.read(tenant, H0, A, Category.AUDIT, ["a1"], ["i1"])  # reads are not holdings
    held = await port.store.holdings(tenant + "-empty")
    assert held == nothing_held()

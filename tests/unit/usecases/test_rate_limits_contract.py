"""The RateWindows port's contract, on the in-memory counters and on Redis alike.

``testing.memory_rate_limits.MemoryRateWindows`` (what ``test_rate_limits_usecase.py`` runs the
limiters on) and ``store.rate_limits.RedisRateWindows`` over a real redis-server
(``rate_limit.lua``, ``refuse_counted.lua``) answer every assertion here the same way.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from idverify.security.rate_limits import CounterCheck, RateWindows, WindowHit
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.rate_limits import RedisRateWindows
from idverify.store.scripts import Scripts
from idverify.testing.memory_rate_limits import MemoryRateWindows
from tests.unit.usecases.contract import Contract, audit_rows, port_on_each

REQUEST = {"principal": "registrar01", "request_id": "r1", "trace_id": ""}
HOUR_MS = 3_600_000


class World(Protocol):
    """What the port does not write itself (a counter other scripts increment), time, and the log."""

    async def bump(self, tenant: str, purpose: str, pseudonym: str, window_ms: int) -> None: ...

    async def wait(self, ms: int) -> None: ...

    async def audited(self, tenant: str) -> list[str]: ...


class MemoryWorld:
    def __init__(self, windows: MemoryRateWindows) -> None:
        self._windows = windows

    async def bump(self, tenant: str, purpose: str, pseudonym: str, window_ms: int) -> None:
        self._windows.bump(tenant, purpose, pseudonym, window_ms)

    async def wait(self, ms: int) -> None:
        self._windows.advance(ms)

    async def audited(self, tenant: str) -> list[str]:
        return [limit for t, limit in self._windows.audit if t == tenant]


class RedisWorld:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def bump(self, tenant: str, purpose: str, pseudonym: str, window_ms: int) -> None:
        key = TenantKeys(tenant).rate_limit(purpose, pseudonym)
        if await self._redis.incr(key) == 1:
            await self._redis.pexpire(key, window_ms)

    async def wait(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000)

    async def audited(self, tenant: str) -> list[str]:
        rows = await audit_rows(self._redis, tenant)
        assert {row["type"] for row in rows} <= {"rate_limit.hit"}
        return [row["attributes"]["limit"] for row in rows]


Port = Contract[RateWindows, World]


def memory_port() -> Port:
    memory = MemoryRateWindows()
    return Port(memory, MemoryWorld(memory))


def redis_port(redis: RedisClient) -> Port:
    return Port(RedisRateWindows(Scripts(redis)), RedisWorld(redis))


port = port_on_each(memory_port, redis_port)


def hit(limit: int, window_ms: int = HOUR_MS, pseudonym: str = "p1", tenant: str = "acme") -> WindowHit:
    return WindowHit(tenant, "identity", pseudonym, limit, window_ms, {**REQUEST, "limit": "identity"})


async def test_contract_a_window_counts_and_audits_its_first_count_over_the_limit(port: Port) -> None:
    windows, world = port.store, port.world
    counts = [await windows.count(hit(2)) for _ in range(4)]
    assert [c.count for c in counts] == [1, 2, 3, 4]
    assert all(0 < c.ttl_ms <= HOUR_MS for c in counts)
    assert counts[-1].ttl_ms > HOUR_MS - 60_000
    assert await world.audited("acme") == ["identity"]


async def test_contract_a_limit_of_0_audits_the_windows_first_count(port: Port) -> None:
    windows, world = port.store, port.world
    lockout = WindowHit("acme", "principal_lockout", "c1", 0, 60_000, {**REQUEST, "limit": "principal"})
    assert (await windows.count(lockout)).count == 1
    assert (await windows.count(lockout)).count == 2
    assert await world.audited("acme") == ["principal"]


async def test_contract_counters_are_per_tenant_purpose_and_pseudonym(port: Port) -> None:
    windows = port.store
    await windows.count(hit(5))
    assert (await windows.count(hit(5, pseudonym="p2"))).count == 1
    assert (await windows.count(hit(5, tenant="globex"))).count == 1
    other = WindowHit("acme", "sends", "p1", 5, HOUR_MS, REQUEST)
    assert (await windows.count(other)).count == 1
    assert (await windows.count(hit(5))).count == 2


async def test_contract_a_window_ends(port: Port) -> None:
    windows, world = port.store, port.world
    await windows.count(hit(1, window_ms=100))
    assert (await windows.count(hit(1, window_ms=100))).count == 2
    await world.wait(250)
    assert (await windows.count(hit(1, window_ms=100))).count == 1
    assert await world.audited("acme") == ["identity"]  # the first window's only


async def test_contract_a_checked_counter_refuses_at_its_limit_and_audits_once(port: Port) -> None:
    windows, world = port.store, port.world
    request = {**REQUEST, "limit": "claim_refusals"}

    async def check(limit: int) -> CounterCheck:
        return await windows.check("acme", "claim_refusals", "tag", limit=limit, request=request)

    assert await check(2) == CounterCheck(limited=False)  # no counter yet
    await world.bump("acme", "claim_refusals", "tag", HOUR_MS)
    assert await check(2) == CounterCheck(limited=False)
    await world.bump("acme", "claim_refusals", "tag", HOUR_MS)
    first, second = await check(2), await check(2)
    assert first.limited
    assert second.limited
    assert HOUR_MS - 60_000 < first.ttl_ms <= HOUR_MS
    assert await check(0) == CounterCheck(limited=False)  # 0: the limit is off
    assert await check(3) == CounterCheck(limited=False)  # a check counts nothing
    assert await world.audited("acme") == ["claim_refusals"]


async def test_contract_a_refusal_near_a_windows_end_waits_at_least_a_second(port: Port) -> None:
    windows, world = port.store, port.world
    await world.bump("acme", "claim_refusals", "tag", 300)
    check = await windows.check("acme", "claim_refusals", "tag", limit=1, request=REQUEST)
    assert check == CounterCheck(limited=True, ttl_ms=1000)

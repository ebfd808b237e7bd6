"""The ErasureStore port's contract, on the in-memory store and on Redis alike.

``testing.memory_erasures.MemoryErasureStore`` (what ``test_erasure_usecase.py`` runs the flow on)
and ``store.erasures.RedisErasureStore`` over a real redis-server (a cancellation's steps, ``erase.lua``)
answer every assertion here the same way, so what the use case is shown to decide on the one it
decides on the other.
"""

from __future__ import annotations

import json
from typing import Protocol

from idverify.flows.context import RequestInfo
from idverify.flows.erasure import (
    Cancellation,
    EraseOutcome,
    ErasureItem,
    ErasureKind,
    ErasureStore,
    ScheduledErasure,
)
from idverify.store.connection import RedisClient
from idverify.store.erasures import RedisErasureStore
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing.memory_erasures import MemoryErasureStore
from tests.unit.usecases.contract import Contract, port_on_each

DAY_MS = 86_400_000
REQUEST = json.dumps(RequestInfo(principal="registrar01").audit_fields())


class World(Protocol):
    """What a verification's commit would have stored, and whether a record is still held."""

    async def bind(self, tenant: str, account_ps: str, ref: str) -> None: ...

    async def holds_account(self, tenant: str, account_ps: str) -> bool: ...

    async def holds_identity(self, tenant: str, ref: str) -> bool: ...


class MemoryWorld:
    def __init__(self, store: MemoryErasureStore) -> None:
        self._store = store

    async def bind(self, tenant: str, account_ps: str, ref: str) -> None:
        self._store.bind(tenant, account_ps, ref)

    async def holds_account(self, tenant: str, account_ps: str) -> bool:
        return self._store.holds_account(tenant, account_ps)

    async def holds_identity(self, tenant: str, ref: str) -> bool:
        return self._store.holds_identity(tenant, ref)


class RedisWorld:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def bind(self, tenant: str, account_ps: str, ref: str) -> None:
        keys = TenantKeys(tenant)
        await self._redis.hset(keys.account(account_ps), mapping={"identity": ref, "verified_ms": 1})
        await self._redis.hset(keys.identity(ref), mapping={"key_ref": "w1"})
        await self._redis.sadd(keys.identity_accounts(ref), account_ps)

    async def holds_account(self, tenant: str, account_ps: str) -> bool:
        return bool(await self._redis.exists(TenantKeys(tenant).account(account_ps)))

    async def holds_identity(self, tenant: str, ref: str) -> bool:
        return bool(await self._redis.exists(TenantKeys(tenant).identity(ref)))


Port = Contract[ErasureStore, World]


def memory_port() -> Port:
    memory = MemoryErasureStore()
    return Port(memory, MemoryWorld(memory))


def redis_port(redis: RedisClient) -> Port:
    return Port(RedisErasureStore(redis, Scripts(redis)), RedisWorld(redis))


port = port_on_each(memory_port, redis_port)


def cancellation(account_ps: str, due_ms: int) -> Cancellation:
    return Cancellation(account_ps, f"audit-{account_ps}", due_ms, REQUEST)


def account(subject: str) -> ErasureItem:
    return ErasureItem(ErasureKind.ACCOUNT, subject)


def identity(ref: str) -> ErasureItem:
    return ErasureItem(ErasureKind.IDENTITY, ref)


async def test_contract_an_empty_store(port: Port) -> None:
    store = port.store
    assert await store.now_ms() > 0
    assert await store.tenants() == []
    assert await store.scheduled("acme") == []
    assert await store.due("acme", 2**53, 100) == []
    assert await store.count_due("acme", 2**53) == 0
    assert await store.erase("acme", account("a1"), REQUEST) is EraseOutcome.GONE


async def test_contract_tenants_are_noted_once_and_listed_sorted(port: Port) -> None:
    for tenant in ("globex", "acme", "globex"):
        await port.store.note_tenant(tenant)
    assert await port.store.tenants() == ["acme", "globex"]


async def test_contract_a_cancel_queues_the_account_once(port: Port) -> None:
    store = port.store
    due = await store.now_ms() + DAY_MS
    assert await store.cancel("acme", cancellation("a1", due)) == due
    assert await store.cancel("acme", cancellation("a1", due + DAY_MS)) == due  # the first one stays
    assert await store.scheduled("acme") == [ScheduledErasure(account("a1"), due)]
    assert await store.scheduled("globex") == []


async def test_contract_the_identity_is_queued_when_its_last_account_is_cancelled(port: Port) -> None:
    store, world = port.store, port.world
    await world.bind("acme", "a1", "ref1")
    await world.bind("acme", "a2", "ref1")
    due = await store.now_ms() + DAY_MS
    await store.cancel("acme", cancellation("a1", due))
    assert await store.scheduled("acme") == [ScheduledErasure(account("a1"), due)]
    await store.cancel("acme", cancellation("a2", due + 1))
    assert await store.scheduled("acme") == [
        ScheduledErasure(account("a1"), due),
        ScheduledErasure(account("a2"), due + 1),
        ScheduledErasure(identity("ref1"), due + 1),
    ]


async def test_contract_due_erasures_in_order_within_a_limit(port: Port) -> None:
    store = port.store
    now = await store.now_ms()
    for n, due in enumerate((now - 3000, now - 1000, now - 2000, now + DAY_MS)):
        await store.cancel("acme", cancellation(f"a{n}", due))
    assert await store.due("acme", now, 100) == [account("a0"), account("a2"), account("a1")]
    assert await store.due("acme", now, 2) == [account("a0"), account("a2")]
    assert await store.due("acme", now - 2000, 100) == [account("a0"), account("a2")]
    assert await store.count_due("acme", now) == 3
    assert await store.count_due("acme", now - 3001) == 0


async def test_contract_an_erasure_removes_the_account_and_its_entry_once(port: Port) -> None:
    store, world = port.store, port.world
    await world.bind("acme", "a1", "ref1")
    past = await store.now_ms() - 1000
    await store.cancel("acme", cancellation("a1", past))
    assert await world.holds_account("acme", "a1")  # cancelled is unbound, not erased yet
    assert await store.erase("acme", account("a1"), REQUEST) is EraseOutcome.ERASED
    assert not await world.holds_account("acme", "a1")
    assert await store.erase("acme", account("a1"), REQUEST) is EraseOutcome.GONE
    assert await world.holds_identity("acme", "ref1")
    assert await store.erase("acme", identity("ref1"), REQUEST) is EraseOutcome.ERASED
    assert not await world.holds_identity("acme", "ref1")
    assert await store.scheduled("acme") == []


async def test_contract_an_erasure_not_due_yet_is_gone(port: Port) -> None:
    store, world = port.store, port.world
    await world.bind("acme", "a1", "ref1")
    await store.cancel("acme", cancellation("a1", await store.now_ms() + DAY_MS))
    assert await store.erase("acme", account("a1"), REQUEST) is EraseOutcome.GONE
    assert await world.holds_account("acme", "a1")
    assert len(await store.scheduled("acme")) == 2


async def test_contract_an_identity_bound_again_is_kept_and_leaves_the_queue(port: Port) -> None:
    store, world = port.store, port.world
    await world.bind("acme", "a1", "ref1")
    await store.cancel("acme", cancellation("a1", await store.now_ms() - 1000))
    await world.bind("acme", "a2", "ref1")
    assert await store.erase("acme", identity("ref1"), REQUEST) is EraseOutcome.ERASED
    assert await world.holds_identity("acme", "ref1")
    assert [row.item for row in await store.scheduled("acme")] == [account("a1")]
    # Once its last account is cancelled it is queued again.
    await store.cancel("acme", cancellation("a2", await store.now_ms() - 500))
    assert identity("ref1") in [row.item for row in await store.scheduled("acme")]


async def test_contract_a_cancel_after_the_erasure_starts_afresh(port: Port) -> None:
    store = port.store
    past = await store.now_ms() - 1000
    await store.cancel("acme", cancellation("a1", past))
    assert await store.erase("acme", account("a1"), REQUEST) is EraseOutcome.ERASED
    later = past + DAY_MS
    assert await store.cancel("acme", cancellation("a1", later)) == later

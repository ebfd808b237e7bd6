"""The RemovalStore port's contract, on the in-memory store and on Redis alike.

``testing.memory_tenant_removals.MemoryRemovalStore`` (what ``test_tenant_removal_usecase.py`` runs
the flow on) and ``store.tenant_removals.RedisRemovalStore`` over a real redis-server
(``tenant_removal.lua``, the record, the removal list, the SCAN pages of the erasure) answer every
assertion here the same way.
"""

from __future__ import annotations

import json
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.checkpoint import TreeHead, TreeHeadSigner
from idverify.audit.integrator import TreeIntegrator
from idverify.audit.merkle import leaf_hash
from idverify.flows.tenant_removal import (
    CLOSED,
    ERASING,
    REMOVED,
    SCHEDULED,
    ErasePosition,
    RemovalStore,
    StepOutcome,
    StepReply,
)
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient, as_text
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.tenant_removals import RedisRemovalStore
from idverify.testing.memory_tenant_removals import MemoryRemovalStore
from tests.unit.usecases.contract import Contract, port_on_each

REQUEST = {"principal": "tenants-remove/test@host", "request_id": "", "trace_id": ""}
DAY_MS = 86_400_000


class World(Protocol):
    """What the port does not write itself (clients, other keys, the tree), and what it leaves."""

    async def add_client(self, tenant: str, client_id: str, role: str, *, revoked: bool = False) -> None: ...

    async def add_keys(self, tenant: str, *names: str) -> None: ...

    async def note_erasures(self, tenant: str) -> None: ...

    async def integrate(self, tenant: str) -> None: ...

    async def live_clients(self, tenant: str) -> list[str]: ...

    async def client_tenant(self, client_id: str) -> str | None: ...

    async def has_erasures(self, tenant: str) -> bool: ...


class MemoryWorld:
    def __init__(self, store: MemoryRemovalStore) -> None:
        self._store = store

    async def add_client(self, tenant: str, client_id: str, role: str, *, revoked: bool = False) -> None:
        self._store.add_client(tenant, client_id, role, revoked=revoked)

    async def add_keys(self, tenant: str, *names: str) -> None:
        self._store.add_keys(tenant, *names)

    async def note_erasures(self, tenant: str) -> None:
        self._store.erasure_tenants.add(tenant)

    async def integrate(self, tenant: str) -> None:
        pass  # leaf hashes are stored with the entries

    async def live_clients(self, tenant: str) -> list[str]:
        return self._store.live_clients(tenant)

    async def client_tenant(self, client_id: str) -> str | None:
        return self._store.client_tenants.get(client_id)

    async def has_erasures(self, tenant: str) -> bool:
        return tenant in self._store.erasure_tenants


class RedisWorld:
    def __init__(self, redis: RedisClient, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts

    async def add_client(self, tenant: str, client_id: str, role: str, *, revoked: bool = False) -> None:
        keys = TenantKeys(tenant)
        await self._redis.hset(
            keys.client(client_id), mapping={"role": role, "revoked": "1" if revoked else "0"}
        )
        await self._redis.sadd(keys.clients(), client_id)
        await self._redis.hset(GlobalKeys.CLIENT_TENANTS, client_id, tenant)

    async def add_keys(self, tenant: str, *names: str) -> None:
        for name in names:
            await self._redis.hset(f"iv1:{{t:{tenant}}}:{name}", "x", "1")

    async def note_erasures(self, tenant: str) -> None:
        await self._redis.sadd(GlobalKeys.ERASURE_TENANTS, tenant)

    async def integrate(self, tenant: str) -> None:
        await TreeIntegrator(AuditStore(self._redis, self._scripts)).integrate(tenant)

    async def live_clients(self, tenant: str) -> list[str]:
        keys = TenantKeys(tenant)
        ids = sorted(as_text(i) for i in await self._redis.smembers(keys.clients()))
        return [i for i in ids if as_text(await self._redis.hget(keys.client(i), "revoked")) == "0"]

    async def client_tenant(self, client_id: str) -> str | None:
        owner = await self._redis.hget(GlobalKeys.CLIENT_TENANTS, client_id)
        return None if owner is None else as_text(owner)

    async def has_erasures(self, tenant: str) -> bool:
        return bool(await self._redis.sismember(GlobalKeys.ERASURE_TENANTS, tenant))


Port = Contract[RemovalStore, World]


def memory_port() -> Port:
    memory = MemoryRemovalStore()
    return Port(memory, MemoryWorld(memory))


def redis_port(redis: RedisClient) -> Port:
    scripts = Scripts(redis)
    return Port(RedisRemovalStore(redis, scripts), RedisWorld(redis, scripts))


port = port_on_each(memory_port, redis_port)


async def types(store: RemovalStore, tenant: str, first: int = 0) -> list[str]:
    """The event types of the log's entries from ``first`` on."""
    found = []
    index = first
    while (entry := (await store.entries(tenant, [index]))[0]) is not None:
        found.append(json.loads(entry)["type"])
        index += 1
    return found


async def test_contract_a_tenant_without_anything(port: Port) -> None:
    store = port.store
    assert not await store.known("acme")
    assert await store.read("acme") is None
    assert await store.listed() == []
    assert await store.cancel("acme", REQUEST) == StepReply(StepOutcome.IN_STATE, state="")
    assert await store.close("acme", REQUEST) == StepReply(StepOutcome.IN_STATE, state="")
    assert await store.erase_position("acme") == ErasePosition("", 0)
    assert await store.entries("acme", [0]) == [None]
    assert await store.now_ms() > 0


async def test_contract_the_removal_list_is_by_due_time(port: Port) -> None:
    store = port.store
    await store.enlist("late", 300)
    await store.enlist("early", 100)
    await store.enlist("middle", 200)
    assert await store.listed() == ["early", "middle", "late"]
    await store.unlist("middle")
    await store.unlist("nobody")
    assert await store.listed() == ["early", "late"]


async def test_contract_a_live_operator_stops_the_schedule(port: Port) -> None:
    store, world = port.store, port.world
    await world.add_client("acme", "op2", "operator")
    await world.add_client("acme", "op1", "operator")
    await world.add_client("acme", "op0", "operator", revoked=True)
    await world.add_client("acme", "reg", "registrar")
    assert await store.known("acme")
    reply = await store.schedule("acme", REQUEST, 5, 0)
    assert reply == StepReply(StepOutcome.HOLDS_OPERATORS, operators=("op1", "op2"))
    assert await store.read("acme") is None
    assert await world.live_clients("acme") == ["op1", "op2", "reg"]
    assert await types(store, "acme") == []


async def test_contract_a_schedule_revokes_and_audits_and_is_made_once(port: Port) -> None:
    store, world = port.store, port.world
    await world.add_client("acme", "b", "registrar")
    await world.add_client("acme", "a", "auditor")
    await world.add_client("acme", "c", "registrar", revoked=True)
    due = await store.now_ms() + DAY_MS
    assert await store.schedule("acme", REQUEST, due, 1) == StepReply(StepOutcome.DONE, revoked=2)
    assert await world.live_clients("acme") == []
    assert await types(store, "acme") == ["client.revoked", "client.revoked", "tenant.removal_scheduled"]
    removal = await store.read("acme")
    assert removal is not None
    assert (removal.tenant, removal.state, removal.due_ms) == ("acme", SCHEDULED, due)
    assert (removal.scheduled_by, removal.erased, removal.final_head) == (REQUEST["principal"], 0, None)
    again = await store.schedule("acme", REQUEST, due + 1, 1)
    assert again == StepReply(StepOutcome.IN_STATE, state=SCHEDULED)
    assert (await store.read("acme")) == removal
    assert await store.close("acme", REQUEST) == StepReply(StepOutcome.NOT_DUE, due_ms=due)
    assert await store.cancel("acme", REQUEST) == StepReply(StepOutcome.DONE)
    assert await store.read("acme") is None
    assert (await types(store, "acme", 3)) == ["tenant.removal_cancelled"]
    assert await store.cancel("acme", REQUEST) == StepReply(StepOutcome.IN_STATE, state="")


async def test_contract_a_due_removal_closes_the_log_and_keeps_its_head(port: Port) -> None:
    store, world = port.store, port.world
    await world.add_client("acme", "a", "registrar")
    await store.schedule("acme", REQUEST, await store.now_ms(), 0)
    assert await store.close("acme", REQUEST) == StepReply(StepOutcome.DONE)
    assert (await types(store, "acme"))[-1] == "tenant.removed"
    removal = await store.read("acme")
    assert removal is not None
    assert removal.state == CLOSED
    assert await store.close("acme", REQUEST) == StepReply(StepOutcome.IN_STATE, state=CLOSED)
    assert await store.cancel("acme", REQUEST) == StepReply(StepOutcome.IN_STATE, state=CLOSED)
    await world.integrate("acme")
    entries = await store.entries("acme", [0, 1, 2])
    assert entries[2] is not None
    assert await store.leaf_hashes("acme", [0, 1, 2]) == [leaf_hash(e) if e else None for e in entries]
    assert await store.leaf_hashes("acme", [3]) == [None]
    signer = TreeHeadSigner(Ed25519PrivateKey.generate())
    head = signer.sign(TreeHead("idverify/acme", 3, b"r" * 32, 1_700_000_000_000))
    await store.keep_final_head("acme", head)
    kept = await store.read("acme")
    assert kept is not None
    assert (kept.state, kept.final_head) == (CLOSED, head)
    await store.mark_erasing("acme")
    assert await store.erase_position("acme") == ErasePosition(ERASING, 0)


async def test_contract_the_erasure_resumes_and_leaves_the_log(port: Port) -> None:
    store, world = port.store, port.world
    await world.add_client("acme", "a", "registrar")
    await world.add_client("globex", "g", "registrar")
    await world.add_keys("acme", *(f"acct:{n:03d}" for n in range(60)))
    await world.add_keys("globex", "acct:000")
    await world.note_erasures("acme")
    await store.schedule("acme", REQUEST, await store.now_ms(), 0)
    await store.close("acme", REQUEST)
    await store.mark_erasing("acme")
    entries = await types(store, "acme")
    before = await store.count_remaining("acme")
    assert before == 62  # the accounts, the client's hash and the set of clients
    pages = store.erase_pages("acme", 0, 10)
    first = await anext(pages)
    await pages.aclose()
    assert 0 < first.erased < before
    assert first.more
    stopped = await store.erase_position("acme")
    assert stopped.state == ERASING
    assert stopped.cursor != 0
    assert await store.count_remaining("acme") == before - first.erased
    rest = [page async for page in store.erase_pages("acme", stopped.cursor, 10)]
    assert not rest[-1].more
    assert first.erased + sum(page.erased for page in rest) == before
    assert await store.count_remaining("acme") == 0
    removal = await store.read("acme")
    assert removal is not None
    assert removal.erased == before
    assert await types(store, "acme") == entries
    assert await store.known("acme")  # its log stays
    assert await world.live_clients("acme") == []
    assert await world.client_tenant("a") == "acme"
    await store.forget("acme")
    assert await world.client_tenant("a") is None
    assert not await world.has_erasures("acme")
    assert await store.listed() == []
    assert await store.erase_position("acme") == ErasePosition(REMOVED, 0)
    assert await world.client_tenant("g") == "globex"
    assert await store.count_remaining("globex") == 3

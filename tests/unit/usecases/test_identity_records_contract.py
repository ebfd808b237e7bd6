"""The IdentityRecords port's contract, on the in-memory store and on Redis alike.

``testing.memory_identity_records.MemoryIdentityRecords`` (what ``test_identity_mover_usecase.py``
and ``test_identity_lookup_usecase.py`` run the flows on) and
``store.identity_records.RedisIdentityRecords`` over a real redis-server (``reseal_identity.lua``,
``reseal_verification.lua``) answer every assertion here the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from idverify.flows.identity_mover import HeldIdentity, IdentityLocation, IdentityMove, IdentityRecords
from idverify.store.connection import RedisClient, as_text
from idverify.store.identity_records import RedisIdentityRecords
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing.memory_identity_records import MemoryIdentityRecords
from tests.unit.usecases.contract import Contract, port_on_each


class World(Protocol):
    """What the port reads and writes but does not create (records, accounts, erasures, verifications)."""

    async def put(self, tenant: str, ref: str, fields: Mapping[str, str], accounts: set[str]) -> None: ...

    async def record(self, tenant: str, ref: str) -> dict[str, str]: ...

    async def accounts(self, tenant: str, ref: str) -> set[str]: ...

    async def bind_account(self, tenant: str, account_ps: str, ref: str) -> None: ...

    async def account_identity(self, tenant: str, account_ps: str) -> str | None: ...

    async def due(self, tenant: str, member: str, at: int | None = None) -> int | None: ...

    async def verification(
        self, tenant: str, verification_id: str, fields: Mapping[str, str] = {}
    ) -> dict[str, str]: ...


class MemoryWorld:
    def __init__(self, store: MemoryIdentityRecords) -> None:
        self._s = store

    async def put(self, tenant: str, ref: str, fields: Mapping[str, str], accounts: set[str]) -> None:
        self._s.identities[(tenant, ref)] = dict(fields)
        if accounts:
            self._s.accounts[(tenant, ref)] = set(accounts)

    async def record(self, tenant: str, ref: str) -> dict[str, str]:
        return dict(self._s.identities.get((tenant, ref), {}))

    async def accounts(self, tenant: str, ref: str) -> set[str]:
        return set(self._s.accounts.get((tenant, ref), set()))

    async def bind_account(self, tenant: str, account_ps: str, ref: str) -> None:
        self._s.account_identity[(tenant, account_ps)] = ref

    async def account_identity(self, tenant: str, account_ps: str) -> str | None:
        return self._s.account_identity.get((tenant, account_ps))

    async def due(self, tenant: str, member: str, at: int | None = None) -> int | None:
        if at is not None:
            self._s.erasures_due[(tenant, member)] = at
        return self._s.erasures_due.get((tenant, member))

    async def verification(
        self, tenant: str, verification_id: str, fields: Mapping[str, str] = {}
    ) -> dict[str, str]:
        if fields:
            self._s.verifications.setdefault((tenant, verification_id), {}).update(fields)
        return dict(self._s.verifications.get((tenant, verification_id), {}))


class RedisWorld:
    def __init__(self, redis: RedisClient) -> None:
        self._r = redis

    async def put(self, tenant: str, ref: str, fields: Mapping[str, str], accounts: set[str]) -> None:
        keys = TenantKeys(tenant)
        await self._r.hset(keys.identity(ref), mapping=dict(fields))
        if accounts:
            await self._r.sadd(keys.identity_accounts(ref), *accounts)

    async def record(self, tenant: str, ref: str) -> dict[str, str]:
        raw = await self._r.hgetall(TenantKeys(tenant).identity(ref))
        return {as_text(k): as_text(v) for k, v in raw.items()}

    async def accounts(self, tenant: str, ref: str) -> set[str]:
        return {as_text(m) for m in await self._r.smembers(TenantKeys(tenant).identity_accounts(ref))}

    async def bind_account(self, tenant: str, account_ps: str, ref: str) -> None:
        await self._r.hset(TenantKeys(tenant).account(account_ps), "identity", ref)

    async def account_identity(self, tenant: str, account_ps: str) -> str | None:
        raw = await self._r.hget(TenantKeys(tenant).account(account_ps), "identity")
        return None if raw is None else as_text(raw)

    async def due(self, tenant: str, member: str, at: int | None = None) -> int | None:
        key = TenantKeys(tenant).erasure_due()
        if at is not None:
            await self._r.zadd(key, {member: at})
        score = await self._r.zscore(key, member)
        return None if score is None else int(score)

    async def verification(
        self, tenant: str, verification_id: str, fields: Mapping[str, str] = {}
    ) -> dict[str, str]:
        key = TenantKeys(tenant).verification(verification_id)
        if fields:
            await self._r.hset(key, mapping=dict(fields))
        return {as_text(k): as_text(v) for k, v in (await self._r.hgetall(key)).items()}


Port = Contract[IdentityRecords, World]


def memory_port() -> Port:
    memory = MemoryIdentityRecords()
    return Port(memory, MemoryWorld(memory))


def redis_port(redis: RedisClient) -> Port:
    return Port(RedisIdentityRecords(redis, Scripts(redis)), RedisWorld(redis))


port = port_on_each(memory_port, redis_port)


async def test_contract_bindings_held_and_location(port: Port) -> None:
    store, world = port.store, port.world
    await world.put("acme", "r1", {"name_binding": "b1", "pepper": "phc1"}, {"a2", "a1"})
    await world.put("acme", "fw", {"moved_to": "r1", "binding_was": "b0"}, set())
    assert await store.bindings("acme", ["r0", "r1", "fw"]) == [None, "b1", None]
    assert await store.bindings("globex", ["r1"]) == [None]
    assert await store.held("acme", "r1") == HeldIdentity("b1", ("a1", "a2"))
    assert await store.held("acme", "r0") is None
    assert await store.held("acme", "fw") is None
    assert await store.location("acme", "r1") == IdentityLocation(None, "", bound=True)
    assert await store.location("acme", "fw") == IdentityLocation("r1", "b0", bound=False)
    assert await store.location("acme", "r0") == IdentityLocation(None, "", bound=False)
    assert len(set(store.keys("acme", ["r1", "r2"]))) == 2


async def test_contract_a_move_takes_the_accounts_their_references_and_the_erasure(port: Port) -> None:
    store, world = port.store, port.world
    await world.put("acme", "old", {"name_binding": "b1", "pepper": "phc1"}, {"a1", "a2"})
    await world.bind_account("acme", "a1", "old")
    await world.bind_account("acme", "a2", "elsewhere")
    await world.due("acme", "i:old", 1234)
    held = await store.held("acme", "old")
    assert held is not None
    assert await store.move("acme", IdentityMove("old", "new", "b2", "phc2", 0, held)) == "OK"
    assert await world.record("acme", "old") == {}
    assert await world.record("acme", "new") == {"name_binding": "b2", "pepper": "phc2"}
    assert await world.accounts("acme", "new") == {"a1", "a2"}
    assert await world.accounts("acme", "old") == set()
    assert await world.account_identity("acme", "a1") == "new"
    assert await world.account_identity("acme", "a2") == "elsewhere"
    assert (await world.due("acme", "i:old"), await world.due("acme", "i:new")) == (None, 1234)
    assert await store.move("acme", IdentityMove("old", "new", "b2", "", 0, held)) == "GONE"


async def test_contract_a_pepper_move_leaves_a_forwarding_record(port: Port) -> None:
    store, world = port.store, port.world
    await world.put("acme", "old", {"name_binding": "b1", "pepper": "phc1"}, set())
    held = await store.held("acme", "old")
    assert held == HeldIdentity("b1", ())
    assert await store.move("acme", IdentityMove("old", "new", "b2", "", 60_000, held)) == "OK"
    assert await world.record("acme", "new") == {"name_binding": "b2", "pepper": "phc1"}
    assert await store.location("acme", "old") == IdentityLocation("new", "b1", bound=False)
    assert await store.move("acme", IdentityMove("old", "newer", "b3", "", 0, held)) == "GONE"


async def test_contract_a_move_onto_an_existing_record_merges_the_accounts(port: Port) -> None:
    store, world = port.store, port.world
    await world.put("acme", "old", {"name_binding": "b1"}, {"a1"})
    await world.put("acme", "new", {"name_binding": "kept"}, {"a9"})
    held = await store.held("acme", "old")
    assert held is not None
    assert await store.move("acme", IdentityMove("old", "new", "b2", "", 0, held)) == "OK"
    assert await world.record("acme", "new") == {"name_binding": "kept"}
    assert await world.accounts("acme", "new") == {"a1", "a9"}


async def test_contract_a_record_changed_since_it_was_read_is_not_moved(port: Port) -> None:
    store, world = port.store, port.world
    await world.put("acme", "old", {"name_binding": "b1"}, {"a1"})
    held = await store.held("acme", "old")
    assert held is not None
    assert await store.move("acme", IdentityMove("old", "old", "b2", "", 0, held)) == "SAME"
    await world.put("acme", "old", {"name_binding": "b1"}, {"a2"})  # another account bound meanwhile
    assert await store.move("acme", IdentityMove("old", "new", "b2", "", 0, held)) == "RETRY"
    stale = HeldIdentity("b0", ("a1", "a2"))
    assert await store.move("acme", IdentityMove("old", "new", "b2", "", 0, stale)) == "RETRY"
    assert await world.record("acme", "new") == {}
    assert await world.record("acme", "old") == {"name_binding": "b1"}


async def test_contract_a_verification_is_resealed_only_as_it_was_read(port: Port) -> None:
    store, world = port.store, port.world
    assert not await store.reseal_verification("acme", "v1", {"identity": ("old", "new")})  # gone
    await world.verification("acme", "v1", {"identity": "old", "name_binding": "b1"})
    assert not await store.reseal_verification("acme", "v1", {"identity": ("other", "new")})
    changes = {"identity": ("old", "new"), "name_binding_seen": ("", "s2")}
    assert await store.reseal_verification("acme", "v1", changes)
    assert await world.verification("acme", "v1") == {
        "identity": "new",
        "name_binding": "b1",
        "name_binding_seen": "s2",
    }

"""The ClientStore port's contract, on the in-memory store and on Redis alike.

``testing.memory_clients.MemoryClientStore`` (what ``test_clients_usecase.py`` runs the registry
on) and ``store.clients.RedisClientStore`` over a real redis-server (``client.lua``, the client
hash, the global map and the bootstrap keys) answer every assertion here the same way.
"""

from __future__ import annotations

import json
from typing import Protocol

from idverify.security.clients import ClientCreation, ClientRecord, ClientStore, NewClient, StoredCredentials
from idverify.security.principals import Role
from idverify.store.clients import RedisClientStore
from idverify.store.connection import RedisClient
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing.memory_clients import MemoryClientStore
from tests.unit.usecases.contract import Contract, audit_rows, port_on_each

REQUEST = json.dumps({"principal": "admin01", "request_id": "r1", "trace_id": ""})


class World(Protocol):
    """What the port does not write itself (a tenant's removal, the bootstrap id), and its audit log."""

    async def remove_tenant(self, tenant: str) -> None: ...

    async def set_bootstrap(self, client_id: str) -> None: ...

    async def audited(self, tenant: str) -> list[tuple[str, str]]: ...


class MemoryWorld:
    def __init__(self, store: MemoryClientStore) -> None:
        self._store = store

    async def remove_tenant(self, tenant: str) -> None:
        self._store.remove_tenant(tenant)

    async def set_bootstrap(self, client_id: str) -> None:
        self._store.bootstrap = client_id

    async def audited(self, tenant: str) -> list[tuple[str, str]]:
        return [(kind, client_id) for t, kind, client_id in self._store.audit if t == tenant]


class RedisWorld:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def remove_tenant(self, tenant: str) -> None:
        await self._redis.hset(TenantKeys(tenant).removal(), "state", "removing")

    async def set_bootstrap(self, client_id: str) -> None:
        await self._redis.set(GlobalKeys.BOOTSTRAP, client_id)

    async def audited(self, tenant: str) -> list[tuple[str, str]]:
        rows = await audit_rows(self._redis, tenant)
        return [(row["type"], row["attributes"]["client_id"]) for row in rows]


Port = Contract[ClientStore, World]


def memory_port() -> Port:
    memory = MemoryClientStore()
    return Port(memory, MemoryWorld(memory))


def redis_port(redis: RedisClient) -> Port:
    return Port(RedisClientStore(redis, Scripts(redis)), RedisWorld(redis))


port = port_on_each(memory_port, redis_port)


def new(client_id: str = "c1", tenant: str = "acme", role: Role = Role.ADMIN) -> NewClient:
    return NewClient(tenant, client_id, role, "the back office", "mac-1", REQUEST)


async def test_contract_nothing_stored(port: Port) -> None:
    store = port.store
    assert await store.now_ms() > 0
    assert await store.client("c1") is None
    assert await store.credentials("acme", "c1") is None
    assert await store.owners() == {}
    assert await store.tenants() == set()
    assert await store.bootstrap_id() is None
    assert not await store.bootstrap_retired()
    assert not await store.tenant_removed("acme")
    assert not await store.revoke("acme", "c1", REQUEST)


async def test_contract_a_created_client_is_read_back_and_audited(port: Port) -> None:
    store, world = port.store, port.world
    await store.map_client("c1", "acme")
    outcome, created_ms = await store.create(new())
    assert outcome is ClientCreation.CREATED
    assert created_ms > 0
    assert await store.client("c1") == ClientRecord(
        "c1", "acme", Role.ADMIN, "the back office", created_ms, revoked=False
    )
    live = StoredCredentials("admin", live=True, secret_mac="mac-1")  # noqa: S106 - a stand-in hash
    assert await store.credentials("acme", "c1") == live
    assert await store.credentials("globex", "c1") is None  # looked up in the token's tenant only
    assert await store.owners() == {"c1": "acme"}
    assert await store.tenants() == {"acme"}
    assert await world.audited("acme") == [("client.created", "c1")]
    assert (await store.create(new()))[0] is ClientCreation.EXISTS
    assert await world.audited("acme") == [("client.created", "c1")]


async def test_contract_an_unmapped_client_is_not_found_by_id(port: Port) -> None:
    store = port.store
    assert (await store.create(new()))[0] is ClientCreation.CREATED
    assert await store.client("c1") is None  # the map names it no tenant
    assert await store.credentials("acme", "c1") is not None  # a token names its tenant itself
    await store.map_client("c2", "acme")
    await store.unmap_client("c2")
    assert await store.owners() == {}


async def test_contract_a_revocation_happens_and_is_audited_once(port: Port) -> None:
    store, world = port.store, port.world
    await store.map_client("c1", "acme")
    await store.create(new())
    assert await store.revoke("acme", "c1", REQUEST)
    assert await store.revoke("acme", "c1", REQUEST)  # revoked already: nothing changes
    record = await store.client("c1")
    assert record is not None
    assert record.revoked
    credentials = await store.credentials("acme", "c1")
    assert credentials is not None
    assert not credentials.live
    assert await world.audited("acme") == [("client.created", "c1"), ("client.revoked", "c1")]


async def test_contract_a_tenant_being_removed_takes_no_client(port: Port) -> None:
    store, world = port.store, port.world
    await world.remove_tenant("acme")
    assert await store.tenant_removed("acme")
    assert not await store.tenant_removed("globex")
    assert (await store.create(new())) == (ClientCreation.TENANT_REMOVED, 0)
    assert await store.credentials("acme", "c1") is None
    assert await world.audited("acme") == []


async def test_contract_the_bootstrap_id_and_its_retirement(port: Port) -> None:
    store, world = port.store, port.world
    await world.set_bootstrap("b1")
    assert await store.bootstrap_id() == "b1"
    assert not await store.bootstrap_retired()
    await store.retire_bootstrap("op1")
    assert await store.bootstrap_retired()


async def test_contract_the_bootstrap_is_claimed_once(port: Port) -> None:
    store, world = port.store, port.world
    assert await store.claim_bootstrap("b1")
    assert await store.bootstrap_id() == "b1"
    assert not await store.claim_bootstrap("b2")  # another replica claimed it first
    assert await store.bootstrap_id() == "b1"
    await world.set_bootstrap("b3")
    assert not await store.claim_bootstrap("b4")
    assert await store.bootstrap_id() == "b3"

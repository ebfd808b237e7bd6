"""ClientRegistry over an in-memory ClientStore: creation, listing, revocation and tokens, no Redis or gRPC.

Each test shows one decision of the registry: what a creation checks and writes in which order,
what a token must be to name a principal, the bootstrap principal and its retirement, the cache
of answers, and what listing skips. ``tests/unit/audit/test_audit_log_store.py`` and the e2e
tests run it over Redis and through the server.
"""

from __future__ import annotations

import pytest

from idverify.domain.errors import FailedPrecondition, InvalidArgument, NotFound, StoreUnavailable
from idverify.security.clients import ClientCreation, ClientRegistry, NewClient
from idverify.security.principals import Principal, Role
from idverify.testing.memory_clients import MemoryClientStore

REQUEST = {"principal": "admin01", "request_id": "r1", "trace_id": ""}


class Keyed:
    """A stand-in for the keyring's MAC: readable, and different for every secret."""

    def mac(self, tenant: str, purpose: str, data: bytes) -> bytes:
        return f"{tenant}|{purpose}|".encode() + data


def registry(store: MemoryClientStore, cache_seconds: float = 60.0) -> ClientRegistry:
    return ClientRegistry(store, Keyed(), cache_seconds=cache_seconds)


async def test_a_created_client_authenticates_with_its_token_only() -> None:
    store = MemoryClientStore()
    clients = registry(store)
    record, token = await clients.create("acme", Role.REGISTRAR, "shop", REQUEST)
    assert token.startswith(f"ivk_acme.{record.client_id}.")
    assert (record.tenant, record.role, record.description, record.revoked) == (
        "acme",
        Role.REGISTRAR,
        "shop",
        False,
    )
    assert record.created_ms == store.now
    assert await clients.get(record.client_id) == record
    assert await clients.authenticate(token) == Principal("acme", Role.REGISTRAR, record.client_id)
    secret = token.rsplit(".", 1)[1]
    # The store keeps the secret's keyed hash, never the secret itself.
    stored = await store.credentials("acme", record.client_id)
    assert stored is not None
    assert stored.secret_mac != secret
    assert secret.encode().hex() in stored.secret_mac
    assert await clients.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert await clients.authenticate(token.replace("ivk_acme.", "ivk_globex.")) is None
    assert await clients.authenticate("Bearer " + token) is None
    assert await clients.authenticate("ivk_" + "a" * 300) is None
    assert await clients.authenticate("ivk_acme.not-alnum.x") is None


async def test_a_creation_checks_its_arguments_before_writing_anything() -> None:
    store = MemoryClientStore()
    clients = registry(store)
    with pytest.raises(InvalidArgument):
        await clients.create("Acme!", Role.ADMIN)
    with pytest.raises(InvalidArgument):
        await clients.create("acme", Role.ADMIN, "x" * 201)
    with pytest.raises(InvalidArgument):
        await clients.create("acme", Role.ADMIN, "tab\there")
    assert await store.owners() == {}
    assert store.audit == []


async def test_a_tenant_being_removed_gets_no_client_nor_a_mapped_id() -> None:
    store = MemoryClientStore()
    store.remove_tenant("acme")
    with pytest.raises(FailedPrecondition) as refused:
        await registry(store).create("acme", Role.ADMIN)
    assert refused.value.reason == "TENANT_REMOVED"
    assert await store.owners() == {}


class RemovedMidway(MemoryClientStore):
    """The tenant's removal starts between the registry's check and the creation's step."""

    async def create(self, client: NewClient) -> tuple[ClientCreation, int]:
        self.remove_tenant(client.tenant)
        return await super().create(client)


async def test_a_removal_between_the_check_and_the_step_leaves_no_mapped_id() -> None:
    store = RemovedMidway()
    with pytest.raises(FailedPrecondition) as refused:
        await registry(store).create("acme", Role.ADMIN)
    assert refused.value.reason == "TENANT_REMOVED"
    assert await store.owners() == {}


async def test_the_first_operator_retires_the_bootstrap_token() -> None:
    store = MemoryClientStore()
    clients = registry(store, cache_seconds=0)
    boot, boot_token = await clients.create("default", Role.ADMIN, "bootstrap admin")
    store.bootstrap = boot.client_id
    assert await clients.authenticate(boot_token) == Principal("default", Role.BOOTSTRAP, boot.client_id)
    await clients.create("acme", Role.ADMIN)
    assert not await clients.bootstrap_retired()
    await clients.create("ops", Role.OPERATOR, "on call")
    assert await clients.bootstrap_retired()


async def test_the_bootstrap_client_is_created_once_and_is_the_bootstrap_principal() -> None:
    store = MemoryClientStore()
    clients = registry(store, cache_seconds=0)
    token = await clients.create_bootstrap()
    assert token is not None
    assert store.bootstrap is not None
    record = await clients.get(store.bootstrap)
    assert (record.tenant, record.role, record.description) == ("default", Role.ADMIN, "bootstrap admin")
    assert await clients.authenticate(token) == Principal("default", Role.BOOTSTRAP, store.bootstrap)
    assert await clients.create_bootstrap() is None
    assert [kind for _, kind, _ in store.audit] == ["client.created"]


class ClaimedMidway(MemoryClientStore):
    """Another replica records its bootstrap client between our check and our claim."""

    async def claim_bootstrap(self, client_id: str) -> bool:
        self.bootstrap = "theirs"
        return await super().claim_bootstrap(client_id)


async def test_a_bootstrap_client_that_lost_the_race_is_revoked() -> None:
    store = ClaimedMidway()
    clients = registry(store, cache_seconds=0)
    assert await clients.create_bootstrap() is None
    assert store.bootstrap == "theirs"
    assert [kind for _, kind, _ in store.audit] == ["client.created", "client.revoked"]
    (ours,) = await clients.list("default")
    assert ours.revoked


async def test_a_revoked_token_stops_at_once_in_this_registry() -> None:
    store = MemoryClientStore()
    clients = registry(store, cache_seconds=60)
    record, token = await clients.create("acme", Role.ADMIN)
    assert await clients.authenticate(token) is not None
    revoked = await clients.revoke(record.client_id, REQUEST)
    assert revoked.revoked
    assert await clients.authenticate(token) is None  # the cache was emptied
    assert store.audit == [
        ("acme", "client.created", record.client_id),
        ("acme", "client.revoked", record.client_id),
    ]
    with pytest.raises(NotFound):
        await clients.revoke("0123456789abcdef")


async def test_answers_are_cached_for_the_cache_time() -> None:
    store = MemoryClientStore()
    clients = registry(store, cache_seconds=60)
    _, token = await clients.create("acme", Role.ADMIN)
    assert await clients.authenticate(token) is not None
    store.down = True  # answered from the cache: the store is not asked
    assert await clients.authenticate(token) is not None
    with pytest.raises(StoreUnavailable):
        await registry(store).authenticate(token)


async def test_listing_skips_ids_whose_creation_did_not_finish() -> None:
    store = MemoryClientStore()
    clients = registry(store)
    a, _ = await clients.create("acme", Role.ADMIN)
    g, _ = await clients.create("globex", Role.AUDITOR)
    await store.map_client("0000000000000000", "acme")  # a crash between the map and the step
    assert [r.client_id for r in await clients.list()] == sorted([a.client_id, g.client_id])
    assert await clients.list("globex") == [g]
    assert await clients.tenants() == {"acme", "globex"}
    with pytest.raises(NotFound):
        await clients.get("0000000000000000")

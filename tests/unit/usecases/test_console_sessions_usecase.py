"""The console's sessions over in-memory sessions and clients: cookies, expiry, revocation; no Redis.

Each test shows one decision of ``console.sessions.ConsoleSessions``: a cookie names its tenant
and a random id whose digest alone is stored; a session ends at its expiry, at sign-out, or when
its client is revoked or changed; a cookie that is not one this service makes is refused
without asking the store. ``test_console_sessions_contract.py`` holds the in-memory store to
what Redis does.
"""

from __future__ import annotations

import hashlib

import pytest

from idverify.console.sessions import ConsoleSessions, Session
from idverify.domain.errors import StoreUnavailable
from idverify.security.clients import ClientRegistry
from idverify.security.principals import Principal, Role
from idverify.testing.memory_clients import MemoryClientStore
from idverify.testing.memory_console_sessions import MemoryConsoleSessions

REQUEST = {"principal": "acme/auditor/x", "request_id": "", "trace_id": ""}


class Keyed:
    """A stand-in for the keyring's MAC."""

    def mac(self, tenant: str, purpose: str, data: bytes) -> bytes:
        return f"{tenant}|{purpose}|".encode() + data


async def world(
    lifetime_seconds: float = 60.0,
) -> tuple[ConsoleSessions, MemoryConsoleSessions, ClientRegistry]:
    store = MemoryConsoleSessions()
    clients = ClientRegistry(MemoryClientStore(), Keyed(), cache_seconds=0.0)
    return ConsoleSessions(store, clients, lifetime_seconds), store, clients


async def auditor(clients: ClientRegistry, tenant: str = "acme") -> Principal:
    record, _ = await clients.create(tenant, Role.AUDITOR, "console", REQUEST)
    return Principal(record.tenant, record.role, record.client_id)


async def test_a_cookie_names_the_tenant_and_an_id_only_whose_digest_is_stored() -> None:
    sessions, store, clients = await world()
    principal = await auditor(clients)
    cookie, opened = await sessions.open(principal, REQUEST)
    tenant, _, session_id = cookie.rpartition(".")
    assert tenant == "acme"
    assert store.digests("acme") == [hashlib.sha256(session_id.encode()).hexdigest()]
    assert await sessions.find(cookie) == opened == Session(principal, opened.expires_ms)
    assert store.audit == [("acme", "console.signed_in", principal.client_id, "auditor")]


async def test_signing_out_ends_the_session_and_an_unknown_one_is_no_error() -> None:
    sessions, store, clients = await world()
    cookie, _ = await sessions.open(await auditor(clients), REQUEST)
    await sessions.close(cookie, REQUEST)
    assert await sessions.find(cookie) is None
    await sessions.close(cookie, REQUEST)
    await sessions.close("not a cookie", REQUEST)
    assert [kind for _, kind, _, _ in store.audit] == ["console.signed_in", "console.signed_out"]


async def test_a_session_past_its_expiry_is_not_found() -> None:
    sessions, _, clients = await world(lifetime_seconds=0.0)
    cookie, _ = await sessions.open(await auditor(clients), REQUEST)
    assert await sessions.find(cookie) is None


async def test_a_revoked_client_s_session_is_not_found() -> None:
    sessions, _, clients = await world()
    principal = await auditor(clients)
    cookie, _ = await sessions.open(principal, REQUEST)
    await clients.revoke(principal.client_id, REQUEST)
    assert await sessions.find(cookie) is None


async def test_a_session_moved_to_another_tenant_or_signed_in_with_another_role_is_not_found() -> None:
    sessions, _, clients = await world()
    principal = await auditor(clients)
    cookie, _ = await sessions.open(principal, REQUEST)
    session_id = cookie.rpartition(".")[2]
    assert await sessions.find(f"beta.{session_id}") is None  # another tenant's cookie for the same id
    admin = Principal("acme", Role.ADMIN, principal.client_id)  # the client is an auditor, not an admin
    cookie, _ = await sessions.open(admin, REQUEST)
    assert await sessions.find(cookie) is None


async def test_a_cookie_this_service_does_not_make_is_refused_without_asking_the_store() -> None:
    sessions, store, clients = await world()
    cookie, _ = await sessions.open(await auditor(clients), REQUEST)
    store.down = True
    for bad in ("", "acme", "acme.short", "Acme!." + "a" * 43, "acme." + "a" * 42 + "=", "acme." + "a" * 44):
        assert await sessions.find(bad) is None
    with pytest.raises(StoreUnavailable):
        await sessions.find(cookie)

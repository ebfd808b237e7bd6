"""Break-glass over an in-memory client store: an operator, audited as the host's user, no Redis.

``tests/e2e/test_break_glass.py`` runs the command line over the server's store.
"""

from __future__ import annotations

import json

from idverify.security.break_glass import break_glass_principal, create_operator
from idverify.security.clients import ClientCreation, ClientRegistry, NewClient
from idverify.security.principals import Principal, Role
from idverify.testing.memory_clients import MemoryClientStore


class Keyed:
    """A stand-in for the keyring's MAC."""

    def mac(self, tenant: str, purpose: str, data: bytes) -> bytes:
        return f"{tenant}|{purpose}|".encode() + data


class RecordedRequests(MemoryClientStore):
    """Keeps the audit request each creation carried (the in-memory store keeps none)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    async def create(self, client: NewClient) -> tuple[ClientCreation, int]:
        self.requests.append(client.request_json)
        return await super().create(client)


async def test_an_operator_is_created_retiring_the_bootstrap_and_audited_as_the_host_user() -> None:
    store = RecordedRequests()
    clients = ClientRegistry(store, Keyed(), cache_seconds=0)
    record, token = await create_operator(clients, "ops", "")
    assert (record.tenant, record.role, record.description) == ("ops", Role.OPERATOR, "break-glass operator")
    assert await clients.authenticate(token) == Principal("ops", Role.OPERATOR, record.client_id)
    assert await clients.bootstrap_retired()
    (request,) = store.requests
    assert json.loads(request)["principal"] == break_glass_principal()
    assert break_glass_principal().startswith("break-glass/")

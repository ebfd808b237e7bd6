"""An in-memory ``security.clients.ClientStore``: API clients' records as plain values.

Clients are kept by tenant and id with the keyed hash of their secret; the map of ids to tenants,
the tenants being removed (``remove_tenant``), the bootstrap client's id (``bootstrap``) and its
retirement are plain fields, and ``audit`` lists ``(tenant, type, client id)`` as ``client.lua``
would log them. The clock is a number the test moves. ``tests/unit/usecases/test_clients_contract.py``
holds it and ``store.clients.RedisClientStore`` to the same assertions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from idverify.security.clients import ClientCreation, ClientRecord, NewClient, StoredCredentials
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryClientStore"]


@dataclass(frozen=True, slots=True)
class _Client:
    record: ClientRecord
    secret_mac: str


class MemoryClientStore:
    """API clients of every tenant, in memory."""

    def __init__(self, now_ms: int = 1_760_000_000_000) -> None:
        self.now = now_ms
        self.audit: list[tuple[str, str, str]] = []
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self.bootstrap: str | None = None  # the bootstrap client's id, set as the server's start does
        self._removed: set[str] = set()
        self._owners: dict[str, str] = {}
        self._clients: dict[tuple[str, str], _Client] = {}
        self._retired_by: str | None = None

    def _reach(self) -> None:
        refuse_if_down(self.down)

    def remove_tenant(self, tenant: str) -> None:
        """Marks the tenant as being removed, as tenant removal's first step does."""
        self._removed.add(tenant)

    async def now_ms(self) -> int:
        """The test's clock."""
        self._reach()
        return self.now

    async def tenant_removed(self, tenant: str) -> bool:
        """Whether ``remove_tenant`` named it."""
        self._reach()
        return tenant in self._removed

    async def map_client(self, client_id: str, tenant: str) -> None:
        """Maps the id to its tenant."""
        self._reach()
        self._owners[client_id] = tenant

    async def unmap_client(self, client_id: str) -> None:
        """Forgets the id."""
        self._reach()
        self._owners.pop(client_id, None)

    async def create(self, client: NewClient) -> tuple[ClientCreation, int]:
        """Creates as ``client.lua`` does."""
        self._reach()
        where = (client.tenant, client.client_id)
        if where in self._clients:
            return ClientCreation.EXISTS, 0
        if client.tenant in self._removed:
            return ClientCreation.TENANT_REMOVED, 0
        record = ClientRecord(
            client.client_id, client.tenant, client.role, client.description, self.now, revoked=False
        )
        self._clients[where] = _Client(record, client.secret_mac)
        self.audit.append((client.tenant, "client.created", client.client_id))
        return ClientCreation.CREATED, self.now

    async def revoke(self, tenant: str, client_id: str, request_json: str) -> bool:
        """Revokes as ``client.lua`` does: once, and audited once."""
        del request_json  # ``audit`` keeps no requests
        self._reach()
        client = self._clients.get((tenant, client_id))
        if client is None:
            return False
        if not client.record.revoked:
            self._clients[tenant, client_id] = replace(client, record=replace(client.record, revoked=True))
            self.audit.append((tenant, "client.revoked", client_id))
        return True

    async def client(self, client_id: str) -> ClientRecord | None:
        """The record of the id's tenant's client."""
        self._reach()
        tenant = self._owners.get(client_id)
        client = self._clients.get((tenant, client_id)) if tenant else None
        return client.record if client else None

    async def owners(self) -> dict[str, str]:
        """The map of ids to tenants."""
        self._reach()
        return dict(self._owners)

    async def tenants(self) -> set[str]:
        """The tenants in the map."""
        self._reach()
        return set(self._owners.values())

    async def credentials(self, tenant: str, client_id: str) -> StoredCredentials | None:
        """The client's role, liveness and secret's hash."""
        self._reach()
        client = self._clients.get((tenant, client_id))
        if client is None:
            return None
        return StoredCredentials(client.record.role.value, not client.record.revoked, client.secret_mac)

    async def bootstrap_id(self) -> str | None:
        """``bootstrap``."""
        self._reach()
        return self.bootstrap

    async def claim_bootstrap(self, client_id: str) -> bool:
        """Sets ``bootstrap`` unless it is set."""
        self._reach()
        if self.bootstrap is not None:
            return False
        self.bootstrap = client_id
        return True

    async def retire_bootstrap(self, operator_id: str) -> None:
        """Records the operator that retired the bootstrap token."""
        self._reach()
        self._retired_by = operator_id

    async def bootstrap_retired(self) -> bool:
        """Whether an operator retired it."""
        self._reach()
        return self._retired_by is not None

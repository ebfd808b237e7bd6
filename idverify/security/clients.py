"""API clients: bearer tokens stored as keyed hashes, looked up per call with a short cache.

A token reads ``ivk_<tenant>.<client id>.<secret>``. The tenant and client id find the record
in one read of the tenant's hash slot; the secret (256 random bits) is stored only as
HMAC-SHA256 under a keyring subkey, so a Redis dump yields no usable token. Because the secret
has full entropy, a keyed hash is enough; argon2 would only slow every call down.

Creating and revoking a client are state changes of its tenant: each is one Lua step that
writes the record and its audit entry together (``store/lua/client.lua``). A global hash maps
client ids to tenants so that an admin can list and revoke by id; it is written before the
tenant's step, so a crash between the two leaves an id that names no client, which listing
skips and revoking reports as not found.

The bootstrap token's client is recognised by the id in ``GlobalKeys.BOOTSTRAP`` and
authenticates as ``Role.BOOTSTRAP`` whatever its record says. Creating the first operator sets
``GlobalKeys.BOOTSTRAP_RETIRED``; from then on the bootstrap token is refused for good
(revoking every operator does not bring it back: the break-glass CLI does that job).

The registry decides (the token's form and digest, who may be bootstrap, the cache) and keeps
its records through :class:`ClientStore`, the port declared here, in typed values;
``store.clients.RedisClientStore`` implements it (the client hash, the global map of ids to
tenants, the bootstrap keys, ``client.lua`` and its replies).
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from idverify.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from idverify.domain.tenants import valid_tenant
from idverify.security.principals import Principal, Role
from idverify.verifiers.base import Keyed

__all__ = [
    "TOKEN_PREFIX",
    "ClientCreation",
    "ClientRecord",
    "ClientRegistry",
    "ClientStore",
    "NewClient",
    "StoredCredentials",
]

TOKEN_PREFIX = "ivk_"  # noqa: S105 - a prefix, not a secret
_GLOBAL_TENANT = "_global"
_TOKEN_PURPOSE = "client-token"  # noqa: S105 - a key-derivation label
_MAX_TOKEN_LENGTH = 300
_TOKEN_PARTS = 3


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """What is stored about a client (never the token)."""

    client_id: str
    tenant: str
    role: Role
    description: str
    created_ms: int
    revoked: bool


@dataclass(frozen=True, slots=True)
class NewClient:
    """A client to create, with the keyed hash of its secret and its audit entry's request."""

    tenant: str
    client_id: str
    role: Role
    description: str
    secret_mac: str
    request_json: str


class ClientCreation(Enum):
    """How a creation went."""

    CREATED = "created"
    EXISTS = "exists"  # a client of that id was there already: nothing was written
    TENANT_REMOVED = "tenant_removed"  # the tenant is being removed, or was: nothing was written


@dataclass(frozen=True, slots=True)
class StoredCredentials:
    """What a token is checked against: the client's stored role, whether it is live, its secret's hash."""

    role: str  # as stored; read as a Role only once the secret matched
    live: bool  # stored as not revoked
    secret_mac: str


class ClientStore(Protocol):
    """API clients' records; every method may raise StoreUnavailable."""

    async def now_ms(self) -> int:
        """The store's clock, in ms of the epoch."""
        ...

    async def tenant_removed(self, tenant: str) -> bool:
        """Whether the tenant is being removed or was removed."""
        ...

    async def map_client(self, client_id: str, tenant: str) -> None:
        """Records which tenant the client id belongs to (before the client is created)."""
        ...

    async def unmap_client(self, client_id: str) -> None:
        """Forgets which tenant the client id belongs to (its creation was refused)."""
        ...

    async def create(self, client: NewClient) -> tuple[ClientCreation, int]:
        """Creates the client and its audit entry in one step; how it went, and when (0 unless created)."""
        ...

    async def revoke(self, tenant: str, client_id: str, request_json: str) -> bool:
        """Revokes the client with its audit entry (once); False when the tenant has no such client."""
        ...

    async def client(self, client_id: str) -> ClientRecord | None:
        """The client's record, or None when no tenant holds one for its id."""
        ...

    async def owners(self) -> dict[str, str]:
        """Every client id mapped to its tenant (some may name no client: their creation did not finish)."""
        ...

    async def tenants(self) -> set[str]:
        """Every tenant a client id is mapped to."""
        ...

    async def credentials(self, tenant: str, client_id: str) -> StoredCredentials | None:
        """What the tenant's client's token is checked against; None when there is no such client."""
        ...

    async def bootstrap_id(self) -> str | None:
        """The bootstrap client's id, once it was created."""
        ...

    async def claim_bootstrap(self, client_id: str) -> bool:
        """Records the client as the bootstrap client unless one is recorded; whether it now is."""
        ...

    async def retire_bootstrap(self, operator_id: str) -> None:
        """Records that an operator exists, which retires the bootstrap token for good."""
        ...

    async def bootstrap_retired(self) -> bool:
        """Whether an operator was ever created."""
        ...


class ClientRegistry:
    """Creates, lists, revokes and authenticates API clients."""

    def __init__(self, store: ClientStore, keyed: Keyed, *, cache_seconds: float = 2.0) -> None:
        self._store = store
        self._keyed = keyed
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        # Set once, never changed: one read per process once it exists.
        self._bootstrap_id: str | None = None

    def _digest(self, secret: str) -> str:
        return self._keyed.mac(_GLOBAL_TENANT, _TOKEN_PURPOSE, secret.encode()).hex()

    async def create(
        self, tenant: str, role: Role, description: str = "", request: Mapping[str, str] | None = None
    ) -> tuple[ClientRecord, str]:
        """Creates a client, with its audit entry; returns its record and its token (shown once).

        ``request`` holds the audit fields of the call behind it (``RequestInfo.audit_fields()``).

        Raises:
            InvalidArgument: on a bad tenant name or description.
            FailedPrecondition: the tenant is being removed or was removed (``TENANT_REMOVED``).
            StoreUnavailable: when Redis cannot be reached.
        """
        if not valid_tenant(tenant):
            raise InvalidArgument("tenant: lower-case letters, digits, - and _", field="tenant")
        if len(description) > 200 or not description.isprintable():  # noqa: PLR2004
            raise InvalidArgument("description: printable, at most 200 characters", field="description")
        client_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        store = self._store
        # Checked again in the step; here too, so that the global map names no removed tenant.
        if await store.tenant_removed(tenant):
            raise _tenant_removed(tenant)
        await store.map_client(client_id, tenant)
        outcome, created_ms = await store.create(
            NewClient(tenant, client_id, role, description, self._digest(secret), _request_json(request))
        )
        if outcome is ClientCreation.TENANT_REMOVED:
            await store.unmap_client(client_id)
            raise _tenant_removed(tenant)
        if outcome is not ClientCreation.CREATED:
            created_ms = await store.now_ms()
        if role is Role.OPERATOR:
            # After the operator exists, so that a failed creation leaves the bootstrap usable.
            await store.retire_bootstrap(client_id)
        record = ClientRecord(client_id, tenant, role, description, created_ms, revoked=False)
        return record, f"{TOKEN_PREFIX}{tenant}.{client_id}.{secret}"

    async def create_bootstrap(self) -> str | None:
        """Creates the bootstrap client on first start; returns its token, or None if it exists.

        Its record says admin of ``default`` (what earlier versions read); being the recorded
        bootstrap client makes it the bootstrap principal, which may only create operators and
        admins until an operator exists.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        if await self._store.bootstrap_id() is not None:
            return None
        record, token = await self.create("default", Role.ADMIN, "bootstrap admin")
        if not await self._store.claim_bootstrap(record.client_id):
            # Another replica won the race: ours must not stay usable.
            await self.revoke(record.client_id)
            return None
        return token

    async def bootstrap_retired(self) -> bool:
        """True once an operator client has been created.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        return await self._store.bootstrap_retired()

    async def _is_bootstrap(self, client_id: str) -> bool:
        if self._bootstrap_id is None:
            found = await self._store.bootstrap_id()
            if found is None:
                return False
            self._bootstrap_id = found
        return client_id == self._bootstrap_id

    async def get(self, client_id: str) -> ClientRecord:
        """One client.

        Raises:
            NotFound: when there is no such client.
            StoreUnavailable: when Redis cannot be reached.
        """
        record = await self._store.client(client_id)
        if record is None:
            raise NotFound("no such client", field="client_id")
        return record

    async def list(self, tenant: str = "") -> list[ClientRecord]:
        """All clients, or a tenant's.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        owners = await self._store.owners()
        records = []
        for client_id in sorted(owners):
            if tenant and owners[client_id] != tenant:
                continue
            try:
                records.append(await self.get(client_id))
            except NotFound:
                continue  # its creation did not finish: nothing to list
        return records

    async def tenants(self) -> set[str]:
        """Every tenant that has (or had) a client, which is every tenant with an audit log.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        return await self._store.tenants()

    async def revoke(self, client_id: str, request: Mapping[str, str] | None = None) -> ClientRecord:
        """Revokes a client, with its audit entry; its token stops working within the cache time.

        Raises:
            NotFound: when there is no such client.
            StoreUnavailable: when Redis cannot be reached.
        """
        record = await self.get(client_id)
        if not await self._store.revoke(record.tenant, client_id, _request_json(request)):
            raise NotFound("no such client", field="client_id")
        self._cache.clear()
        return await self.get(client_id)

    async def authenticate(self, token: str) -> Principal | None:
        """The principal a bearer token names, or None when it names no live client."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
            return None
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached and cached[0] > now:
            return cached[1]
        parts = token[len(TOKEN_PREFIX) :].split(".")
        principal = None
        if len(parts) == _TOKEN_PARTS and valid_tenant(parts[0]) and parts[1].isalnum() and parts[2]:
            tenant, client_id, secret = parts
            stored = await self._store.credentials(tenant, client_id)
            if (
                stored is not None
                and stored.live
                and hmac.compare_digest(stored.secret_mac, self._digest(secret))
            ):
                role = Role.BOOTSTRAP if await self._is_bootstrap(client_id) else Role(stored.role)
                principal = Principal(tenant, role, client_id)
        if len(self._cache) > 10_000:  # noqa: PLR2004 - bound memory under token spraying
            self._cache.clear()
        self._cache[token] = (now + self._cache_seconds, principal)
        return principal


def _tenant_removed(tenant: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"tenant {tenant} is being removed or was removed", reason="TENANT_REMOVED", field="tenant"
    )


def _request_json(request: Mapping[str, str] | None) -> str:
    """The audit entry's request fields; the service itself when no call is behind it (bootstrap)."""
    return json.dumps(dict(request) if request is not None else {"principal": "idverify"})

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

The bootstrap token's client is recognised by the id in ``GlobalKeys.bootstrap()`` and
authenticates as ``Role.BOOTSTRAP`` whatever its record says. Creating the first operator sets
``GlobalKeys.bootstrap_retired()``; from then on the bootstrap token is refused for good
(revoking every operator does not bring it back: the break-glass CLI does that job).
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from idverify.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from idverify.security.principals import Principal, Role
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import GlobalKeys, TenantKeys, valid_tenant
from idverify.store.scripts import Scripts
from idverify.verifiers.base import Keyed

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


class ClientRegistry:
    """Creates, lists, revokes and authenticates API clients."""

    def __init__(
        self, redis: RedisClient, keyed: Keyed, *, cache_seconds: float = 2.0, scripts: Scripts | None = None
    ) -> None:
        self._redis = redis
        self._keyed = keyed
        self._scripts = scripts or Scripts(redis)
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
        keys = TenantKeys(tenant)
        async with translate_errors():
            # Checked again in the step; here too, so that the global map names no removed tenant.
            if await self._redis.exists(keys.removal()):
                raise _tenant_removed(tenant)
            await self._redis.hset(GlobalKeys.client_tenants(), client_id, tenant)
        result = await self._scripts.run(
            "client",
            [keys.client(client_id), keys.clients(), keys.audit_log(), keys.removal()],
            [
                "create",
                client_id,
                _request_json(request),
                tenant,
                role.value,
                description,
                self._digest(secret),
            ],
        )
        if result[0] == b"TENANT_REMOVED":
            async with translate_errors():
                await self._redis.hdel(GlobalKeys.client_tenants(), client_id)
            raise _tenant_removed(tenant)
        created_ms = int(result[1]) if result[0] == b"OK" else await self._scripts.clock.now_ms()
        if role is Role.OPERATOR:
            # After the operator exists, so that a failed creation leaves the bootstrap usable.
            async with translate_errors():
                await self._redis.set(GlobalKeys.bootstrap_retired(), client_id)
        record = ClientRecord(client_id, tenant, role, description, created_ms, revoked=False)
        return record, f"{TOKEN_PREFIX}{tenant}.{client_id}.{secret}"

    async def bootstrap_retired(self) -> bool:
        """True once an operator client has been created.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        async with translate_errors():
            return bool(await self._redis.exists(GlobalKeys.bootstrap_retired()))

    async def _is_bootstrap(self, client_id: str) -> bool:
        if self._bootstrap_id is None:
            async with translate_errors():
                found = await self._redis.get(GlobalKeys.bootstrap())
            if found is None:
                return False
            self._bootstrap_id = as_text(found)
        return client_id == self._bootstrap_id

    async def get(self, client_id: str) -> ClientRecord:
        """One client.

        Raises:
            NotFound: when there is no such client.
            StoreUnavailable: when Redis cannot be reached.
        """
        async with translate_errors():
            tenant = await self._redis.hget(GlobalKeys.client_tenants(), client_id)
            raw = await self._redis.hgetall(TenantKeys(as_text(tenant)).client(client_id)) if tenant else {}
        if not raw:
            raise NotFound("no such client", field="client_id")
        return _record(client_id, {as_text(k): as_text(v) for k, v in raw.items()})

    async def list(self, tenant: str = "") -> list[ClientRecord]:
        """All clients, or a tenant's.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        async with translate_errors():
            owners = {
                as_text(k): as_text(v)
                for k, v in (await self._redis.hgetall(GlobalKeys.client_tenants())).items()
            }
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
        async with translate_errors():
            return {as_text(t) for t in await self._redis.hvals(GlobalKeys.client_tenants())}

    async def revoke(self, client_id: str, request: Mapping[str, str] | None = None) -> ClientRecord:
        """Revokes a client, with its audit entry; its token stops working within the cache time.

        Raises:
            NotFound: when there is no such client.
            StoreUnavailable: when Redis cannot be reached.
        """
        record = await self.get(client_id)
        keys = TenantKeys(record.tenant)
        result = await self._scripts.run(
            "client",
            [keys.client(client_id), keys.clients(), keys.audit_log()],
            ["revoke", client_id, _request_json(request)],
        )
        if result[0] == b"NOT_FOUND":
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
            async with translate_errors():
                raw = await self._redis.hgetall(TenantKeys(tenant).client(client_id))
            fields = {as_text(k): as_text(v) for k, v in raw.items()}
            if (
                fields
                and fields.get("revoked") == "0"
                and hmac.compare_digest(fields.get("secret_mac", ""), self._digest(secret))
            ):
                role = Role.BOOTSTRAP if await self._is_bootstrap(client_id) else Role(fields["role"])
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


def _record(client_id: str, fields: dict[str, str]) -> ClientRecord:
    return ClientRecord(
        client_id=client_id,
        tenant=fields["tenant"],
        role=Role(fields["role"]),
        description=fields.get("description", ""),
        created_ms=int(fields.get("created_ms", "0")),
        revoked=fields.get("revoked") == "1",
    )

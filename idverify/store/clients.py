"""API clients' records in Redis, for ``security.clients``.

``security.clients`` decides (a token's form and digest, the bootstrap principal, the cache);
this adapter keeps a client's hash in its tenant's slot (``{t}:client:<id>``: tenant, role,
description, created_ms, revoked, secret_mac), the global map of client ids to tenants, the
bootstrap client's id and its retirement, runs ``client.lua`` (a creation or revocation with its
audit entry) and decodes its replies once.
"""

from __future__ import annotations

from idverify.security.clients import ClientCreation, ClientRecord, NewClient, StoredCredentials
from idverify.security.principals import Role
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["RedisClientStore"]

# client.lua's replies to a creation: {'OK', now} | {'EXISTS'} | {'TENANT_REMOVED'}.
_CREATIONS = {b"OK": ClientCreation.CREATED, b"TENANT_REMOVED": ClientCreation.TENANT_REMOVED}


class RedisClientStore:
    """``security.clients.ClientStore`` over one Redis client and its scripts.

    Every method may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, redis: RedisClient, scripts: Scripts | None = None) -> None:
        self._redis = redis
        self._scripts = scripts or Scripts(redis)

    async def now_ms(self) -> int:
        """The store's clock."""
        return await self._scripts.clock.now_ms()

    async def tenant_removed(self, tenant: str) -> bool:
        """Whether the tenant's removal record exists."""
        async with translate_errors():
            return bool(await self._redis.exists(TenantKeys(tenant).removal()))

    async def map_client(self, client_id: str, tenant: str) -> None:
        """Sets the id's tenant in the global map."""
        async with translate_errors():
            await self._redis.hset(GlobalKeys.CLIENT_TENANTS, client_id, tenant)

    async def unmap_client(self, client_id: str) -> None:
        """Deletes the id from the global map."""
        async with translate_errors():
            await self._redis.hdel(GlobalKeys.CLIENT_TENANTS, client_id)

    async def create(self, client: NewClient) -> tuple[ClientCreation, int]:
        """Runs ``client.lua``'s creation, which also refuses a tenant being removed."""
        keys = TenantKeys(client.tenant)
        result = await self._scripts.run(
            "client",
            [keys.client(client.client_id), keys.clients(), keys.audit_log(), keys.removal()],
            [
                "create",
                client.client_id,
                client.request_json,
                client.tenant,
                client.role.value,
                client.description,
                client.secret_mac,
            ],
        )
        outcome = _CREATIONS.get(result[0], ClientCreation.EXISTS)
        return outcome, int(result[1]) if outcome is ClientCreation.CREATED else 0

    async def revoke(self, tenant: str, client_id: str, request_json: str) -> bool:
        """Runs ``client.lua``'s revocation: {'OK', now or 0 when revoked already} | {'NOT_FOUND'}."""
        keys = TenantKeys(tenant)
        result = await self._scripts.run(
            "client",
            [keys.client(client_id), keys.clients(), keys.audit_log()],
            ["revoke", client_id, request_json],
        )
        return bool(result[0] != b"NOT_FOUND")

    async def client(self, client_id: str) -> ClientRecord | None:
        """The id's tenant from the global map, then the client's hash there: two reads."""
        async with translate_errors():
            tenant = await self._redis.hget(GlobalKeys.CLIENT_TENANTS, client_id)
            raw = await self._redis.hgetall(TenantKeys(as_text(tenant)).client(client_id)) if tenant else {}
        if not raw:
            return None
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        return ClientRecord(
            client_id=client_id,
            tenant=fields["tenant"],
            role=Role(fields["role"]),
            description=fields.get("description", ""),
            created_ms=int(fields.get("created_ms", "0")),
            revoked=fields.get("revoked") == "1",
        )

    async def owners(self) -> dict[str, str]:
        """The global map."""
        async with translate_errors():
            raw = await self._redis.hgetall(GlobalKeys.CLIENT_TENANTS)
        return {as_text(k): as_text(v) for k, v in raw.items()}

    async def tenants(self) -> set[str]:
        """The global map's values."""
        async with translate_errors():
            return {as_text(t) for t in await self._redis.hvals(GlobalKeys.CLIENT_TENANTS)}

    async def credentials(self, tenant: str, client_id: str) -> StoredCredentials | None:
        """The client's hash in its tenant's slot: one read, no lookup in the global map."""
        async with translate_errors():
            raw = await self._redis.hgetall(TenantKeys(tenant).client(client_id))
        if not raw:
            return None
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        return StoredCredentials(
            role=fields.get("role", ""),
            live=fields.get("revoked") == "0",
            secret_mac=fields.get("secret_mac", ""),
        )

    async def bootstrap_id(self) -> str | None:
        """``GlobalKeys.BOOTSTRAP``'s value."""
        async with translate_errors():
            found = await self._redis.get(GlobalKeys.BOOTSTRAP)
        return None if found is None else as_text(found)

    async def claim_bootstrap(self, client_id: str) -> bool:
        """Sets ``GlobalKeys.BOOTSTRAP`` to the id unless it exists (SET NX)."""
        async with translate_errors():
            return bool(await self._redis.set(GlobalKeys.BOOTSTRAP, client_id, nx=True))

    async def retire_bootstrap(self, operator_id: str) -> None:
        """Sets ``GlobalKeys.BOOTSTRAP_RETIRED`` to the operator's id."""
        async with translate_errors():
            await self._redis.set(GlobalKeys.BOOTSTRAP_RETIRED, operator_id)

    async def bootstrap_retired(self) -> bool:
        """Whether ``GlobalKeys.BOOTSTRAP_RETIRED`` exists."""
        async with translate_errors():
            return bool(await self._redis.exists(GlobalKeys.BOOTSTRAP_RETIRED))

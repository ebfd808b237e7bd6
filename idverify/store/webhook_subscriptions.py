"""Webhook subscriptions in Redis, for ``webhooks.subscriptions``.

``webhooks.subscriptions`` decides (what a subscription may be, its secret's sealing, the cursor
a replay moves to); this adapter keeps the tenant's set of subscription ids and each
subscription's hash (``{t}:webhook:<id>``: url, types, secret, timeout_ms, cursor, concurrency,
enabled, created_ms, gen, and failing_ms, first_failure_ms, last_error while failing), runs
``webhook_manage.lua`` (every change with its audit entry) and decodes its replies once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripted_store import ScriptedStore
from idverify.webhooks.subscriptions import NewSubscription, Subscription

__all__ = ["RedisSubscriptionStore"]


class RedisSubscriptionStore(ScriptedStore):
    """``webhooks.subscriptions.SubscriptionStore`` over Redis."""

    async def _manage(
        self, op: str, tenant: str, webhook_id: str, request: Mapping[str, str], *args: str
    ) -> Any:
        keys = TenantKeys(tenant)
        return await self._scripts.run(
            "webhook_manage",
            [keys.webhooks(), keys.webhook(webhook_id), keys.audit_log()],
            [op, json.dumps(dict(request)), webhook_id, *args],
        )

    async def _found(
        self, op: str, tenant: str, webhook_id: str, request: Mapping[str, str], *args: str
    ) -> bool:
        """Runs ``op``; whether the subscription was there (the reply is {'OK'} or {'NOT_FOUND'})."""
        return as_text((await self._manage(op, tenant, webhook_id, request, *args))[0]) != "NOT_FOUND"

    async def count(self, tenant: str) -> int:
        """SCARD of the tenant's ids."""
        async with translate_errors():
            return int(await self._redis.scard(TenantKeys(tenant).webhooks()))

    async def read(self, tenant: str, webhook_id: str) -> Subscription | None:
        """HGETALL of the subscription."""
        async with translate_errors():
            fields = await self._redis.hgetall(TenantKeys(tenant).webhook(webhook_id))
        return _subscription(tenant, webhook_id, fields) if fields else None

    async def read_all(self, tenant: str) -> list[Subscription]:
        """The tenant's ids, then every hash in one pipeline; an id without a hash is left out."""
        keys = TenantKeys(tenant)
        async with translate_errors():
            ids = sorted(as_text(i) for i in await self._redis.smembers(keys.webhooks()))
            async with self._redis.pipeline(transaction=False) as pipe:
                for webhook_id in ids:
                    pipe.hgetall(keys.webhook(webhook_id))
                rows = await pipe.execute()
        return [
            _subscription(tenant, webhook_id, row) for webhook_id, row in zip(ids, rows, strict=True) if row
        ]

    async def create(self, tenant: str, new: NewSubscription, request: Mapping[str, str]) -> None:
        """``webhook_manage.lua``'s create."""
        await self._manage(
            "create",
            tenant,
            new.webhook_id,
            request,
            new.url,
            " ".join(sorted(new.types)),
            new.sealed_secret,
            str(new.timeout_ms),
            new.cursor,
            str(new.concurrency),
        )

    async def update(
        self, tenant: str, webhook_id: str, action: str, sealed_secret: str, request: Mapping[str, str]
    ) -> bool:
        """``webhook_manage.lua``'s update."""
        return await self._found("update", tenant, webhook_id, request, action, sealed_secret)

    async def delete(self, tenant: str, webhook_id: str, request: Mapping[str, str]) -> bool:
        """``webhook_manage.lua``'s delete."""
        return await self._found("delete", tenant, webhook_id, request)

    async def replay(self, tenant: str, webhook_id: str, cursor: str, request: Mapping[str, str]) -> bool:
        """``webhook_manage.lua``'s replay."""
        return await self._found("replay", tenant, webhook_id, request, cursor)

    async def mark_failing(
        self, subscription: Subscription, last_error: str, since_ms: int, request: Mapping[str, str]
    ) -> bool:
        """``webhook_manage.lua``'s fail: {'OK'} | {'STALE'} | {'NOT_FOUND'}."""
        reply = await self._manage(
            "fail",
            subscription.tenant,
            subscription.webhook_id,
            request,
            subscription.generation,
            last_error,
            str(since_ms),
        )
        return as_text(reply[0]) == "OK"


def _subscription(tenant: str, webhook_id: str, raw: Mapping[Any, Any]) -> Subscription:
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    return Subscription(
        webhook_id=webhook_id,
        tenant=tenant,
        url=fields.get("url", ""),
        types=frozenset(fields.get("types", "").split()),
        sealed_secret=fields.get("secret", ""),
        enabled=fields.get("enabled") == "1",
        cursor=fields.get("cursor", ""),
        created_ms=int(fields.get("created_ms", "0")),
        generation=fields.get("gen", "0"),
        timeout_ms=int(fields.get("timeout_ms", "10000")),
        concurrency=int(fields.get("concurrency", "1")),
        failing_ms=int(fields.get("failing_ms", "0")),
        first_failure_ms=int(fields.get("first_failure_ms", "0")),
        last_error=fields.get("last_error", ""),
    )

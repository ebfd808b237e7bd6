"""Webhook subscriptions of a tenant, in Redis under its hash tag, each change audited.

A subscription names a URL, the event types it wants (none: all), a secret (sealed: the stored
form never opens without the keyring; shown once when made) and a cursor: the last event its
receiver acknowledged with a 2xx. Only the worker holding its lease moves the cursor on
(``delivery``); a replay moves it back.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Final

from idverify.config import WebhookSettings
from idverify.domain.errors import InvalidArgument, NotFound
from idverify.events.outbox import Outbox, check_cursor, check_types
from idverify.privacy.sealing import Sealer, associated_data, sealed_from_text, sealed_to_text
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.webhooks.destinations import check_destination
from idverify.webhooks.signing import new_secret

__all__ = ["ACTIONS", "WEBHOOK_SECRET", "Subscription", "Subscriptions"]

WEBHOOK_SECRET: Final = "webhook-secret"  # noqa: S105 - a sealing purpose
"""The sealing purpose of a subscription's secret (its id is the further context)."""
ACTIONS: Final = ("enable", "disable", "rotate_secret")
MAX_SUBSCRIPTIONS: Final = 16
MAX_TIMEOUT_SECONDS: Final = 30
MAX_CONCURRENCY: Final = 16
_ID_LENGTH: Final = 16


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscription as stored (its secret still sealed)."""

    webhook_id: str
    tenant: str
    url: str
    types: frozenset[str]
    sealed_secret: str
    enabled: bool
    cursor: str
    created_ms: int
    generation: str
    timeout_ms: int
    # Deliveries in flight at once, each account's events still one after the other.
    concurrency: int = 1
    failing_ms: int = 0
    first_failure_ms: int = 0
    last_error: str = ""

    @property
    def state(self) -> str:
        """active, disabled or failing."""
        if self.failing_ms:
            return "failing"
        return "active" if self.enabled else "disabled"


def check_webhook_id(webhook_id: str) -> str:
    """The id when it is one this service hands out.

    Raises:
        InvalidArgument: naming ``webhook_id``.
    """
    if len(webhook_id) != _ID_LENGTH or not all(c in "0123456789abcdef" for c in webhook_id):
        raise InvalidArgument("webhook ids are 16 hex digits", reason="BAD_ID", field="webhook_id")
    return webhook_id


class Subscriptions:
    """The subscriptions of every tenant."""

    def __init__(
        self,
        redis: RedisClient,
        scripts: Scripts,
        sealer: Sealer,
        outbox: Outbox,
        settings: WebhookSettings,
        *,
        development: bool,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._sealer = sealer
        self._outbox = outbox
        self._settings = settings
        self._development = development

    def _seal(self, tenant: str, webhook_id: str, secret: str) -> str:
        associated = associated_data(tenant, WEBHOOK_SECRET, webhook_id)
        return sealed_to_text(self._sealer.seal(secret.encode("ascii"), associated=associated))

    def secret_of(self, subscription: Subscription) -> str:
        """The subscription's secret, opened (only to sign; never returned after creation).

        Raises:
            SealError: the stored value does not open with this keyring.
        """
        associated = associated_data(subscription.tenant, WEBHOOK_SECRET, subscription.webhook_id)
        return self._sealer.unseal(
            sealed_from_text(subscription.sealed_secret), associated=associated
        ).decode()

    async def _manage(
        self, op: str, tenant: str, webhook_id: str, request: dict[str, str], *args: str
    ) -> None:
        keys = TenantKeys(tenant)
        reply = await self._scripts.run(
            "webhook_manage",
            [keys.webhooks(), keys.webhook(webhook_id), keys.audit_log()],
            [op, json.dumps(request), webhook_id, *args],
        )
        if as_text(reply[0]) == "NOT_FOUND":
            raise NotFound("no such webhook subscription", field="webhook_id")

    async def create(
        self,
        tenant: str,
        url: str,
        types: list[str],
        timeout_seconds: int,
        request: dict[str, str],
        *,
        from_oldest: bool = False,
        concurrency: int = 0,
    ) -> tuple[Subscription, str]:
        """Makes a subscription; returns it and its secret (the only time the secret is shown).

        Raises:
            InvalidArgument: the URL (``url``: not https, a private destination...), an unknown
                event type (``event_types[i]``), a timeout over 30 s (``timeout_seconds``) or
                a concurrency over 16 (``concurrency``).
            FailedPrecondition: the tenant holds its maximum of subscriptions.
        """
        wanted = check_types(types, "event_types")
        if timeout_seconds > MAX_TIMEOUT_SECONDS:
            raise InvalidArgument(
                f"at most {MAX_TIMEOUT_SECONDS} seconds", reason="BAD_TIMEOUT", field="timeout_seconds"
            )
        if concurrency > MAX_CONCURRENCY:
            raise InvalidArgument(
                f"at most {MAX_CONCURRENCY} deliveries at once", reason="BAD_CONCURRENCY", field="concurrency"
            )
        await check_destination(
            url, development=self._development, allow_private=self._settings.allow_private_destinations
        )
        async with translate_errors():
            count = await self._redis.scard(TenantKeys(tenant).webhooks())
        if int(count) >= MAX_SUBSCRIPTIONS:
            raise InvalidArgument(
                f"a tenant holds at most {MAX_SUBSCRIPTIONS} subscriptions: delete one first",
                reason="TOO_MANY",
                field="url",
            )
        webhook_id = secrets.token_hex(_ID_LENGTH // 2)
        secret = new_secret()
        timeout_ms = int((timeout_seconds or self._settings.timeout_seconds) * 1000)
        # From now on unless asked: the cursor starts at the newest event already there.
        start = "" if from_oldest else await self._outbox.last_cursor(tenant)
        await self._manage(
            "create",
            tenant,
            webhook_id,
            request,
            url,
            " ".join(sorted(wanted)),
            self._seal(tenant, webhook_id, secret),
            str(timeout_ms),
            start,
            str(max(concurrency, 1)),
        )
        return await self.get(tenant, webhook_id), secret

    async def get(self, tenant: str, webhook_id: str) -> Subscription:
        """One subscription.

        Raises:
            NotFound: the tenant has no such subscription.
        """
        async with translate_errors():
            fields = await self._redis.hgetall(TenantKeys(tenant).webhook(check_webhook_id(webhook_id)))
        if not fields:
            raise NotFound("no such webhook subscription", field="webhook_id")
        return _subscription(tenant, webhook_id, {as_text(k): as_text(v) for k, v in fields.items()})

    async def list(self, tenant: str) -> list[Subscription]:
        """The tenant's subscriptions, oldest first."""
        keys = TenantKeys(tenant)
        async with translate_errors():
            ids = sorted(as_text(i) for i in await self._redis.smembers(keys.webhooks()))
            async with self._redis.pipeline(transaction=False) as pipe:
                for webhook_id in ids:
                    pipe.hgetall(keys.webhook(webhook_id))
                rows = await pipe.execute()
        found = [
            _subscription(tenant, webhook_id, {as_text(k): as_text(v) for k, v in row.items()})
            for webhook_id, row in zip(ids, rows, strict=True)
            if row
        ]
        return sorted(found, key=lambda s: (s.created_ms, s.webhook_id))

    async def update(
        self, tenant: str, webhook_id: str, action: str, request: dict[str, str]
    ) -> tuple[Subscription, str]:
        """Enables, disables or re-keys a subscription; the new secret after ``rotate_secret``.

        Raises:
            InvalidArgument: an unknown action (``action``) or malformed id.
            NotFound: the tenant has no such subscription.
        """
        check_webhook_id(webhook_id)
        if action not in ACTIONS:
            raise InvalidArgument(f"one of {', '.join(ACTIONS)}", reason="UNKNOWN_ACTION", field="action")
        secret = new_secret() if action == "rotate_secret" else ""
        sealed = self._seal(tenant, webhook_id, secret) if secret else ""
        await self._manage("update", tenant, webhook_id, request, action, sealed)
        return await self.get(tenant, webhook_id), secret

    async def delete(self, tenant: str, webhook_id: str, request: dict[str, str]) -> None:
        """Deletes a subscription (its deliveries stop at the worker's next step).

        Raises:
            NotFound: the tenant has no such subscription.
        """
        await self._manage("delete", tenant, check_webhook_id(webhook_id), request)

    async def replay(
        self, tenant: str, webhook_id: str, after: str, since_ms: int, request: dict[str, str]
    ) -> Subscription:
        """Moves the cursor so that the events after ``after`` (or from ``since_ms``) go again.

        Raises:
            InvalidArgument: both or neither of ``after`` and ``since`` given, a malformed cursor.
            OutOfRange: the outbox no longer keeps the events asked for.
            NotFound: the tenant has no such subscription.
        """
        check_webhook_id(webhook_id)
        if bool(after) == bool(since_ms):
            raise InvalidArgument(
                "one of after (a cursor) or since (a time)", reason="MISSING", field="after"
            )
        # An event at since_ms or later: every stream id above the last one of the millisecond before.
        cursor = check_cursor(after) if after else f"{since_ms - 1}-18446744073709551615"
        await self._outbox.check_kept(tenant, cursor)
        await self._manage("replay", tenant, webhook_id, request, cursor)
        return await self.get(tenant, webhook_id)

    async def fail(self, subscription: Subscription, last_error: str, since_ms: int) -> bool:
        """Marks a subscription failing (audited), unless it changed since it was loaded."""
        keys = TenantKeys(subscription.tenant)
        request = {"principal": "service/webhooks", "request_id": "", "trace_id": ""}
        reply = await self._scripts.run(
            "webhook_manage",
            [keys.webhooks(), keys.webhook(subscription.webhook_id), keys.audit_log()],
            [
                "fail",
                json.dumps(request),
                subscription.webhook_id,
                subscription.generation,
                last_error,
                str(since_ms),
            ],
        )
        return as_text(reply[0]) == "OK"


def _subscription(tenant: str, webhook_id: str, fields: dict[str, str]) -> Subscription:
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


def now_ms() -> int:
    """Wall-clock ms (a delivery's timestamp header is the receiver's clock's concern)."""
    return int(time.time() * 1000)

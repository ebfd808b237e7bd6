"""Webhook subscriptions of a tenant, in Redis under its hash tag, each change audited.

A subscription names a URL, the event types it wants (none: all), a secret (sealed: the stored
form never opens without the keyring; shown once when made) and a cursor: the last event its
receiver acknowledged with a 2xx. Only the worker holding its lease moves the cursor on
(``delivery``); a replay moves it back.

The subscriptions are kept through :class:`SubscriptionStore`, the port declared here, in typed
values; ``store.webhook_subscriptions.RedisSubscriptionStore`` implements it (the tenant's set of ids, each
subscription's hash, ``webhook_manage.lua`` and its replies).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Final, Protocol

from idverify.config import WebhookSettings
from idverify.domain.errors import InvalidArgument, NotFound
from idverify.events.outbox import check_cursor, check_types
from idverify.privacy.sealing import Sealer, associated_data, sealed_from_text, sealed_to_text
from idverify.webhooks.destinations import check_destination
from idverify.webhooks.signing import new_secret

__all__ = [
    "ACTIONS",
    "WEBHOOK_SECRET",
    "EventCursors",
    "NewSubscription",
    "Subscription",
    "SubscriptionStore",
    "Subscriptions",
]

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


@dataclass(frozen=True, slots=True)
class NewSubscription:
    """A subscription to create, its secret sealed; it starts enabled."""

    webhook_id: str
    url: str
    types: frozenset[str]  # none: every type
    sealed_secret: str
    timeout_ms: int
    cursor: str  # deliver the events after this one (empty: from the oldest kept)
    concurrency: int


class SubscriptionStore(Protocol):
    """Tenants' webhook subscriptions; every change is audited with it, in one step.

    A change the delivering worker must see (all but marking it failing) moves the
    subscription's generation on. Every method may raise StoreUnavailable.
    """

    async def count(self, tenant: str) -> int:
        """How many subscriptions the tenant holds."""
        ...

    async def read(self, tenant: str, webhook_id: str) -> Subscription | None:
        """One subscription, or None when the tenant has no such one."""
        ...

    async def read_all(self, tenant: str) -> list[Subscription]:
        """The tenant's subscriptions, in no particular order."""
        ...

    async def create(self, tenant: str, new: NewSubscription, request: Mapping[str, str]) -> None:
        """Creates the subscription, enabled, at generation 1, created now."""
        ...

    async def update(
        self, tenant: str, webhook_id: str, action: str, sealed_secret: str, request: Mapping[str, str]
    ) -> bool:
        """Enables (no longer failing), disables or re-keys (``sealed_secret``) it; False: no such one."""
        ...

    async def delete(self, tenant: str, webhook_id: str, request: Mapping[str, str]) -> bool:
        """Deletes it; False when there was no such one."""
        ...

    async def replay(self, tenant: str, webhook_id: str, cursor: str, request: Mapping[str, str]) -> bool:
        """Moves its cursor to ``cursor``, no longer failing; False when there is no such one."""
        ...

    async def mark_failing(
        self, subscription: Subscription, last_error: str, since_ms: int, request: Mapping[str, str]
    ) -> bool:
        """Marks it failing since ``since_ms``; False when it changed since it was read, or is failing."""
        ...


class EventCursors(Protocol):
    """What a subscription's cursor is checked against (``events.outbox.Outbox`` is one)."""

    async def last_cursor(self, tenant: str) -> str:
        """The newest event's cursor, or empty while there is none."""
        ...

    async def check_kept(self, tenant: str, after: str) -> None:
        """Refuses (OutOfRange) a cursor whose successors are no longer kept."""
        ...


def check_webhook_id(webhook_id: str) -> str:
    """The id when it is one this service hands out.

    Raises:
        InvalidArgument: naming ``webhook_id``.
    """
    if len(webhook_id) != _ID_LENGTH or not all(c in "0123456789abcdef" for c in webhook_id):
        raise InvalidArgument("webhook ids are 16 hex digits", reason="BAD_ID", field="webhook_id")
    return webhook_id


@dataclass(eq=False, slots=True)
class Subscriptions:
    """The subscriptions of every tenant."""

    store: SubscriptionStore
    sealer: Sealer
    outbox: EventCursors
    settings: WebhookSettings
    _: KW_ONLY
    development: bool

    def _seal(self, tenant: str, webhook_id: str, secret: str) -> str:
        associated = associated_data(tenant, WEBHOOK_SECRET, webhook_id)
        return sealed_to_text(self.sealer.seal(secret.encode("ascii"), associated=associated))

    def secret_of(self, subscription: Subscription) -> str:
        """The subscription's secret, opened (only to sign; never returned after creation).

        Raises:
            SealError: the stored value does not open with this keyring.
        """
        associated = associated_data(subscription.tenant, WEBHOOK_SECRET, subscription.webhook_id)
        return self.sealer.unseal(
            sealed_from_text(subscription.sealed_secret), associated=associated
        ).decode()

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
            url, development=self.development, allow_private=self.settings.allow_private_destinations
        )
        if await self.store.count(tenant) >= MAX_SUBSCRIPTIONS:
            raise InvalidArgument(
                f"a tenant holds at most {MAX_SUBSCRIPTIONS} subscriptions: delete one first",
                reason="TOO_MANY",
                field="url",
            )
        webhook_id = secrets.token_hex(_ID_LENGTH // 2)
        secret = new_secret()
        timeout_ms = int((timeout_seconds or self.settings.timeout_seconds) * 1000)
        # From now on unless asked: the cursor starts at the newest event already there.
        start = "" if from_oldest else await self.outbox.last_cursor(tenant)
        new = NewSubscription(
            webhook_id,
            url,
            frozenset(wanted),
            self._seal(tenant, webhook_id, secret),
            timeout_ms,
            start,
            max(concurrency, 1),
        )
        await self.store.create(tenant, new, request)
        return await self.get(tenant, webhook_id), secret

    async def get(self, tenant: str, webhook_id: str) -> Subscription:
        """One subscription.

        Raises:
            NotFound: the tenant has no such subscription.
        """
        subscription = await self.store.read(tenant, check_webhook_id(webhook_id))
        if subscription is None:
            raise _not_found()
        return subscription

    async def list(self, tenant: str) -> list[Subscription]:
        """The tenant's subscriptions, oldest first."""
        found = await self.store.read_all(tenant)
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
        if not await self.store.update(tenant, webhook_id, action, sealed, request):
            raise _not_found()
        return await self.get(tenant, webhook_id), secret

    async def delete(self, tenant: str, webhook_id: str, request: dict[str, str]) -> None:
        """Deletes a subscription (its deliveries stop at the worker's next step).

        Raises:
            NotFound: the tenant has no such subscription.
        """
        if not await self.store.delete(tenant, check_webhook_id(webhook_id), request):
            raise _not_found()

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
        await self.outbox.check_kept(tenant, cursor)
        if not await self.store.replay(tenant, webhook_id, cursor, request):
            raise _not_found()
        return await self.get(tenant, webhook_id)

    async def fail(self, subscription: Subscription, last_error: str, since_ms: int) -> bool:
        """Marks a subscription failing (audited), unless it changed since it was loaded."""
        request = {"principal": "service/webhooks", "request_id": "", "trace_id": ""}
        return await self.store.mark_failing(subscription, last_error, since_ms, request)


def _not_found() -> NotFound:
    return NotFound("no such webhook subscription", field="webhook_id")


def now_ms() -> int:
    """Wall-clock ms (a delivery's timestamp header is the receiver's clock's concern)."""
    return int(time.time() * 1000)

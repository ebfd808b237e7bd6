"""An in-memory ``webhooks.subscriptions.SubscriptionStore``: tenants' webhook subscriptions as values.

Subscriptions are kept by tenant and id as ``Subscription`` values; every change moves the
generation on as ``webhook_manage.lua`` does (all but marking one failing), and ``audit`` lists
``(tenant, entry type, outcome, webhook id)`` for the entries it would write. The clock is a
number the test sets. ``tests/unit/usecases/test_webhook_subscriptions_contract.py`` holds it and
``store.webhook_subscriptions.RedisSubscriptionStore`` to the same assertions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from idverify.testing.unreachable import refuse_if_down
from idverify.webhooks.subscriptions import NewSubscription, Subscription

__all__ = ["MemorySubscriptionStore"]


class MemorySubscriptionStore:
    """Webhook subscriptions of every tenant, in memory."""

    def __init__(self, now_ms: int = 1_760_000_000_000) -> None:
        self.now = now_ms
        self.audit: list[tuple[str, str, str, str]] = []
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self._tenants: dict[str, dict[str, Subscription]] = {}

    def _of(self, tenant: str) -> dict[str, Subscription]:
        refuse_if_down(self.down)
        return self._tenants.setdefault(tenant, {})

    def _changed(
        self,
        tenant: str,
        webhook_id: str,
        kind: str,
        outcome: str,
        change: Callable[[Subscription], Subscription] = lambda s: s,
    ) -> bool:
        held = self._of(tenant)
        if webhook_id not in held:
            return False
        before = held[webhook_id]
        held[webhook_id] = replace(change(before), generation=str(int(before.generation) + 1))
        self.audit.append((tenant, kind, outcome, webhook_id))
        return True

    async def count(self, tenant: str) -> int:
        """How many the tenant holds."""
        return len(self._of(tenant))

    async def read(self, tenant: str, webhook_id: str) -> Subscription | None:
        """One subscription."""
        return self._of(tenant).get(webhook_id)

    async def read_all(self, tenant: str) -> list[Subscription]:
        """The tenant's subscriptions."""
        return list(self._of(tenant).values())

    async def create(self, tenant: str, new: NewSubscription, request: Mapping[str, str]) -> None:
        """Creates as ``webhook_manage.lua`` does."""
        del request  # ``audit`` keeps no requests
        self._of(tenant)[new.webhook_id] = Subscription(
            webhook_id=new.webhook_id,
            tenant=tenant,
            url=new.url,
            types=new.types,
            sealed_secret=new.sealed_secret,
            enabled=True,
            cursor=new.cursor,
            created_ms=self.now,
            generation="1",
            timeout_ms=new.timeout_ms,
            concurrency=new.concurrency,
        )
        self.audit.append((tenant, "webhook.created", "created", new.webhook_id))

    async def update(
        self, tenant: str, webhook_id: str, action: str, sealed_secret: str, request: Mapping[str, str]
    ) -> bool:
        """Enables, disables or re-keys as ``webhook_manage.lua`` does."""
        del request

        def change(s: Subscription) -> Subscription:
            if action == "enable":  # retried from its cursor, with a new retry period
                return replace(_healthy(s), enabled=True)
            if action == "disable":
                return replace(s, enabled=False)
            return replace(s, sealed_secret=sealed_secret)

        return self._changed(tenant, webhook_id, "webhook.updated", action, change)

    async def delete(self, tenant: str, webhook_id: str, request: Mapping[str, str]) -> bool:
        """Deletes as ``webhook_manage.lua`` does."""
        del request
        found = self._changed(tenant, webhook_id, "webhook.deleted", "deleted")
        if found:
            del self._of(tenant)[webhook_id]
        return found

    async def replay(self, tenant: str, webhook_id: str, cursor: str, request: Mapping[str, str]) -> bool:
        """Moves the cursor as ``webhook_manage.lua`` does."""
        del request
        return self._changed(
            tenant, webhook_id, "webhook.replayed", "replayed", lambda s: replace(_healthy(s), cursor=cursor)
        )

    def keep(self, subscription: Subscription) -> None:
        """Stores the subscription as given, as webhook delivery's writes (cursor, failures) do.

        Those move no generation and write no audit entry.
        """
        self._of(subscription.tenant)[subscription.webhook_id] = subscription

    async def mark_failing(
        self, subscription: Subscription, last_error: str, since_ms: int, request: Mapping[str, str]
    ) -> bool:
        """Marks it failing as ``webhook_manage.lua`` does, unless it changed or is failing."""
        del request
        held = self._of(subscription.tenant)
        current = held.get(subscription.webhook_id)
        if current is None or current.generation != subscription.generation or current.failing_ms:
            return False
        held[subscription.webhook_id] = replace(current, failing_ms=since_ms, last_error=last_error)
        self.audit.append((subscription.tenant, "webhook.failing", "failing", subscription.webhook_id))
        return True


def _healthy(subscription: Subscription) -> Subscription:
    """No longer failing: its failure fields cleared."""
    return replace(subscription, failing_ms=0, first_failure_ms=0, last_error="")

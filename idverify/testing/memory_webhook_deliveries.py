"""An in-memory ``webhooks.delivery_port.DeliveryStore`` over in-memory subscriptions and outbox.

It reads and writes the subscriptions of a ``MemorySubscriptionStore`` (the cursor and the
failure since the last 2xx, as ``webhook_delivery.lua`` writes the subscription's hash) and reads
the records of a ``MemoryOutbox``; leases are tokens with an end on a clock the test moves
(``elapse``). ``tests/unit/usecases/test_webhook_deliveries_contract.py`` holds it and
``store.webhook_deliveries.RedisDeliveryStore`` to the same assertions.
"""

from __future__ import annotations

from dataclasses import replace

from idverify.events.outbox import OutboxRecord
from idverify.testing.memory_outbox import MemoryOutbox
from idverify.testing.memory_webhook_subscriptions import MemorySubscriptionStore
from idverify.testing.unreachable import refuse_if_down
from idverify.webhooks.delivery_port import FailingSince, Lease
from idverify.webhooks.subscriptions import Subscription

__all__ = ["MemoryDeliveryStore"]


class MemoryDeliveryStore:
    """Delivery leases and progress of every subscription, in memory."""

    def __init__(
        self, subscriptions: MemorySubscriptionStore, outbox: MemoryOutbox, now_ms: int = 1_760_000_000_000
    ) -> None:
        self.now = now_ms
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self._subscriptions = subscriptions
        self._outbox = outbox
        self._leases: dict[tuple[str, str], tuple[str, int]] = {}  # (token, ends at ms)

    def elapse(self, ms: int) -> None:
        """Moves the clock on (leases end by it)."""
        self.now += ms

    def _holder(self, lease: Lease) -> str | None:
        refuse_if_down(self.down)
        key = (lease.tenant, lease.webhook_id)
        held = self._leases.get(key)
        if held is None or held[1] <= self.now:
            self._leases.pop(key, None)
            return None
        return held[0]

    async def _ours(self, lease: Lease, generation: str) -> Subscription | None:
        """The subscription when the lease is held by its token under ``generation``, else None (stale)."""
        if self._holder(lease) != lease.token:
            return None
        current = await self._subscriptions.read(lease.tenant, lease.webhook_id)
        if current is None or current.generation != generation:
            return None
        return current

    async def take(self, lease: Lease, lease_ms: int) -> bool:
        """Takes or renews it when deliverable and not held by another token."""
        holder = self._holder(lease)
        current = await self._subscriptions.read(lease.tenant, lease.webhook_id)
        if current is None or not current.enabled or current.failing_ms:
            return False
        if holder is not None and holder != lease.token:
            return False
        self._leases[lease.tenant, lease.webhook_id] = (lease.token, self.now + lease_ms)
        return True

    async def renew(self, lease: Lease, lease_ms: int) -> bool:
        """Extends it while its token holds it."""
        if self._holder(lease) != lease.token:
            return False
        self._leases[lease.tenant, lease.webhook_id] = (lease.token, self.now + lease_ms)
        return True

    async def give(self, lease: Lease) -> None:
        """Ends it if its token holds it."""
        if self._holder(lease) == lease.token:
            del self._leases[lease.tenant, lease.webhook_id]

    async def advance(self, lease: Lease, generation: str, cursor: str) -> bool:
        """Stores the cursor, the failure cleared."""
        current = await self._ours(lease, generation)
        if current is None:
            return False
        self._subscriptions.keep(replace(current, cursor=cursor, first_failure_ms=0, last_error=""))
        return True

    async def failed(self, lease: Lease, generation: str, error: str) -> FailingSince | None:
        """Records the error; the first failure's time is kept until the cursor moves."""
        current = await self._ours(lease, generation)
        if current is None:
            return None
        first = current.first_failure_ms or self.now
        self._subscriptions.keep(replace(current, first_failure_ms=first, last_error=error))
        return FailingSince(first_failure_ms=first, now_ms=self.now)

    async def next_batch(
        self, lease: Lease, generation: str, acknowledged: str, after: str, count: int
    ) -> list[OutboxRecord] | None:
        """Stores ``acknowledged`` (unless empty), then reads the outbox after ``after``."""
        current = await self._ours(lease, generation)
        if current is None:
            return None
        if acknowledged:
            self._subscriptions.keep(replace(current, cursor=acknowledged, first_failure_ms=0, last_error=""))
        return await self._outbox.records(lease.tenant, after, count)

"""Webhook delivery's state in Redis, for ``webhooks.delivery``.

Every operation is one run of ``webhook_delivery.lua`` over the subscription's hash and its
lease key (``next`` also over the tenant's outbox stream and audit log): one round trip each,
its replies typed here (``store.outbox.outbox_records`` for a batch's records).
"""

from __future__ import annotations

from typing import Any

from idverify.events.outbox import OutboxRecord
from idverify.store.keys import TenantKeys
from idverify.store.outbox import LoggedEntries, outbox_records, records_of, with_trimmed_entries
from idverify.store.scripts import Scripts
from idverify.webhooks.delivery_port import FailingSince, Lease

__all__ = ["RedisDeliveryStore"]

_SCRIPT = "webhook_delivery"


class RedisDeliveryStore:
    """``webhooks.delivery_port.DeliveryStore`` over the scripts of one Redis client.

    Every method may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, scripts: Scripts, *, log: LoggedEntries | None = None) -> None:
        self._scripts = scripts
        # A trimmed log's older entries, for a subscription further behind than Redis keeps.
        self._log = log

    async def _run(self, lease: Lease, op: str, *args: str) -> Any:
        keys = TenantKeys(lease.tenant)
        subscription_keys = [keys.webhook(lease.webhook_id), keys.webhook_lease(lease.webhook_id)]
        return await self._scripts.run(_SCRIPT, subscription_keys, [op, lease.token, *args])

    async def take(self, lease: Lease, lease_ms: int) -> bool:
        """``take``."""
        return bool(int(await self._run(lease, "take", str(lease_ms))))

    async def renew(self, lease: Lease, lease_ms: int) -> bool:
        """``renew``."""
        return bool(int(await self._run(lease, "renew", str(lease_ms))))

    async def give(self, lease: Lease) -> None:
        """``give``."""
        await self._run(lease, "give")

    async def advance(self, lease: Lease, generation: str, cursor: str) -> bool:
        """``advance``."""
        return bool(int(await self._run(lease, "advance", generation, cursor)))

    async def failed(self, lease: Lease, generation: str, error: str) -> FailingSince | None:
        """``failed``: its reply ``{first failure ms, now}``, or ``{}`` when stale."""
        reply = await self._run(lease, "failed", generation, error)
        if not reply:
            return None
        return FailingSince(first_failure_ms=int(reply[0]), now_ms=int(reply[1]))

    async def next_batch(
        self, lease: Lease, generation: str, acknowledged: str, after: str, count: int
    ) -> list[OutboxRecord] | None:
        """``next``: its reply ``{records, entries}``, or 0 when stale."""
        keys = TenantKeys(lease.tenant)
        reply = await self._scripts.run(
            _SCRIPT,
            [
                keys.webhook(lease.webhook_id),
                keys.webhook_lease(lease.webhook_id),
                keys.events_outbox(),
                keys.audit_log(),
            ],
            ["next", lease.token, generation, acknowledged, after, str(count)],
        )
        if not isinstance(reply, list) or len(reply) != 2:  # noqa: PLR2004 - records, entries
            return None
        entries = await with_trimmed_entries(self._log, lease.tenant, records_of(reply[0]), reply[1])
        return outbox_records(reply[0], entries)

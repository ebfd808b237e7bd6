"""What webhook delivery needs of the store: a subscription's lease, cursor, failures and batches.

:class:`DeliveryStore` is the port ``webhooks.delivery`` declares; ``store.webhook_deliveries``
implements it over Redis (``webhook_delivery.lua``: the lease key, the subscription's hash, and
``next``'s read of the outbox and the audit log in the same round trip), and
``testing.memory_webhook_deliveries`` in memory. Only the lease's holder, under the generation it
loaded, moves the cursor or records a failure: a change to the subscription (a replay, a disable,
a re-key) or another worker's lease makes those answer stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from idverify.events.outbox import OutboxRecord

__all__ = ["DeliveryStore", "FailingSince", "Lease"]


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's lease of one subscription: its token, unique to the worker's taking of it."""

    tenant: str
    webhook_id: str
    token: str


@dataclass(frozen=True, slots=True)
class FailingSince:
    """How long a subscription's deliveries have failed: since its first failure after the last 2xx."""

    first_failure_ms: int  # the store's clock at the first failure since the cursor last moved
    now_ms: int  # the store's clock now


class DeliveryStore(Protocol):
    """The delivery state of each subscription; every method may raise StoreUnavailable."""

    async def take(self, lease: Lease, lease_ms: int) -> bool:
        """Takes (or renews) the lease for ``lease_ms``; False when another token holds it.

        Also False when the subscription is not deliverable: disabled, failing or gone.
        """
        ...

    async def renew(self, lease: Lease, lease_ms: int) -> bool:
        """Extends the lease to ``lease_ms`` from now; False when it is lost."""
        ...

    async def give(self, lease: Lease) -> None:
        """Ends the lease if it is still held by its token."""
        ...

    async def advance(self, lease: Lease, generation: str, cursor: str) -> bool:
        """Stores the cursor and clears the failure since the last 2xx; False when stale."""
        ...

    async def failed(self, lease: Lease, generation: str, error: str) -> FailingSince | None:
        """Records a failed attempt (its error code); since when it fails, or None when stale."""
        ...

    async def next_batch(
        self, lease: Lease, generation: str, acknowledged: str, after: str, count: int
    ) -> list[OutboxRecord] | None:
        """Stores the cursor ``acknowledged`` (unless empty) and reads the next records, in one step.

        Returns:
            Up to ``count`` outbox records after ``after``, or None when stale (nothing stored).
        """
        ...

"""Account cancellation and the erasure of what is stored about a cancelled account.

Cancelling unbinds at once and schedules the erasure for the start of the n-th working day after
the day of cancellation (configurable, at most 15). The queue is a sorted set per tenant, in the
tenant's slot; each erasure is one script that removes its queue entry in the same step, so any
number of workers (every server process runs one) may race for an entry and exactly one erases
it. A global set names the tenants to visit. What the erasure removes: the account record (its
binding facts and IP label), its consent records, its verifications and their wrong-code
counters, and the identity record once no account is bound to it. The audit log keeps the
events, which hold pseudonyms only and never the identity's key.

The flow reads and writes the store through :class:`ErasureStore`, the port declared here, in
typed values; ``store.erasures.RedisErasureStore`` implements it (the queue's keys, the snapshot
each script is given, a cancellation's and an account's erasure's steps, ``erase_identity.lua``,
and their replies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Protocol
from zoneinfo import ZoneInfo

from opentelemetry import metrics

from idverify.config import ErasureSettings
from idverify.domain.calendar import WorkingCalendar, erasure_due_at
from idverify.domain.errors import StoreUnavailable
from idverify.domain.normalize import normalize_identifier
from idverify.events.accounts import request_naming_account
from idverify.flows.context import RequestInfo
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer

__all__ = [
    "Cancellation",
    "EraseOutcome",
    "ErasureFlow",
    "ErasureItem",
    "ErasureKind",
    "ErasureStore",
    "ErasureWorker",
    "PendingErasure",
    "ScheduledErasure",
    "pending_erasures",
]

log = logging.getLogger("idverify.erasure")

_ATTEMPTS = 5
_PAGE = 100
_meter = metrics.get_meter("idverify")
_erased = _meter.create_counter("idverify.erasures.done", description="erasures performed, by kind")
_overdue_now = 0


def _observe_overdue(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    del options
    return [metrics.Observation(_overdue_now)]


_meter.create_observable_gauge(
    "idverify.erasures.overdue",
    callbacks=[_observe_overdue],
    description="pending erasures past their due time by more than erasure.overdue_after_seconds",
)


class ErasureKind(Enum):
    """What a queued erasure removes: a cancelled account, or an identity no account is bound to."""

    ACCOUNT = "account"
    IDENTITY = "identity"


@dataclass(frozen=True, slots=True)
class ErasureItem:
    """One queued erasure: its kind and its subject (an account pseudonym or an identity ref)."""

    kind: ErasureKind
    subject: str


@dataclass(frozen=True, slots=True)
class ScheduledErasure:
    """A queued erasure and when it is due (epoch ms)."""

    item: ErasureItem
    due_ms: int


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What cancelling one account writes: its pseudonyms, its erasure's due time, the audit request."""

    account_pseudonym: str
    audit_pseudonym: str
    due_ms: int
    request_json: str  # the request's audit fields, the account named in them sealed, as JSON


class EraseOutcome(Enum):
    """How one erasure went."""

    ERASED = "erased"  # done (an identity bound again is kept, and its entry still leaves the queue)
    GONE = "gone"  # not queued (another worker did it) or not due by the store's clock
    CHANGED = "changed"  # the account's verifications changed while it was read: try again


class ErasureStore(Protocol):
    """The erasure queue and the records it removes; every method may raise StoreUnavailable."""

    async def now_ms(self) -> int:
        """The store's clock, in ms of the epoch."""
        ...

    async def note_tenant(self, tenant: str) -> None:
        """Names ``tenant`` among the tenants the workers visit."""
        ...

    async def tenants(self) -> list[str]:
        """Tenants that have had erasures scheduled, sorted."""
        ...

    async def cancel(self, tenant: str, cancellation: Cancellation) -> int | None:
        """Cancels an account, audited; its erasure's due time, or None when it changed while read.

        Unbinds it, ends its pending verifications and queues its erasure, and its identity's once
        no account is bound to it; one cancelled before keeps its first due time.
        """
        ...

    async def due(self, tenant: str, until_ms: int, limit: int) -> list[ErasureItem]:
        """At most ``limit`` queued erasures due by ``until_ms``, soonest first."""
        ...

    async def erase(self, tenant: str, item: ErasureItem, request_json: str) -> EraseOutcome:
        """Removes what ``item`` names and its queue entry in one step, audited, when it is due."""
        ...

    async def scheduled(self, tenant: str) -> list[ScheduledErasure]:
        """Every queued erasure of ``tenant``, soonest first."""
        ...

    async def count_due(self, tenant: str, until_ms: int) -> int:
        """How many queued erasures of ``tenant`` are due by ``until_ms``."""
        ...


@dataclass(frozen=True, slots=True)
class PendingErasure:
    """One scheduled erasure, as ``idverify erasure status`` lists it (pseudonyms only)."""

    tenant: str
    kind: str
    subject: str
    due_ms: int
    overdue: bool


class ErasureFlow:
    """Cancellation, and the erasures it schedules, for every tenant."""

    def __init__(
        self, store: ErasureStore, settings: ErasureSettings, keyring: Keyring, sealer: Sealer
    ) -> None:
        self._store = store
        self._settings = settings
        self._keyring = keyring
        self._sealer = sealer
        self._calendar = WorkingCalendar.from_iso(settings.holidays, settings.makeup_working_days)
        self._zone = ZoneInfo(settings.timezone)

    def due_at(self, cancelled_at: datetime) -> datetime:
        """When an account cancelled at ``cancelled_at`` is erased."""
        return erasure_due_at(cancelled_at, self._settings.working_days, self._calendar, self._zone)

    async def cancel(self, tenant: str, account_id: str, info: RequestInfo) -> int:
        """Unbinds an account now and schedules its erasure; returns the due time (epoch ms).

        Cancelling again returns the first due time and changes nothing.

        Raises:
            InvalidArgument: on a malformed account id.
            StoreUnavailable: Redis is down, or the account kept changing.
        """
        account_id = normalize_identifier(account_id, field="account_id")
        now_ms = await self._store.now_ms()
        due_ms = int(self.due_at(datetime.fromtimestamp(now_ms / 1000, UTC)).timestamp() * 1000)
        cancellation = Cancellation(
            account_pseudonym=self._keyring.pseudonym(tenant, "account", account_id),
            audit_pseudonym=self._keyring.pseudonym(tenant, "audit", account_id),
            due_ms=due_ms,
            request_json=request_naming_account(
                info.audit_fields(), self._keyring, self._sealer, tenant, account_id
            ),
        )
        # First, so that the worker visits the tenant; a crash before the cancel leaves only a
        # harmless name in the set.
        await self._store.note_tenant(tenant)
        for _ in range(_ATTEMPTS):
            first_due = await self._store.cancel(tenant, cancellation)
            if first_due is not None:
                return first_due
        raise StoreUnavailable("the account kept changing while it was cancelled; retry", reason="CONTENDED")

    async def erase_due(self, *, now_ms: int | None = None) -> int:
        """Performs every erasure that is due, in every tenant; returns how many this call did.

        Raises:
            StoreUnavailable: Redis is down.
        """
        done = 0
        for tenant in await self.tenants():
            while True:
                now = await self._store.now_ms() if now_ms is None else now_ms
                items = await self._store.due(tenant, now, _PAGE)
                if not items:
                    break
                erased = [await self.erase(tenant, item) for item in items]
                done += sum(erased)
                if not any(erased):
                    break  # raced away by other workers, or not due yet by the store's clock
        return done

    async def erase(self, tenant: str, item: ErasureItem) -> bool:
        """Performs one due erasure; False when another worker did it first (or it is not due).

        Raises:
            StoreUnavailable: Redis is down, or the account kept changing.
        """
        request_json = json.dumps(RequestInfo.internal().audit_fields())
        for _ in range(_ATTEMPTS):
            outcome = await self._store.erase(tenant, item, request_json)
            if outcome is EraseOutcome.ERASED:
                _erased.add(1, {"idverify.event": f"{item.kind.value}.erased"})
                return True
            if outcome is EraseOutcome.GONE:
                return False
        raise StoreUnavailable("an account kept changing while it was erased; retry", reason="CONTENDED")

    async def tenants(self) -> list[str]:
        """Tenants that have had erasures scheduled.

        Raises:
            StoreUnavailable: Redis is down.
        """
        return await self._store.tenants()

    async def pending(self, *, now_ms: int | None = None) -> list[PendingErasure]:
        """Every scheduled erasure, soonest first, with whether it is overdue.

        Raises:
            StoreUnavailable: Redis is down.
        """
        return await pending_erasures(self._store, self._settings.overdue_after_seconds, now_ms=now_ms)

    async def overdue_count(self) -> int:
        """How many pending erasures are overdue, in every tenant.

        Raises:
            StoreUnavailable: Redis is down.
        """
        limit = await self._store.now_ms() - int(self._settings.overdue_after_seconds * 1000)
        total = 0
        for tenant in await self.tenants():
            total += await self._store.count_due(tenant, limit)
        return total


async def pending_erasures(
    store: ErasureStore, overdue_after_seconds: float, *, now_ms: int | None = None
) -> list[PendingErasure]:
    """Every scheduled erasure of every tenant, soonest first, with whether it is overdue.

    Raises:
        StoreUnavailable: Redis is down.
    """
    now = await store.now_ms() if now_ms is None else now_ms
    late_ms = int(overdue_after_seconds * 1000)
    found = [
        PendingErasure(
            tenant=tenant,
            kind=scheduled.item.kind.value,
            subject=scheduled.item.subject,
            due_ms=scheduled.due_ms,
            overdue=now > scheduled.due_ms + late_ms,
        )
        for tenant in await store.tenants()
        for scheduled in await store.scheduled(tenant)
    ]
    return sorted(found, key=lambda item: (item.due_ms, item.tenant, item.subject))


class ErasureWorker:
    """Runs due erasures now and then, in every server process; the queue makes it safe."""

    def __init__(self, flow: ErasureFlow, poll_seconds: float) -> None:
        self._flow = flow
        self._poll = poll_seconds

    async def run_once(self) -> int:
        """One round: due erasures performed, and the overdue gauge refreshed."""
        global _overdue_now  # noqa: PLW0603 - the gauge's callback reads the latest count
        done = await self._flow.erase_due()
        if done:
            log.info("erased %d due record(s)", done)
        _overdue_now = await self._flow.overdue_count()
        if _overdue_now:
            log.warning("%d erasure(s) overdue", _overdue_now)
        return done

    async def run(self) -> None:
        """Rounds until cancelled; a round that fails is logged and the next one tries again."""
        while True:
            with contextlib.suppress(StoreUnavailable):
                await self.run_once()
            # Jitter keeps the workers of many replicas from arriving together.
            await asyncio.sleep(self._poll * random.uniform(0.8, 1.2))  # noqa: S311 - not a secret

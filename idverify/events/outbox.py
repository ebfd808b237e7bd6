"""Reading events: the outbox records after a cursor, each turned into its event.

An outbox record (``XADD`` by the prelude's ``outbox()``, in the step that changes the state and
writes the audit entry) names the entry, which says what happened, and holds the account's id
sealed. A cursor is the record's stream id (``<ms>-<n>``): reading after it returns the
records Redis ordered behind it, so a client resuming from the last cursor it received misses
none and sees none twice.

The records are read through :class:`OutboxStore`, the port declared here, as
:class:`OutboxRecord` values; ``store.outbox.RedisOutbox`` implements it (the stream, its trimmed
marker, the entries' HMGET, ``events_trim.lua``), and ``store.outbox.outbox_records`` types the
records webhook delivery reads in its own script.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol

from idverify.audit.events import AuditEvent, EntryFormatError, parse_entry
from idverify.domain.errors import InvalidArgument, OutOfRange, StoreUnavailable
from idverify.events.accounts import open_event_account
from idverify.privacy.sealing import Sealer

__all__ = [
    "EVENT_TYPES",
    "Event",
    "Outbox",
    "OutboxBounds",
    "OutboxRecord",
    "OutboxStore",
    "check_cursor",
    "check_types",
    "cursor_key",
    "trim_forever",
]

EVENT_TYPES: Final = (
    "verification.started",
    "challenge.sent",
    "verification.needs_guardian",
    "verification.verified",
    "verification.rejected",
    "verification.expired",
    "account.bound",
    "binding.superseded",
    "account.cancelled",
    "account.erased",
    "consent.granted",
    "consent.withdrawn",
)
"""The audit entry types that are events (the prelude's EVENT_TYPES, in the same order)."""

TRIM_INTERVAL_SECONDS: Final = 60.0
log = logging.getLogger("idverify.events")
_CURSOR = re.compile(r"\d{1,20}-\d{1,20}")
# Entry attributes that are about the request, not the event.
_NOT_EVENT_ATTRIBUTES = frozenset({"event_account", "event_account_for"})


@dataclass(frozen=True, slots=True)
class Event:
    """One event, as a platform receives it (no personal data)."""

    cursor: str
    type: str
    time_ms: int
    audit_index: int
    verification_id: str = ""
    account_id: str = ""
    method: str = ""
    outcome: str = ""
    reason: str = ""
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # The W3C trace id of the call that made the change (its audit entry's), for delivery spans.
    trace_id: str = ""
    # The span context of the change (``<trace id>-<span id>-<flags>``, its outbox record's),
    # which a delivery span links to; empty for records older than it.
    span_context: str = ""
    # What orders deliveries: the account's audit pseudonym (else the verification's id). Events
    # with the same key never overtake each other; never sent to platforms.
    order_key: str = ""


def check_cursor(after: str, field_name: str = "after") -> str:
    """``after`` when it is empty or a cursor this service hands out.

    Raises:
        InvalidArgument: naming ``field_name``.
    """
    if after and not _CURSOR.fullmatch(after):
        raise InvalidArgument("not a cursor this service gave out", reason="BAD_CURSOR", field=field_name)
    return after


def check_types(types: Collection[str], field_name: str = "types") -> frozenset[str]:
    """The set of event types asked for (empty: all).

    Raises:
        InvalidArgument: naming the index of the first type that is not an event type.
    """
    for index, name in enumerate(types):
        if name not in EVENT_TYPES:
            message = f"{name[:64]!r} is not an event type"
            raise InvalidArgument(message, reason="UNKNOWN_EVENT_TYPE", field=f"{field_name}[{index}]")
    return frozenset(types)


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One outbox record and the audit entry it names."""

    cursor: str  # the record's stream id
    entry: bytes | None  # the entry as stored (``audit.events.parse_entry``); None: gone with its log
    sealed_account: str = ""  # the account's id sealed for its events; empty when it names none
    span_context: str = ""  # the change's span context; empty for records older than it


@dataclass(frozen=True, slots=True)
class OutboxBounds:
    """What a tenant's outbox keeps: its oldest record, and the newest trimmed (None: never trimmed)."""

    oldest: str  # empty while the outbox is empty
    trimmed: str | None


class OutboxStore(Protocol):
    """Each tenant's outbox; every method may raise StoreUnavailable."""

    async def last_cursor(self, tenant: str) -> str:
        """The newest record's cursor, or empty while the outbox is empty."""
        ...

    async def bounds(self, tenant: str) -> OutboxBounds:
        """The oldest record kept and the newest trimmed."""
        ...

    async def records(self, tenant: str, after: str, count: int) -> list[OutboxRecord]:
        """Up to ``count`` records after the cursor ``after`` (empty: from the oldest), in order."""
        ...

    async def trim(self, tenant: str, retention_ms: int) -> int:
        """Drops the records older than ``retention_ms``, remembering the newest dropped; how many."""
        ...


class Outbox:
    """The events of each tenant, read from its outbox."""

    def __init__(self, store: OutboxStore, sealer: Sealer) -> None:
        self._store = store
        self._sealer = sealer

    async def last_cursor(self, tenant: str) -> str:
        """The newest record's cursor, or empty while the outbox is empty.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        return await self._store.last_cursor(tenant)

    async def check_kept(self, tenant: str, after: str) -> None:
        """Refuses a cursor whose successors the outbox no longer keeps (trimmed by age).

        Raises:
            OutOfRange: events after ``after`` were trimmed.
            StoreUnavailable: when Redis cannot be reached.
        """
        if not after:
            return
        bounds = await self._store.bounds(tenant)
        # Below the newest record trimmed, some record after the cursor is gone.
        if bounds.trimmed is not None and cursor_key(after) < cursor_key(bounds.trimmed):
            oldest = bounds.oldest or "none"
            raise OutOfRange(
                f"events after {after} are no longer kept (the oldest kept is {oldest}): replay from ''",
                reason="CURSOR_EXPIRED",
            )

    async def read(
        self, tenant: str, after: str, count: int, types: frozenset[str] = frozenset()
    ) -> tuple[list[Event], str]:
        """Up to ``count`` records after ``after``, as events (of ``types`` only, when given).

        Returns:
            The events, and the cursor to read on from: the last record read, skipped ones
            included, so a filter that matches nothing still moves on.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        records = await self._store.records(tenant, after, count)
        if not records:
            return [], after
        return self.events_of(tenant, records, types), records[-1].cursor

    def events_of(
        self, tenant: str, records: Sequence[OutboxRecord], types: frozenset[str] = frozenset()
    ) -> list[Event]:
        """The events of outbox records (of ``types`` only, when given)."""
        wanted = []
        for record in records:
            if record.entry is None:
                continue  # gone with its log: a tenant removal erases the outbox next
            try:
                parsed = parse_entry(record.entry)
            except EntryFormatError:
                continue
            if not types or parsed.type in types:
                wanted.append((record, parsed))
        return [self._event(tenant, record, entry) for record, entry in wanted]

    def _event(self, tenant: str, record: OutboxRecord, entry: AuditEvent) -> Event:
        account_id = ""
        if entry.account and record.sealed_account:
            account_id = open_event_account(self._sealer, tenant, entry.account, record.sealed_account)
        return Event(
            cursor=record.cursor,
            type=entry.type,
            time_ms=entry.time_ms,
            audit_index=entry.index,
            verification_id=entry.verification_id,
            account_id=account_id,
            method=entry.method,
            outcome=entry.outcome,
            reason=entry.reason,
            attributes=MappingProxyType(
                {k: v for k, v in entry.attributes.items() if k not in _NOT_EVENT_ATTRIBUTES}
            ),
            trace_id=entry.trace_id,
            span_context=record.span_context,
            order_key=entry.account or entry.verification_id,
        )


def cursor_key(cursor: str) -> tuple[int, int]:
    """A cursor as the pair Redis orders stream ids by (the empty cursor before every one)."""
    if not cursor:
        return (-1, -1)
    milliseconds, _, sequence = cursor.partition("-")
    return int(milliseconds), int(sequence or 0)


async def trim_forever(
    store: OutboxStore,
    tenants: Callable[[], Awaitable[Collection[str]]],
    retention_days: float,
    *,
    interval_seconds: float = TRIM_INTERVAL_SECONDS,
) -> None:
    """Trims every tenant's outbox by age, now and then (every replica may: trimming is idempotent)."""
    retention_ms = int(retention_days * 86_400_000)
    while True:
        try:
            for tenant in sorted(await tenants()):
                await store.trim(tenant, retention_ms)
        except StoreUnavailable:
            pass
        except Exception as error:  # noqa: BLE001 - the loop must outlive any one bad round
            log.error("events outbox trim failed: %s", type(error).__name__)  # noqa: TRY400
        await asyncio.sleep(interval_seconds)

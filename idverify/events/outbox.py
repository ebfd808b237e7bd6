"""Reading events: the outbox records after a cursor, each turned into its event.

An outbox record (``XADD`` by the prelude's ``outbox()``, in the step that changes the state and
writes the audit entry) names the entry, which says what happened, and holds the account's id
sealed. A cursor is the record's stream id (``<ms>-<n>``): reading after it returns the
records Redis ordered behind it, so a client resuming from the last cursor it received misses
none and sees none twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from idverify.audit.events import AuditEvent, EntryFormatError, parse_entry
from idverify.domain.errors import InvalidArgument, OutOfRange, StoreUnavailable
from idverify.events.accounts import open_event_account
from idverify.privacy.sealing import Sealer
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts

__all__ = [
    "EVENT_TYPES",
    "Event",
    "Outbox",
    "check_cursor",
    "check_types",
    "cursor_key",
    "records_of",
    "trim",
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


class Outbox:
    """The events of each tenant, read from its outbox."""

    def __init__(self, redis: RedisClient, sealer: Sealer, scripts: Scripts | None = None) -> None:
        self._redis = redis
        self._sealer = sealer
        # The tail polls last_cursor 50 times a second while a subscription or stream waits:
        # on the scripts' shared connection when given (Scripts.command), not the pool's.
        self._scripts = scripts

    async def last_cursor(self, tenant: str) -> str:
        """The newest record's cursor, or empty while the outbox is empty.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        key = TenantKeys(tenant).events_outbox()
        if self._scripts is not None:
            newest = records_of(await self._scripts.command("XREVRANGE", key, "+", "-", "COUNT", 1))
        else:
            async with translate_errors():
                newest = records_of(await self._redis.xrevrange(key, count=1))
        return newest[0][0] if newest else ""

    async def check_kept(self, tenant: str, after: str) -> None:
        """Refuses a cursor whose successors the outbox no longer keeps (trimmed by age).

        Raises:
            OutOfRange: events after ``after`` were trimmed.
            StoreUnavailable: when Redis cannot be reached.
        """
        if not after:
            return
        async with translate_errors():
            first = records_of(await self._redis.xrange(TenantKeys(tenant).events_outbox(), count=1))
            trimmed = await self._redis.get(TenantKeys(tenant).events_trimmed())
        # Below the newest record trimmed, some record after the cursor is gone.
        if isinstance(trimmed, bytes) and cursor_key(after) < cursor_key(as_text(trimmed)):
            oldest = first[0][0] if first else "none"
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
        keys = TenantKeys(tenant)
        lowest = f"({after}" if after else "-"
        async with translate_errors():
            raw = await self._redis.xrange(keys.events_outbox(), min=lowest, max="+", count=count)
        records = records_of(raw)
        if not records:
            return [], after
        numbers = [as_text(fields[b"s"]) for _, fields in records]
        async with translate_errors():
            entries = await self._redis.hmget(keys.audit_log(), numbers)
        return self.events_of(tenant, records, entries, types), records[-1][0]

    def events_of(
        self,
        tenant: str,
        records: list[tuple[str, dict[bytes, bytes]]],
        entries: Sequence[object],
        types: frozenset[str] = frozenset(),
    ) -> list[Event]:
        """The events of outbox records and their audit entries (of ``types`` only, when given)."""
        wanted = []
        for (record_id, fields), entry in zip(records, entries, strict=True):
            if not isinstance(entry, bytes):
                continue  # gone with its log: a tenant removal erases the outbox next
            try:
                parsed = parse_entry(entry)
            except EntryFormatError:
                continue
            if not types or parsed.type in types:
                wanted.append((record_id, fields, parsed))
        return [self._event(tenant, cursor, fields, entry) for cursor, fields, entry in wanted]

    def _event(
        self,
        tenant: str,
        cursor: str,
        fields: Mapping[bytes, bytes],
        entry: AuditEvent,
    ) -> Event:
        account_id = ""
        if entry.account and b"a" in fields:
            account_id = open_event_account(self._sealer, tenant, entry.account, as_text(fields[b"a"]))
        return Event(
            cursor=cursor,
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
            span_context=as_text(fields.get(b"c", b"")),
            order_key=entry.account or entry.verification_id,
        )


def records_of(raw: object) -> list[tuple[str, dict[bytes, bytes]]]:
    """XRANGE's reply, typed: (record id, fields) in order (a script's reply: fields flat)."""
    if not isinstance(raw, list):
        return []
    return [(as_text(record_id), _fields(fields)) for record_id, fields in raw]


def _fields(fields: object) -> dict[bytes, bytes]:
    if isinstance(fields, dict):
        return fields
    assert isinstance(fields, list)  # noqa: S101 - Redis's reply shape
    return dict(zip(fields[::2], fields[1::2], strict=True))


def cursor_key(cursor: str) -> tuple[int, int]:
    """A cursor as the pair Redis orders stream ids by (the empty cursor before every one)."""
    if not cursor:
        return (-1, -1)
    milliseconds, _, sequence = cursor.partition("-")
    return int(milliseconds), int(sequence or 0)


async def trim(scripts: Scripts, tenant: str, retention_ms: int) -> int:
    """Drops the tenant's outbox records older than ``retention_ms``; how many.

    Raises:
        StoreUnavailable: when Redis cannot be reached.
    """
    keys = TenantKeys(tenant)
    dropped = await scripts.run("events_trim", [keys.events_outbox(), keys.events_trimmed()], [retention_ms])
    return int(dropped)


async def trim_forever(
    scripts: Scripts,
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
                await trim(scripts, tenant, retention_ms)
        except StoreUnavailable:
            pass
        except Exception as error:  # noqa: BLE001 - the loop must outlive any one bad round
            log.error("events outbox trim failed: %s", type(error).__name__)  # noqa: TRY400
        await asyncio.sleep(interval_seconds)

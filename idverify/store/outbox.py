"""Each tenant's events outbox in Redis, for ``events.outbox``.

``events.outbox`` decides (what a record means as an event, which cursors are still kept); this
adapter reads the tenant's outbox stream (``events:outbox``: records of ``s``, the audit entry's
number, ``a``, the account's id sealed, and ``c``, the change's span context), the entries they
name from the audit log, and the marker of the newest record trimmed, runs ``events_trim.lua``
and types the stream's replies once (:func:`outbox_records`, also for the records webhook
delivery reads in ``webhook_delivery.lua``). A record whose entry a trimmed log keeps in its
bundles alone (a reader further behind than the entries Redis keeps) gets it from the log as
configured (``with_trimmed_entries``), so no event loses its body to a trim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from idverify.events.outbox import OutboxBounds, OutboxRecord
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["LoggedEntries", "RedisOutbox", "outbox_records", "with_trimmed_entries"]


class LoggedEntries(Protocol):
    """The audit log's entries as configured (``TiledAuditLog`` reads a trimmed log's bundles)."""

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The entries' bytes; None where there is none."""
        ...


class RedisOutbox:
    """``events.outbox.OutboxStore`` over one Redis client (and its scripts, for the trim).

    Every method may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(
        self, redis: RedisClient, scripts: Scripts | None = None, *, log: LoggedEntries | None = None
    ) -> None:
        self._redis = redis
        self._log = log
        # The tail polls last_cursor 50 times a second while a subscription or stream waits:
        # on the scripts' shared connection when given (Scripts.command), not the pool's.
        self._shared = scripts
        self._scripts = scripts or Scripts(redis)

    async def last_cursor(self, tenant: str) -> str:
        """XREVRANGE of the newest record."""
        key = TenantKeys(tenant).events_outbox()
        if self._shared is not None:
            newest = records_of(await self._shared.command("XREVRANGE", key, "+", "-", "COUNT", 1))
        else:
            async with translate_errors():
                newest = records_of(await self._redis.xrevrange(key, count=1))
        return newest[0][0] if newest else ""

    async def bounds(self, tenant: str) -> OutboxBounds:
        """XRANGE of the oldest record, and the trimmed marker."""
        keys = TenantKeys(tenant)
        async with translate_errors():
            first = records_of(await self._redis.xrange(keys.events_outbox(), count=1))
            trimmed = await self._redis.get(keys.events_trimmed())
        return OutboxBounds(
            oldest=first[0][0] if first else "",
            trimmed=as_text(trimmed) if isinstance(trimmed, bytes) else None,
        )

    async def records(self, tenant: str, after: str, count: int) -> list[OutboxRecord]:
        """XRANGE after the cursor, then (when there are records) one HMGET of their entries."""
        keys = TenantKeys(tenant)
        lowest = f"({after}" if after else "-"
        async with translate_errors():
            raw = await self._redis.xrange(keys.events_outbox(), min=lowest, max="+", count=count)
        records = records_of(raw)
        if not records:
            return []
        numbers = [as_text(fields[b"s"]) for _, fields in records]
        async with translate_errors():
            entries = await self._redis.hmget(keys.audit_log(), numbers)
        return _typed(records, await with_trimmed_entries(self._log, tenant, records, entries))

    async def trim(self, tenant: str, retention_ms: int) -> int:
        """Runs ``events_trim.lua``."""
        keys = TenantKeys(tenant)
        dropped = await self._scripts.run(
            "events_trim", [keys.events_outbox(), keys.events_trimmed()], [retention_ms]
        )
        return int(dropped)


def outbox_records(records: Any, entries: Any) -> list[OutboxRecord]:
    """A script's reply of outbox records (fields flat) and the entries they name, typed."""
    found = records_of(records)
    return _typed(found, entries) if found else []


async def with_trimmed_entries(
    log: LoggedEntries | None, tenant: str, records: Sequence[tuple[str, dict[bytes, bytes]]], entries: Any
) -> list[Any]:
    """The entries Redis gave for ``records``, those it no longer holds read from ``log``.

    Raises:
        EntriesUnreadable: a trimmed entry cannot be read whole from its bundle.
        StoreUnavailable: when Redis cannot be reached.
    """
    found = list(entries)
    missing = [at for at, entry in enumerate(found) if not isinstance(entry, bytes)]
    if log is not None and missing:
        numbers = [int(as_text(records[at][1][b"s"])) for at in missing]
        for at, entry in zip(missing, await log.entries(tenant, numbers), strict=True):
            found[at] = entry
    return found


def _typed(records: list[tuple[str, dict[bytes, bytes]]], entries: Any) -> list[OutboxRecord]:
    return [
        OutboxRecord(
            cursor=cursor,
            entry=entry if isinstance(entry, bytes) else None,
            sealed_account=as_text(fields.get(b"a", b"")),
            span_context=as_text(fields.get(b"c", b"")),
        )
        for (cursor, fields), entry in zip(records, entries, strict=True)
    ]


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

"""Each tenant's events outbox in Redis, for ``events.outbox``.

``events.outbox`` decides (what a record means as an event, which cursors are still kept); this
adapter reads the tenant's outbox stream (``events:outbox``: records of ``s``, the audit entry's
number, ``a``, the account's id sealed, and ``c``, the change's span context), the entries they
name from the audit log, and the marker of the newest record trimmed, runs ``events_trim.lua``
and types the stream's replies once (:func:`outbox_records`, also for the records webhook
delivery reads in ``webhook_delivery.lua``).
"""

from __future__ import annotations

from typing import Any

from idverify.events.outbox import OutboxBounds, OutboxRecord
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["RedisOutbox", "outbox_records"]


class RedisOutbox:
    """``events.outbox.OutboxStore`` over one Redis client (and its scripts, for the trim).

    Every method may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, redis: RedisClient, scripts: Scripts | None = None) -> None:
        self._redis = redis
        # The tail polls last_cursor 50 times a second while a subscription or stream waits:
        # on the scripts' shared connection when given (Scripts.command), not the pool's.
        self._shared = scripts
        self._scripts = scripts or Scripts(redis)

    async def last_cursor(self, tenant: str) -> str:
        """XREVRANGE of the newest record."""
        key = TenantKeys(tenant).events_outbox()
        if self._shared is not None:
            newest = _records_of(await self._shared.command("XREVRANGE", key, "+", "-", "COUNT", 1))
        else:
            async with translate_errors():
                newest = _records_of(await self._redis.xrevrange(key, count=1))
        return newest[0][0] if newest else ""

    async def bounds(self, tenant: str) -> OutboxBounds:
        """XRANGE of the oldest record, and the trimmed marker."""
        keys = TenantKeys(tenant)
        async with translate_errors():
            first = _records_of(await self._redis.xrange(keys.events_outbox(), count=1))
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
        records = _records_of(raw)
        if not records:
            return []
        numbers = [as_text(fields[b"s"]) for _, fields in records]
        async with translate_errors():
            entries = await self._redis.hmget(keys.audit_log(), numbers)
        return _typed(records, entries)

    async def trim(self, tenant: str, retention_ms: int) -> int:
        """Runs ``events_trim.lua``."""
        keys = TenantKeys(tenant)
        dropped = await self._scripts.run(
            "events_trim", [keys.events_outbox(), keys.events_trimmed()], [retention_ms]
        )
        return int(dropped)


def outbox_records(records: Any, entries: Any) -> list[OutboxRecord]:
    """A script's reply of outbox records (fields flat) and the entries they name, typed."""
    found = _records_of(records)
    return _typed(found, entries) if found else []


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


def _records_of(raw: object) -> list[tuple[str, dict[bytes, bytes]]]:
    """XRANGE's reply, typed: (record id, fields) in order (a script's reply: fields flat)."""
    if not isinstance(raw, list):
        return []
    return [(as_text(record_id), _fields(fields)) for record_id, fields in raw]


def _fields(fields: object) -> dict[bytes, bytes]:
    if isinstance(fields, dict):
        return fields
    assert isinstance(fields, list)  # noqa: S101 - Redis's reply shape
    return dict(zip(fields[::2], fields[1::2], strict=True))

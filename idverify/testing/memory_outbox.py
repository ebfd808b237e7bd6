"""An in-memory ``events.outbox.OutboxStore``: each tenant's outbox records as a list.

Records are appended by the test (``append``, as the scripts' ``outbox()`` would write them),
each with a cursor ``<ms>-<n>`` from a clock the test moves (``advance``); a trim drops those of
a millisecond older than the retention and remembers the newest dropped, as ``events_trim.lua``
does. ``tests/unit/usecases/test_outbox_contract.py`` holds it and ``store.outbox.RedisOutbox``
to the same assertions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from idverify.events.outbox import OutboxBounds, OutboxRecord, cursor_key
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryOutbox"]


@dataclass(slots=True)
class _Tenant:
    records: list[OutboxRecord] = field(default_factory=list)
    trimmed: str | None = None


class MemoryOutbox:
    """The outboxes of every tenant, in memory."""

    def __init__(self, now_ms: int = 1_760_000_000_000) -> None:
        self.now = now_ms
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self._tenants: dict[str, _Tenant] = {}
        self._last = (0, -1)

    def _of(self, tenant: str) -> _Tenant:
        refuse_if_down(self.down)
        return self._tenants.setdefault(tenant, _Tenant())

    def advance(self, ms: int) -> None:
        """Moves the clock on."""
        self.now += ms

    def append(
        self, tenant: str, entry: bytes | None, sealed_account: str = "", span_context: str = ""
    ) -> str:
        """Appends a record naming ``entry`` (None: one gone with its log); its cursor."""
        ms = max(self.now, self._last[0])
        sequence = self._last[1] + 1 if ms == self._last[0] else 0
        self._last = (ms, sequence)
        cursor = f"{ms}-{sequence}"
        self._of(tenant).records.append(OutboxRecord(cursor, entry, sealed_account, span_context))
        return cursor

    async def last_cursor(self, tenant: str) -> str:
        """The newest record's cursor."""
        records = self._of(tenant).records
        return records[-1].cursor if records else ""

    async def bounds(self, tenant: str) -> OutboxBounds:
        """The oldest record and the trimmed marker."""
        held = self._of(tenant)
        return OutboxBounds(held.records[0].cursor if held.records else "", held.trimmed)

    async def records(self, tenant: str, after: str, count: int) -> list[OutboxRecord]:
        """The records after ``after``."""
        return [r for r in self._of(tenant).records if cursor_key(r.cursor) > cursor_key(after)][:count]

    async def trim(self, tenant: str, retention_ms: int) -> int:
        """Drops as ``events_trim.lua`` does."""
        held = self._of(tenant)
        cut = (max(self.now - retention_ms, 0), 0)
        dropped = [r for r in held.records if cursor_key(r.cursor) < cut]
        if not dropped:
            return 0
        held.records = held.records[len(dropped) :]
        held.trimmed = dropped[-1].cursor
        return len(dropped)

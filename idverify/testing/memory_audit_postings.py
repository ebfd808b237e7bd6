"""An in-memory ``console.charts.AuditPostings`` over a ``MemoryAuditLog``'s entries.

The postings are what the prelude's ``audit()`` appends to (the entry numbers of each ``type``,
``outcome``, ``method`` and ``acct`` value), found afresh from the entries on every read.
``tests/unit/usecases/test_audit_postings_contract.py`` holds it and
``store.audit_postings.RedisAuditPostings`` to the same assertions.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from idverify.audit.events import AuditEvent, parse_entry
from idverify.console.charts import Posting, PostingSeek
from idverify.testing.memory_audit_log import MemoryAuditLog

__all__ = ["MemoryAuditPostings"]


def _value(event: AuditEvent, field: str) -> str:
    return {"type": event.type, "outcome": event.outcome, "method": event.method, "acct": event.account}.get(
        field, ""
    )


class MemoryAuditPostings:
    """The postings of every tenant's log in a MemoryAuditLog."""

    def __init__(self, log: MemoryAuditLog) -> None:
        self._log = log

    async def _events(self, tenant: str) -> list[AuditEvent]:
        size = await self._log.size(tenant)
        return [
            parse_entry(entry) for entry in await self._log.entries(tenant, range(size)) if entry is not None
        ]

    async def _posting(self, tenant: str, posting: Posting) -> list[int]:
        if not posting.value:
            return []
        return [e.index for e in await self._events(tenant) if _value(e, posting.field) == posting.value]

    async def seek_times(self, tenant: str, times_ms: Sequence[int]) -> list[int]:
        """The first entry at or after each time (times never decrease along the log)."""
        times = [event.time_ms for event in await self._events(tenant)]
        return [bisect.bisect_left(times, time_ms) for time_ms in times_ms]

    async def seek_postings(self, tenant: str, postings: Sequence[Posting], index: int) -> list[PostingSeek]:
        """Where ``index`` falls in each posting."""
        found = []
        for posting in postings:
            numbers = await self._posting(tenant, posting)
            found.append(PostingSeek(bisect.bisect_left(numbers, index), len(numbers)))
        return found

    async def read_posting(self, tenant: str, posting: Posting, position: int, count: int) -> list[int]:
        """The posting's numbers from ``position`` on."""
        return (await self._posting(tenant, posting))[position : position + count]

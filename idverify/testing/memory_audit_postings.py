"""An in-memory ``console.charts.AuditPostings`` over a ``MemoryAuditLog``'s entries.

The postings are what the prelude's ``audit()`` appends to (the entry numbers of each ``type``,
``outcome``, ``method`` and ``acct`` value); ``MemoryAuditLog`` finds them afresh from the entries
on every read, as it does for ``audit.query``'s ``IndexedLog``.
``tests/unit/usecases/test_audit_postings_contract.py`` holds it and
``store.audit_postings.RedisAuditPostings`` to the same assertions.
"""

from __future__ import annotations

from collections.abc import Sequence

from idverify.audit.query import Posting, PostingSeek
from idverify.testing.memory_audit_log import MemoryAuditLog

__all__ = ["MemoryAuditPostings"]


class MemoryAuditPostings:
    """The postings of every tenant's log in a MemoryAuditLog."""

    def __init__(self, log: MemoryAuditLog) -> None:
        self._log = log

    async def seek_times(self, tenant: str, times_ms: Sequence[int]) -> list[int]:
        """The first entry at or after each time (times never decrease along the log)."""
        return await self._log.seek_times(tenant, times_ms)

    async def seek_postings(self, tenant: str, postings: Sequence[Posting], index: int) -> list[PostingSeek]:
        """Where ``index`` falls in each posting."""
        return await self._log.seek_postings(tenant, postings, index)

    async def read_posting(self, tenant: str, posting: Posting, position: int, count: int) -> list[int]:
        """The posting's numbers from ``position`` on."""
        return await self._log.read_posting(tenant, posting, position, count)

"""The audit log's entry times and index postings in Redis, for ``console.charts``.

``audit_seek.lua`` finds where times and entry numbers fall (``audit.log_store.AuditStore``'s
``seek_times`` and ``seek_postings``), and a posting's blocks are read with GETRANGE
(``read_posting``); a posting is named by its key here (``TenantKeys.audit_index``).
"""

from __future__ import annotations

from collections.abc import Sequence

from idverify.audit.log_store import AuditStore
from idverify.console.charts import Posting, PostingSeek
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["RedisAuditPostings"]


class RedisAuditPostings:
    """``console.charts.AuditPostings`` over one AuditStore.

    Every method may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    @classmethod
    def over(cls, redis: RedisClient, scripts: Scripts) -> RedisAuditPostings:
        """The postings of the store behind ``redis``."""
        return cls(AuditStore(redis, scripts))

    async def seek_times(self, tenant: str, times_ms: Sequence[int]) -> list[int]:
        """``audit_seek.lua`` ``time``."""
        return await self._store.seek_times(tenant, times_ms)

    async def seek_postings(self, tenant: str, postings: Sequence[Posting], index: int) -> list[PostingSeek]:
        """``audit_seek.lua`` ``posting``."""
        keys = TenantKeys(tenant)
        found = await self._store.seek_postings(
            tenant, [keys.audit_index(p.field, p.value) for p in postings], index
        )
        return [PostingSeek(position, length) for position, length in found]

    async def read_posting(self, tenant: str, posting: Posting, position: int, count: int) -> list[int]:
        """GETRANGE of the posting's bytes."""
        key = TenantKeys(tenant).audit_index(posting.field, posting.value)
        return await self._store.read_posting(key, position, count)

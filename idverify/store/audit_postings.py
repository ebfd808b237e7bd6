"""The audit log's entry times and index postings in Redis, for ``console.charts``.

``store.audit_store.AuditStore`` answers them (``audit_seek.lua`` finds where times and entry
numbers fall, a posting's blocks are read with GETRANGE, a posting's key is
``TenantKeys.audit_index``); the charts' port is the same reads the queries of ``audit.query`` make.
"""

from __future__ import annotations

from collections.abc import Sequence

from idverify.audit.query import Posting, PostingSeek
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
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
        return await self._store.seek_postings(tenant, postings, index)

    async def read_posting(self, tenant: str, posting: Posting, position: int, count: int) -> list[int]:
        """GETRANGE of the posting's bytes."""
        return await self._store.read_posting(tenant, posting, position, count)

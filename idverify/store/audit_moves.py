"""The log of record a move into tiles reads and switches (``audit.tiles_move``), over Redis."""

from __future__ import annotations

from idverify.audit.tiles_move import EntryCounts
from idverify.store.audit_store import AuditStore
from idverify.store.connection import translate_errors
from idverify.store.keys import TenantKeys

__all__ = ["RedisMovedLog"]


class RedisMovedLog(AuditStore):
    """``AuditStore``, and a log's counts read in one transaction (servers append meanwhile)."""

    async def entry_counts(self, tenant: str) -> EntryCounts:
        """The log's size, its trim point and the entries its hash holds, at one moment.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        keys = TenantKeys(tenant)
        async with translate_errors(), self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.audit_head(), "size")
            pipe.hget(keys.audit_head(), "trimmed")
            pipe.hlen(keys.audit_log())
            size, trimmed, held = await pipe.execute()
        return EntryCounts(int(size or 0), int(trimmed or 0), int(held))

"""The entry that records an acknowledged rollback, appended on Redis by ``audit_rollback.lua``.

``audit.acknowledge`` decides which rollbacks are acknowledged; the script appends the entry to
the tenant's log unless the ``audit.rollback_acknowledged`` posting already holds one for the
same published root (a run that stopped part-way, run again).
"""

from __future__ import annotations

import json

from idverify.audit.acknowledge import AcknowledgementEntry
from idverify.audit.rollback import Rollback
from idverify.store.connection import RedisClient, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripts import script_source

__all__ = ["RedisRollbackAcknowledgements"]


class RedisRollbackAcknowledgements:
    """``audit.acknowledge.AcknowledgementLog`` on Redis."""

    def __init__(self, redis: RedisClient) -> None:
        self._script = redis.register_script(script_source("audit_rollback"))

    async def append_acknowledgement(self, rollback: Rollback, principal: str) -> AcknowledgementEntry:
        """One ``audit_rollback.lua`` call.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        head = rollback.head
        request = json.dumps({"principal": principal, "request_id": "", "trace_id": ""})
        async with translate_errors():
            written, entry = await self._script(
                keys=[TenantKeys(rollback.tenant).audit_log()],
                args=[
                    request,
                    head.size,
                    head.root_hash.hex(),
                    head.timestamp_ms,
                    rollback.lost_range,
                    rollback.found_size,
                ],
            )
        return AcknowledgementEntry(int(entry), bool(written))

"""The leases of clients' open event streams in Redis, for ``events.streams``.

``events.streams`` decides (how many streams a client may hold, how long a lease lasts); this
adapter keeps a client's leases in a sorted set in its tenant's slot (``event_streams(client)``:
stream token -> lease end, ms) and runs ``event_stream_lease.lua``, which drops ended leases,
counts the live ones and takes or gives back one, atomically over every worker and replica.
"""

from __future__ import annotations

from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["RedisStreamLeases"]


class RedisStreamLeases:
    """``events.streams.StreamLeases`` over the scripts of one Redis client.

    Every method may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, scripts: Scripts) -> None:
        self._scripts = scripts

    async def take(self, tenant: str, client_id: str, token: str, *, limit: int, lease_ms: int) -> bool:
        """``event_stream_lease.lua``'s take: 1 when taken, 0 when the client holds ``limit``."""
        key = TenantKeys(tenant).event_streams(client_id)
        taken = await self._scripts.run("event_stream_lease", [key], ["take", token, limit, lease_ms])
        return bool(int(taken))

    async def give(self, tenant: str, client_id: str, token: str) -> None:
        """``event_stream_lease.lua``'s give."""
        key = TenantKeys(tenant).event_streams(client_id)
        await self._scripts.run("event_stream_lease", [key], ["give", token, 0, 0])

"""An in-memory ``events.streams.StreamLeases``: each client's open streams as leases with an end.

A lease is kept by tenant, client and token with the time it ends; ended ones are dropped when a
lease is taken, as ``event_stream_lease.lua`` drops them. The clock is a number the test moves
(``advance``). ``tests/unit/usecases/test_stream_leases_contract.py`` holds it and
``store.stream_leases.RedisStreamLeases`` to the same assertions.
"""

from __future__ import annotations

from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryStreamLeases"]


class MemoryStreamLeases:
    """Leases of every tenant's clients, in memory."""

    def __init__(self, now_ms: int = 1_760_000_000_000) -> None:
        self.now = now_ms
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self._leases: dict[tuple[str, str], dict[str, int]] = {}

    def _of(self, tenant: str, client_id: str) -> dict[str, int]:
        refuse_if_down(self.down)
        return self._leases.setdefault((tenant, client_id), {})

    def advance(self, ms: int) -> None:
        """Moves the clock on."""
        self.now += ms

    def held(self, tenant: str, client_id: str) -> int:
        """How many leases the client holds that have not ended."""
        return sum(1 for end in self._of(tenant, client_id).values() if end > self.now)

    async def take(self, tenant: str, client_id: str, token: str, *, limit: int, lease_ms: int) -> bool:
        """Takes as ``event_stream_lease.lua`` does."""
        leases = self._of(tenant, client_id)
        for ended in [t for t, end in leases.items() if end <= self.now]:
            del leases[ended]
        if len(leases) >= limit:
            return False
        leases[token] = self.now + lease_ms
        return True

    async def give(self, tenant: str, client_id: str, token: str) -> None:
        """Gives back as ``event_stream_lease.lua`` does."""
        self._of(tenant, client_id).pop(token, None)

"""An in-memory ``console.sessions.SessionStore``: each tenant's sessions as values.

A session ends with its lifetime on the wall clock (as its Redis key's TTL does); ``audit``
lists ``(tenant, entry type, client id, role)`` for the entries ``console_session.lua`` would
write. ``tests/unit/usecases/test_console_sessions_contract.py`` holds it and
``store.console_sessions.RedisConsoleSessions`` to the same assertions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from idverify.console.sessions import SessionRecord
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryConsoleSessions"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MemoryConsoleSessions:
    """Console sessions of every tenant, in memory."""

    def __init__(self) -> None:
        self.audit: list[tuple[str, str, str, str]] = []
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self._sessions: dict[tuple[str, str], tuple[SessionRecord, int]] = {}  # (record, gone at ms)

    def digests(self, tenant: str) -> list[str]:
        """The digests the tenant's live sessions are kept under."""
        now = _now_ms()
        return [digest for (t, digest), (_, gone) in self._sessions.items() if t == tenant and gone > now]

    def _live(self, tenant: str, digest: str) -> SessionRecord | None:
        refuse_if_down(self.down)
        held = self._sessions.get((tenant, digest))
        if held is None or held[1] <= _now_ms():
            self._sessions.pop((tenant, digest), None)
            return None
        return held[0]

    async def open(
        self, tenant: str, digest: str, record: SessionRecord, lifetime_ms: int, request: Mapping[str, str]
    ) -> None:
        """Keeps it for its lifetime, audited."""
        del request  # ``audit`` keeps no requests
        self._live(tenant, digest)
        self._sessions[tenant, digest] = (record, _now_ms() + lifetime_ms)
        self.audit.append((tenant, "console.signed_in", record.client_id, record.role))

    async def read(self, tenant: str, digest: str) -> SessionRecord | None:
        """The live session."""
        return self._live(tenant, digest)

    async def close(self, tenant: str, digest: str, request: Mapping[str, str]) -> None:
        """Drops it, audited, if it is there."""
        del request
        record = self._live(tenant, digest)
        if record is not None:
            del self._sessions[tenant, digest]
            self.audit.append((tenant, "console.signed_out", record.client_id, record.role))

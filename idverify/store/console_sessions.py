"""The console's sessions in Redis, for ``console.sessions``.

A session is a hash under its tenant's tag (``TenantKeys.console_session``: the id's digest) of
``role``, ``client_id`` and ``expires_ms``, with a TTL of its lifetime; ``console_session.lua``
writes or deletes it with its audit entry (``console.signed_in``, ``console.signed_out``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from idverify.console.sessions import SessionRecord
from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripted_store import ScriptedStore

__all__ = ["RedisConsoleSessions"]


class RedisConsoleSessions(ScriptedStore):
    """``console.sessions.SessionStore`` over Redis."""

    async def open(
        self, tenant: str, digest: str, record: SessionRecord, lifetime_ms: int, request: Mapping[str, str]
    ) -> None:
        """``console_session.lua`` ``open``: the hash, its TTL and the sign-in's entry."""
        keys = TenantKeys(tenant)
        await self._scripts.run(
            "console_session",
            [keys.console_session(digest), keys.audit_log()],
            [
                "open",
                json.dumps(dict(request)),
                record.role,
                record.client_id,
                record.expires_ms,
                lifetime_ms,
            ],
        )

    async def read(self, tenant: str, digest: str) -> SessionRecord | None:
        """HGETALL of the session's hash."""
        async with translate_errors():
            raw = await self._redis.hgetall(TenantKeys(tenant).console_session(digest))
        if not raw:
            return None
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        return SessionRecord(fields["role"], fields["client_id"], int(fields.get("expires_ms", "0")))

    async def close(self, tenant: str, digest: str, request: Mapping[str, str]) -> None:
        """``console_session.lua`` ``close``: the hash deleted and the sign-out's entry, if it was there."""
        keys = TenantKeys(tenant)
        await self._scripts.run(
            "console_session",
            [keys.console_session(digest), keys.audit_log()],
            ["close", json.dumps(dict(request))],
        )

"""Console sign-ins: sessions held server-side in the store, and the limit on failed sign-ins.

The cookie carries the tenant and a random session id, never the token: a stolen cookie dies
with its session (expiry, sign-out, or the client's revocation, checked on every request), and a
Redis dump holds only the SHA-256 of each id, which opens nothing. Every sign-in and sign-out is
an entry of the tenant's audit log.

Sessions are kept through :class:`SessionStore`, the port declared here, as
:class:`SessionRecord` values under the id's digest; ``store.console_sessions.RedisConsoleSessions``
implements it (the session's hash with its TTL, ``console_session.lua`` and its audit entries).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from idverify.domain.errors import NotFound, RateLimited
from idverify.domain.tenants import valid_tenant
from idverify.security.clients import ClientRegistry
from idverify.security.principals import Principal, Role
from idverify.security.rate_limits import PrincipalLimiter

__all__ = ["CONSOLE_ROLES", "ConsoleSessions", "Session", "SessionRecord", "SessionStore", "SignInLimiter"]

CONSOLE_ROLES = frozenset({Role.AUDITOR, Role.ADMIN})
"""The roles that may sign in: the same as AuditService's."""

_SESSION_ID_BYTES = 32
_SESSION_ID_LENGTH = 43  # token_urlsafe(32)
# Failures counted before the buckets start afresh (their memory stays bounded).
_FORGET_AFTER = 100_000
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in auditor: who, and until when (ms since the epoch)."""

    principal: Principal
    expires_ms: int


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as stored: who signed in (the client and its role then), and until when."""

    role: str  # the role's value when it signed in
    client_id: str
    expires_ms: int  # ms since the epoch


class SessionStore(Protocol):
    """Console sessions, each under the SHA-256 (hex) of its id, in its tenant.

    Every method may raise StoreUnavailable.
    """

    async def open(
        self, tenant: str, digest: str, record: SessionRecord, lifetime_ms: int, request: Mapping[str, str]
    ) -> None:
        """Keeps the session for ``lifetime_ms`` (then it is gone), audited as a sign-in, in one step."""
        ...

    async def read(self, tenant: str, digest: str) -> SessionRecord | None:
        """The session, or None when there is none (never opened, closed, or its lifetime over)."""
        ...

    async def close(self, tenant: str, digest: str, request: Mapping[str, str]) -> None:
        """Drops the session, audited as a sign-out, in one step; nothing (no entry) when there is none."""
        ...


class ConsoleSessions:
    """Opens, reads and closes console sessions; every replica and worker sees the same ones.

    A cookie is ``<tenant>.<random id>``: the tenant finds the session in its own hash slot, where
    one script writes it with its audit entry (``console.signed_in``, ``console.signed_out``).
    """

    def __init__(self, store: SessionStore, clients: ClientRegistry, lifetime_seconds: float) -> None:
        self._store = store
        self._clients = clients
        self._lifetime_ms = int(lifetime_seconds * 1000)

    @staticmethod
    def _parse(cookie: str) -> tuple[str, str] | None:
        tenant, _, session_id = cookie.rpartition(".")
        if (
            not valid_tenant(tenant)
            or len(session_id) != _SESSION_ID_LENGTH
            or not set(session_id) <= _URLSAFE
        ):
            return None
        return tenant, session_id

    @staticmethod
    def _digest(session_id: str) -> str:
        return hashlib.sha256(session_id.encode("ascii")).hexdigest()

    async def open(self, principal: Principal, request: Mapping[str, str]) -> tuple[str, Session]:
        """A new session for the principal (audited), and the value its cookie carries.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        session_id = secrets.token_urlsafe(_SESSION_ID_BYTES)
        expires_ms = time.time_ns() // 1_000_000 + self._lifetime_ms
        record = SessionRecord(principal.role.value, principal.client_id, expires_ms)
        await self._store.open(principal.tenant, self._digest(session_id), record, self._lifetime_ms, request)
        return f"{principal.tenant}.{session_id}", Session(principal, expires_ms)

    async def find(self, cookie: str) -> Session | None:
        """The live session a cookie names; None when it is unknown, expired or its client revoked.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        parsed = self._parse(cookie)
        if parsed is None:
            return None
        tenant, session_id = parsed
        stored = await self._store.read(tenant, self._digest(session_id))
        if stored is None or stored.expires_ms <= time.time_ns() // 1_000_000:
            return None
        try:
            record = await self._clients.get(stored.client_id)
        except NotFound:
            return None
        if record.revoked or record.tenant != tenant or record.role.value != stored.role:
            return None
        return Session(Principal(record.tenant, record.role, record.client_id), stored.expires_ms)

    async def close(self, cookie: str, request: Mapping[str, str]) -> None:
        """Ends a session (sign-out, audited); an unknown one is no error.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        parsed = self._parse(cookie)
        if parsed is not None:
            tenant, session_id = parsed
            await self._store.close(tenant, self._digest(session_id), request)


class SignInLimiter:
    """Failed sign-ins per client address, in each worker: a token bucket, as gRPC's per client.

    While an address is over its limit every sign-in from it is refused unchecked, so a right
    token guessed then is worth nothing to the guesser.
    """

    def __init__(self, failures_per_minute: int) -> None:
        self._per_minute = failures_per_minute
        self._buckets = PrincipalLimiter(failures_per_minute)
        self._locked_until: dict[str, float] = {}
        self._seen = 0

    def wait(self, address: str) -> float:
        """Seconds an address must wait before it may try again (0: it may now)."""
        until = self._locked_until.get(address)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left > 0:
            return left
        del self._locked_until[address]
        return 0.0

    def failed(self, address: str) -> float:
        """Counts one failed sign-in of an address; the seconds it must now wait (0: none)."""
        self._seen += 1
        if self._seen > _FORGET_AFTER:
            # Bounds memory under address spraying; the addresses locked now stay locked.
            self._buckets = PrincipalLimiter(self._per_minute)
            self._seen = 0
        try:
            self._buckets.take(f"signin:{address}")
        except RateLimited as refused:
            self._locked_until[address] = time.monotonic() + refused.retry_after
            return refused.retry_after
        return 0.0

"""Console sign-ins: sessions held server-side in Redis, and the limit on failed sign-ins.

The cookie carries the tenant and a random session id, never the token: a stolen cookie dies
with its session (expiry, sign-out, or the client's revocation, checked on every request), and a
Redis dump holds only the SHA-256 of each id, which opens nothing. Every sign-in and sign-out is
an entry of the tenant's audit log.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from idverify.domain.errors import NotFound, RateLimited
from idverify.domain.tenants import valid_tenant
from idverify.security.clients import ClientRegistry
from idverify.security.principals import Principal, Role
from idverify.security.rate_limits import PrincipalLimiter
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["CONSOLE_ROLES", "ConsoleSessions", "Session", "SignInLimiter"]

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


class ConsoleSessions:
    """Opens, reads and closes console sessions; every replica and worker sees the same ones.

    A cookie is ``<tenant>.<random id>``: the tenant finds the session in its own hash slot, where
    one script writes it with its audit entry (``console.signed_in``, ``console.signed_out``).
    """

    def __init__(
        self, redis: RedisClient, scripts: Scripts, clients: ClientRegistry, lifetime_seconds: float
    ) -> None:
        self._redis = redis
        self._scripts = scripts
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
    def _key(tenant: str, session_id: str) -> str:
        return TenantKeys(tenant).console_session(hashlib.sha256(session_id.encode("ascii")).hexdigest())

    async def open(self, principal: Principal, request: Mapping[str, str]) -> tuple[str, Session]:
        """A new session for the principal (audited), and the value its cookie carries.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        session_id = secrets.token_urlsafe(_SESSION_ID_BYTES)
        expires_ms = time.time_ns() // 1_000_000 + self._lifetime_ms
        keys = TenantKeys(principal.tenant)
        await self._scripts.run(
            "console_session",
            [self._key(principal.tenant, session_id), keys.audit_log()],
            [
                "open",
                json.dumps(dict(request)),
                principal.role.value,
                principal.client_id,
                expires_ms,
                self._lifetime_ms,
            ],
        )
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
        async with translate_errors():
            raw = await self._redis.hgetall(self._key(tenant, session_id))
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        if not fields or int(fields.get("expires_ms", "0")) <= time.time_ns() // 1_000_000:
            return None
        try:
            record = await self._clients.get(fields["client_id"])
        except NotFound:
            return None
        if record.revoked or record.tenant != tenant or record.role.value != fields["role"]:
            return None
        return Session(Principal(record.tenant, record.role, record.client_id), int(fields["expires_ms"]))

    async def close(self, cookie: str, request: Mapping[str, str]) -> None:
        """Ends a session (sign-out, audited); an unknown one is no error.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        parsed = self._parse(cookie)
        if parsed is not None:
            tenant, session_id = parsed
            await self._scripts.run(
                "console_session",
                [self._key(tenant, session_id), TenantKeys(tenant).audit_log()],
                ["close", json.dumps(dict(request))],
            )


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

"""Rate limits: an in-process token bucket per principal, shared Redis windows for the rest.

Per-principal limits guard each worker's CPU, so a local bucket is enough and costs no round
trip; per-identity and per-phone limits must hold across replicas, so they are fixed-window
counters in Redis (one atomic script that also audits the first hit of each window). A
principal's lock-out is audited through the same script, at most once a window for all workers
and replicas together, so that a client hammering the service cannot flood the audit log.

The shared windows are counted through :class:`RateWindows`, the port declared here, in typed
values; ``store.rate_limits.RedisRateWindows`` implements it (the counters' keys,
``rate_limit.lua`` and ``refuse_counted.lua`` and their replies) and gives a chain of scripts
(a verification's admission) the same counts as steps of its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from idverify.domain.errors import RateLimited
from idverify.observability import telemetry

__all__ = [
    "LOCKOUT_AUDIT_WINDOW_SECONDS",
    "CounterCheck",
    "LockoutAuditor",
    "PrincipalLimiter",
    "RateWindows",
    "WindowCount",
    "WindowHit",
    "WindowLimiter",
    "refuse_at_limit",
    "refuse_over_limit",
]

# A principal locked out again within this time is not audited again.
LOCKOUT_AUDIT_WINDOW_SECONDS = 60


@dataclass
class _Bucket:
    tokens: float
    updated: float
    lockout_audited_until: float = 0.0


class PrincipalLimiter:
    """Token bucket per client id: ``per_minute`` calls, bursts up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(per_minute)
        self._buckets: dict[str, _Bucket] = {}

    def take(self, client_id: str) -> None:
        """Spends one token.

        Raises:
            RateLimited: when the bucket is empty, with the time until the next token.
        """
        if self._rate <= 0:
            return
        now = time.monotonic()
        bucket = self._buckets.get(client_id)
        if bucket is None:
            bucket = self._buckets[client_id] = _Bucket(self._capacity, now)
        bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens < 1:
            telemetry.Instruments.add(telemetry.instruments.rate_limit_hits, limit="principal")
            raise RateLimited(
                "too many calls for this client",
                retry_after=(1 - bucket.tokens) / self._rate,
                reason="PRINCIPAL_RATE_LIMITED",
            )
        bucket.tokens -= 1

    def lockout_to_audit(self, client_id: str) -> bool:
        """Whether a refusal of this client is the first of a window in this worker."""
        bucket = self._buckets.get(client_id)
        now = time.monotonic()
        if bucket is None or now < bucket.lockout_audited_until:
            return False
        bucket.lockout_audited_until = now + LOCKOUT_AUDIT_WINDOW_SECONDS
        return True


@dataclass(frozen=True, slots=True)
class WindowHit:
    """One event to count in a fixed window of a tenant, keyed by a pseudonym (never the plain value)."""

    tenant: str
    purpose: str  # names the counter (with the pseudonym) and the audited limit
    pseudonym: str
    limit: int  # the count the window allows; the first count over it is audited (0: the first)
    window_ms: int
    request: Mapping[str, str]  # the audit fields of the call behind it, and the limit's name


@dataclass(frozen=True, slots=True)
class WindowCount:
    """A window's count with the event in it, and how long the window has left."""

    count: int
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class CounterCheck:
    """Whether a counter something else increments has reached its limit, and its window's time left.

    ``ttl_ms`` is at least 1000 when limited, 0 otherwise.
    """

    limited: bool
    ttl_ms: int = 0


class RateWindows(Protocol):
    """Fixed-window counters shared by every worker and replica; every method may raise StoreUnavailable."""

    async def count(self, hit: WindowHit) -> WindowCount:
        """Counts the event; the window's first count over ``hit.limit`` is audited in the same step."""
        ...

    async def check(
        self, tenant: str, purpose: str, pseudonym: str, *, limit: int, request: Mapping[str, str]
    ) -> CounterCheck:
        """Whether the counter ``purpose``/``pseudonym`` reached ``limit`` (0: never), counting nothing.

        The first refusal of the counter's window is audited in the same step, with ``request``
        (the call's audit fields and the limit's name).
        """
        ...


class LockoutAuditor:
    """Writes a principal's lock-out to its tenant's audit log, once a window across replicas."""

    def __init__(self, windows: RateWindows) -> None:
        self._windows = windows

    async def record(self, tenant: str, client_id: str, request: dict[str, str]) -> None:
        """Audits the lock-out unless another worker or replica did in this window.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        # A limit of 0 makes the window's first call the one over the limit: it is audited.
        await self._windows.count(
            WindowHit(
                tenant,
                "principal_lockout",
                client_id,
                limit=0,
                window_ms=LOCKOUT_AUDIT_WINDOW_SECONDS * 1000,
                request={**request, "limit": "principal"},
            )
        )


class WindowLimiter:
    """Fixed-window limits across replicas, keyed by a pseudonym (never the plain value)."""

    def __init__(self, windows: RateWindows) -> None:
        self._windows = windows

    async def hit(
        self,
        tenant: str,
        purpose: str,
        pseudonym: str,
        *,
        limit: int,
        window_seconds: int,
        request: dict[str, str],
    ) -> None:
        """Counts one event against the window (nothing when ``limit`` is 0: the limit is off).

        Raises:
            RateLimited: when the window's count is over the limit (reason ``<PURPOSE>_RATE_LIMITED``).
            StoreUnavailable: when Redis cannot be reached.
        """
        if limit <= 0:
            return
        count = await self._windows.count(
            WindowHit(
                tenant,
                purpose,
                pseudonym,
                limit=limit,
                window_ms=window_seconds * 1000,
                request={**request, "limit": purpose},
            )
        )
        refuse_over_limit(count, purpose=purpose, limit=limit)


def refuse_over_limit(count: WindowCount, *, purpose: str, limit: int) -> None:
    """Refuses when a window's count went over its limit.

    Raises:
        RateLimited: reason ``<PURPOSE>_RATE_LIMITED``, retry after the window's time left.
    """
    if count.count > limit:
        telemetry.Instruments.add(telemetry.instruments.rate_limit_hits, limit=purpose)
        raise RateLimited(
            f"rate limit for {purpose} reached",
            retry_after=max(count.ttl_ms, 0) / 1000,
            reason=f"{purpose.upper()}_RATE_LIMITED",
        )


def refuse_at_limit(check: CounterCheck, purpose: str) -> None:
    """Refuses when a counter was found at its limit (:meth:`RateWindows.check`).

    Raises:
        RateLimited: reason ``<PURPOSE>_LIMIT_REACHED``, retry after the counter's window.
    """
    if not check.limited:
        return
    telemetry.Instruments.add(telemetry.instruments.rate_limit_hits, limit=purpose)
    raise RateLimited(
        f"limit for {purpose} reached",
        retry_after=check.ttl_ms / 1000,
        reason=f"{purpose.upper()}_LIMIT_REACHED",
    )

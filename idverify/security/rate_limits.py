"""Rate limits: an in-process token bucket per principal, shared Redis windows for the rest.

Per-principal limits guard each worker's CPU, so a local bucket is enough and costs no round
trip; per-identity and per-phone limits must hold across replicas, so they are fixed-window
counters in Redis (one atomic script that also audits the first hit of each window). A
principal's lock-out is audited through the same script, at most once a window for all workers
and replicas together, so that a client hammering the service cannot flood the audit log.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from idverify.domain.errors import RateLimited
from idverify.observability import telemetry
from idverify.store.keys import TenantKeys
from idverify.store.scripts import ChainStep, Scripts

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


class LockoutAuditor:
    """Writes a principal's lock-out to its tenant's audit log, once a window across replicas."""

    def __init__(self, scripts: Scripts) -> None:
        self._scripts = scripts

    async def record(self, tenant: str, client_id: str, request: dict[str, str]) -> None:
        """Audits the lock-out unless another worker or replica did in this window.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        keys = TenantKeys(tenant)
        # A limit of 0 makes the window's first call the one over the limit: the script audits it.
        await self._scripts.run(
            "rate_limit",
            [keys.rate_limit("principal_lockout", client_id), keys.audit_log()],
            [0, LOCKOUT_AUDIT_WINDOW_SECONDS * 1000, json.dumps({**request, "limit": "principal"})],
        )


class WindowLimiter:
    """Fixed-window counters in Redis, keyed by a pseudonym (never the plain value)."""

    def __init__(self, scripts: Scripts) -> None:
        self._scripts = scripts

    async def hit(
        self,
        keys: TenantKeys,
        purpose: str,
        pseudonym: str,
        *,
        limit: int,
        window_seconds: int,
        request: dict[str, str],
    ) -> None:
        """Counts one event against the window.

        Raises:
            RateLimited: when the window's count is over the limit (reason ``<PURPOSE>_RATE_LIMITED``).
            StoreUnavailable: when Redis cannot be reached.
        """
        step = self.step(
            keys, purpose, pseudonym, limit=limit, window_seconds=window_seconds, request=request
        )
        if step is not None:
            self.refuse_over_limit(
                await self._scripts.run(step.name, step.keys, step.args), purpose=purpose, limit=limit
            )

    @staticmethod
    def step(
        keys: TenantKeys,
        purpose: str,
        pseudonym: str,
        *,
        limit: int,
        window_seconds: int,
        request: dict[str, str],
    ) -> ChainStep | None:
        """The count of :meth:`hit` as a step a chain may run (None: the limit is off)."""
        if limit <= 0:
            return None
        return ChainStep(
            "rate_limit",
            [keys.rate_limit(purpose, pseudonym), keys.audit_log()],
            [limit, window_seconds * 1000, json.dumps({**request, "limit": purpose})],
        )

    def refuse_over_limit(self, reply: Any, *, purpose: str, limit: int) -> None:
        """Refuses when the count of :meth:`step` went over the limit.

        Raises:
            RateLimited: as :meth:`hit`.
        """
        count, ttl_ms = reply
        if int(count) > limit:
            telemetry.Instruments.add(telemetry.instruments.rate_limit_hits, limit=purpose)
            raise RateLimited(
                f"rate limit for {purpose} reached",
                retry_after=max(int(ttl_ms), 0) / 1000,
                reason=f"{purpose.upper()}_RATE_LIMITED",
            )


def counted_step(
    keys: TenantKeys, purpose: str, pseudonym: str, *, limit: int, request: dict[str, str]
) -> ChainStep:
    """A step that refuses when a counter something else increments has reached ``limit`` (0: never).

    The first refusal of each window is audited (``rate_limit.hit``), as the windows of
    :class:`WindowLimiter` are; the rest are not, so that hammering cannot flood the log. A chain
    may go on after it only when it answered ``OK``; :func:`judge_counted` reads its reply.
    """
    return ChainStep(
        "refuse_counted",
        [
            keys.rate_limit(purpose, pseudonym),
            keys.rate_limit(f"{purpose}_audited", pseudonym),
            keys.audit_log(),
        ],
        [limit, json.dumps({**request, "limit": purpose})],
        proceed_on=("OK",),
    )


def judge_counted(reply: Any, purpose: str) -> None:
    """Refuses when the step of :func:`counted_step` found the counter at its limit.

    Raises:
        RateLimited: reason ``<PURPOSE>_LIMIT_REACHED``, retry after the counter's window.
    """
    if reply[0] != b"LIMITED":
        return
    ttl_ms = int(reply[1])
    telemetry.Instruments.add(telemetry.instruments.rate_limit_hits, limit=purpose)
    raise RateLimited(
        f"limit for {purpose} reached", retry_after=ttl_ms / 1000, reason=f"{purpose.upper()}_LIMIT_REACHED"
    )

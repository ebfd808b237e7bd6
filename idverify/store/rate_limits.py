"""Fixed-window counters in Redis, for ``security.rate_limits``.

``security.rate_limits`` decides (which windows, what a count over a limit means, the reasons
and retry times); this adapter keeps each counter in its tenant's slot
(``{t}:rl:<purpose>:<pseudonym>``), runs ``rate_limit.lua`` (one more event, the window's first
count over the limit audited) and ``refuse_counted.lua`` (a counter another script increments
checked against its limit, the window's first refusal audited) and decodes their replies once.

A verification's admission counts in the chain of its other scripts: :meth:`RedisRateWindows.step`
with :meth:`~RedisRateWindows.refuse_over_limit`, and :func:`counted_step` with
:func:`judge_counted`, are those pieces, so that the start keeps its round trips.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from idverify.security import rate_limits
from idverify.security.rate_limits import CounterCheck, WindowCount, WindowHit
from idverify.store.keys import TenantKeys
from idverify.store.scripts import ChainStep, Scripts

__all__ = ["RedisRateWindows", "counted_step", "judge_counted"]


class RedisRateWindows:
    """``security.rate_limits.RateWindows`` over the scripts of one Redis client.

    Every method may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, scripts: Scripts, *, keys: Callable[[str], TenantKeys] = TenantKeys) -> None:
        """Windows over ``scripts``; ``keys`` names a tenant's keys (today's ``TenantKeys`` by default)."""
        self._scripts = scripts
        self._keys = keys

    async def count(self, hit: WindowHit) -> WindowCount:
        """Runs ``rate_limit.lua``."""
        keys = self._keys(hit.tenant)
        counter = keys.rate_limit(hit.purpose, hit.pseudonym)
        reply = await self._scripts.run(
            "rate_limit",
            [counter, keys.audit_entries(counter)],
            [hit.limit, hit.window_ms, json.dumps(dict(hit.request))],
        )
        return self.count_of(reply)

    async def check(
        self, tenant: str, purpose: str, pseudonym: str, *, limit: int, request: Mapping[str, str]
    ) -> CounterCheck:
        """Runs ``refuse_counted.lua``."""
        step = _counted_step(
            self._keys(tenant), purpose, pseudonym, limit=limit, request_json=json.dumps(dict(request))
        )
        return counted_of(await self._scripts.run(step.name, step.keys, step.args))

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
        """``WindowLimiter.hit``'s count as a step a chain may run (None: the limit is off).

        :meth:`refuse_over_limit` reads its reply.
        """
        if limit <= 0:
            return None
        counter = keys.rate_limit(purpose, pseudonym)
        return ChainStep(
            "rate_limit",
            [counter, keys.audit_entries(counter)],
            [limit, window_seconds * 1000, json.dumps({**request, "limit": purpose})],
        )

    @staticmethod
    def count_of(reply: Any) -> WindowCount:
        """``rate_limit.lua``'s reply: {count, ttl ms}."""
        count, ttl_ms = reply
        return WindowCount(int(count), int(ttl_ms))

    @staticmethod
    def refuse_over_limit(reply: Any, *, purpose: str, limit: int) -> None:
        """Refuses when the count of :meth:`step` went over the limit.

        Raises:
            RateLimited: as ``security.rate_limits.refuse_over_limit``.
        """
        rate_limits.refuse_over_limit(RedisRateWindows.count_of(reply), purpose=purpose, limit=limit)


def _counted_step(
    keys: TenantKeys, purpose: str, pseudonym: str, *, limit: int, request_json: str
) -> ChainStep:
    counter = keys.rate_limit(purpose, pseudonym)
    return ChainStep(
        "refuse_counted",
        [counter, keys.rate_limit(f"{purpose}_audited", pseudonym), keys.audit_entries(counter)],
        [limit, request_json],
        proceed_on=("OK",),
    )


def counted_step(
    keys: TenantKeys, purpose: str, pseudonym: str, *, limit: int, request: dict[str, str]
) -> ChainStep:
    """A step that refuses when a counter something else increments has reached ``limit`` (0: never).

    The first refusal of each window is audited (``rate_limit.hit``), as the windows of
    ``rate_limit.lua`` are; the rest are not, so that hammering cannot flood the log. A chain may
    go on after it only when it answered ``OK``; :func:`judge_counted` reads its reply.
    """
    return _counted_step(
        keys, purpose, pseudonym, limit=limit, request_json=json.dumps({**request, "limit": purpose})
    )


def counted_of(reply: Any) -> CounterCheck:
    """``refuse_counted.lua``'s reply: {'OK'} | {'LIMITED', ttl ms of the counter's window}."""
    if reply[0] != b"LIMITED":
        return CounterCheck(limited=False)
    return CounterCheck(limited=True, ttl_ms=int(reply[1]))


def judge_counted(reply: Any, purpose: str) -> None:
    """Refuses when the step of :func:`counted_step` found the counter at its limit.

    Raises:
        RateLimited: as ``security.rate_limits.refuse_at_limit``.
    """
    rate_limits.refuse_at_limit(counted_of(reply), purpose)

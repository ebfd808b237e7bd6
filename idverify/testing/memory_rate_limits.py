"""An in-memory ``security.rate_limits.RateWindows``: fixed-window counters as plain values.

A counter is kept by tenant, purpose and pseudonym with its count and the time its window ends;
the clock is a number the test moves (``advance``). ``audit`` lists ``(tenant, limit's name)`` for
every ``rate_limit.hit`` entry the scripts would write: a window's first count over its limit,
and a checked counter's first refusal in its window. ``bump`` stands for the other scripts that
increment a checked counter. ``tests/unit/usecases/test_rate_limits_contract.py`` holds it and
``store.rate_limits.RedisRateWindows`` to the same assertions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from idverify.security.rate_limits import CounterCheck, WindowCount, WindowHit
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryRateWindows"]

_MIN_REFUSAL_MS = 1000  # refuse_counted.lua's least retry time


@dataclass(slots=True)
class _Counter:
    count: int
    ends_ms: int


class MemoryRateWindows:
    """Counters of every tenant, in memory."""

    def __init__(self, now_ms: int = 1_760_000_000_000) -> None:
        self.now = now_ms
        self.audit: list[tuple[str, str]] = []
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self._counters: dict[tuple[str, str, str], _Counter] = {}

    def _reach(self) -> None:
        refuse_if_down(self.down)

    def advance(self, ms: int) -> None:
        """Moves the clock on; windows that ended are gone."""
        self.now += ms

    def _live(self, key: tuple[str, str, str]) -> _Counter | None:
        counter = self._counters.get(key)
        if counter is not None and counter.ends_ms <= self.now:
            del self._counters[key]
            return None
        return counter

    def _incr(self, key: tuple[str, str, str], window_ms: int) -> _Counter:
        counter = self._live(key)
        if counter is None:
            counter = self._counters[key] = _Counter(0, self.now + window_ms)
        counter.count += 1
        return counter

    def bump(self, tenant: str, purpose: str, pseudonym: str, window_ms: int) -> None:
        """Increments a counter as another script would (a refused claim)."""
        self._incr((tenant, purpose, pseudonym), window_ms)

    async def count(self, hit: WindowHit) -> WindowCount:
        """Counts as ``rate_limit.lua`` does."""
        self._reach()
        counter = self._incr((hit.tenant, hit.purpose, hit.pseudonym), hit.window_ms)
        if counter.count == hit.limit + 1:
            self.audit.append((hit.tenant, hit.request.get("limit", "")))
        return WindowCount(counter.count, counter.ends_ms - self.now)

    async def check(
        self, tenant: str, purpose: str, pseudonym: str, *, limit: int, request: Mapping[str, str]
    ) -> CounterCheck:
        """Checks as ``refuse_counted.lua`` does."""
        self._reach()
        counter = self._live((tenant, purpose, pseudonym))
        if limit <= 0 or counter is None or counter.count < limit:
            return CounterCheck(limited=False)
        ttl_ms = max(counter.ends_ms - self.now, _MIN_REFUSAL_MS)
        refusals = self._incr((tenant, f"{purpose}_audited", pseudonym), ttl_ms)
        if refusals.count == 1:
            self.audit.append((tenant, request.get("limit", "")))
        return CounterCheck(limited=True, ttl_ms=ttl_ms)

"""The time of stored state: Redis's clock, carried on by a monotonic clock so it never steps back.

Every time that is stored, or compared with a stored time, is the store's: scripts read Redis's
``TIME``, and Python code asks :meth:`StoreClock.now_ms`, so the replicas and workers of a
deployment judge expiries by one clock whatever their own hosts' clocks say. Redis has no
monotonic time to offer (its expiries are absolute wall-clock times too), so a step of its host's
clock would move every deadline at once: back by hours, an expired code would be accepted again.

Each process therefore samples the store's time now and then (``clock.lua``) and counts on from
the sample with ``time.monotonic()``. That count is the *floor* passed with every script: its NOW
is never below it. When Redis's clock steps back, NOW goes on from where it was; the floor then
runs at ``SLEW`` of the real rate until Redis's clock catches up (two hours in about eight days),
and ``clock.lua`` keeps it in a global key meanwhile, so a process started after the step knows
it too. A step forward is followed at once: deadlines come early, which fails closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from idverify.domain.errors import StoreUnavailable

log = logging.getLogger("idverify.store.clock")

RESAMPLE_SECONDS = 10.0
# After a failed sample (Redis down or full), the count goes on from the last one meanwhile.
RETRY_SECONDS = 1.0
# The floor's rate while it is ahead of Redis's clock: durations then run 1% short (fail closed).
SLEW = 0.99
# Ahead by less is sampling noise (a round trip, NTP's slewing), not a step.
STEP_MS = 1000

# Runs clock.lua with the caller's floor; returns (store time, Redis's own time), both epoch ms.
Sampler = Callable[[int], Awaitable[tuple[int, int]]]


class StoreClock:
    """The store's time as one process knows it.

    Args:
        sample: reads the store's time, given this process's floor (``Scripts`` runs ``clock.lua``).
        monotonic: seconds from a clock that never steps (injected by tests).
        resample_seconds: how often Redis's clock is read again.
    """

    def __init__(
        self,
        sample: Sampler,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        resample_seconds: float = RESAMPLE_SECONDS,
    ) -> None:
        self._sample = sample
        self._monotonic = monotonic
        self._resample_seconds = resample_seconds
        self._base_ms: int | None = None
        self._base_at = 0.0
        self._rate = 1.0
        self._next_sample_at = 0.0
        self._lock = asyncio.Lock()

    def floor_ms(self) -> int:
        """The latest store time this process knows of, counted on to now (0 before any sample)."""
        if self._base_ms is None:
            return 0
        return self._base_ms + int((self._monotonic() - self._base_at) * 1000 * self._rate)

    async def now_ms(self) -> int:
        """The store's time now (epoch ms), sampling Redis's clock when the last sample is old.

        Raises:
            StoreUnavailable: Redis could not be read and this process has never read it.
        """
        if self._monotonic() >= self._next_sample_at:
            async with self._lock:
                if self._monotonic() >= self._next_sample_at:
                    await self._sample_once()
        return self.floor_ms()

    async def script_floor_ms(self) -> int:
        """The floor for a script: as :meth:`now_ms`, but 0 (Redis's clock alone) if it cannot sample.

        A script that runs decides by Redis's clock anyway; its own call reports Redis's faults.
        """
        try:
            return await self.now_ms()
        except StoreUnavailable:
            return 0

    async def _sample_once(self) -> None:
        try:
            store_ms, redis_ms = await self._sample(self.floor_ms())
        except StoreUnavailable:
            self._next_sample_at = self._monotonic() + RETRY_SECONDS
            if self._base_ms is None:
                raise
            return
        ahead = store_ms - redis_ms > STEP_MS
        if ahead and self._rate == 1.0:
            log.warning(
                "the store's clock is %d s behind the time already seen (stepped back): stored "
                "times carry on from the earlier time, and it catches up at %g%% of the time passing",
                (store_ms - redis_ms) // 1000,
                round((1 - SLEW) * 100, 3),
            )
        self._base_ms, self._base_at = store_ms, self._monotonic()
        self._rate = SLEW if ahead else 1.0
        self._next_sample_at = self._base_at + self._resample_seconds


__all__ = ["RESAMPLE_SECONDS", "SLEW", "STEP_MS", "Sampler", "StoreClock"]

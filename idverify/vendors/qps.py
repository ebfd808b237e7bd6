# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""A per-process budget of calls per second to one vendor (a token bucket that may queue briefly).

Vendors throttle each account (FaceID: 100 calls/s per API by default); staying under the
budget here turns a burst into a short wait instead of throttling errors. The budget is per
worker process: give each ``qps / workers``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["QpsBudget"]


class QpsBudget:
    """Admits at most ``qps`` calls per second on average, with bursts of up to ``burst``.

    Args:
        qps: the sustained rate; 0 means no limit.
        max_wait_seconds: a call waits at most this long for its turn, else it is refused.
        burst: tokens the bucket holds when full (default: ``max(1, qps)``).
        clock: monotonic seconds (injectable for tests).
        sleep: the coroutine that waits (injectable for tests).

    Raises:
        ValueError: on a negative rate or wait.

    """

    def __init__(
        self,
        qps: float,
        *,
        max_wait_seconds: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if qps < 0 or max_wait_seconds < 0:
            raise ValueError("qps and max_wait_seconds must not be negative")
        self._rate = float(qps)
        self._capacity = float(burst if burst is not None else max(1.0, qps))
        self._max_wait = max_wait_seconds
        self._clock = clock
        self._sleep = sleep
        self._tokens = self._capacity
        self._updated = clock()

    async def acquire(self) -> bool:
        """Take one call's token, waiting for it if that takes at most ``max_wait_seconds``.

        Returns:
            True when the call may go out; False when the budget is spent for longer than
            the caller may wait.

        """
        if self._rate == 0:
            return True
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        wait = (1 - self._tokens) / self._rate
        if wait > self._max_wait:
            return False
        # Reserve the token now (the balance goes negative) so that callers queue in order.
        self._tokens -= 1
        await self._sleep(wait)
        return True

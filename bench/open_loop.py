"""An open-loop load: calls issued on a fixed schedule, each timed from its scheduled start.

A closed loop (N callers, each waiting for its answer before the next call) slows down with the
server and so never sees the queue it would build; it also omits the calls that a slow answer
held back. Here a call starts when the schedule says, whether or not earlier ones have answered,
and its latency counts from that instant: time lost to queueing, and to a client that fell
behind, shows in the figures instead of vanishing.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine, Sequence


def schedule(rate: float, seconds: float) -> list[float]:
    """Offsets in seconds from the start at which calls are due: ``rate`` a second, evenly spaced."""
    return [i / rate for i in range(round(rate * seconds))]


def latency_summary(samples: Sequence[float]) -> dict[str, float]:
    """``count``, ``p50_ms`` and ``p99_ms`` of latencies in seconds (inclusive quantiles)."""
    if len(samples) < 2:  # the quantiles need two points
        only = samples[0] * 1000 if samples else float("nan")
        return {"count": len(samples), "p50_ms": round(only, 1), "p99_ms": round(only, 1)}
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"count": len(samples), "p50_ms": round(cuts[49] * 1000, 1), "p99_ms": round(cuts[98] * 1000, 1)}


async def run_on_schedule(
    rate: float, seconds: float, call: Callable[[int, float], Coroutine[object, object, None]]
) -> float:
    """Calls ``call(i, due)`` at each due instant of :func:`schedule`, never waiting for earlier calls.

    ``due`` is in ``time.perf_counter`` seconds. Returns once every call has finished, with the
    latest any call started after its due instant: the client's own lag, which the latencies
    ``call`` measures from ``due`` already include.
    """
    began = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    worst_lag = 0.0
    for i, offset in enumerate(schedule(rate, seconds)):
        due = began + offset
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        worst_lag = max(worst_lag, time.perf_counter() - due)
        tasks.append(asyncio.create_task(call(i, due)))
    await asyncio.gather(*tasks)
    return worst_lag

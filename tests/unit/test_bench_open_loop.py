"""The open-loop load of ``bench/verify.py --rate``: its schedule and percentiles.

And that a call never waits for an earlier one: a closed loop would hide the queue the benchmark
is there to see.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

# The benchmarks are scripts, not a package: load the module from its file.
_SPEC = importlib.util.spec_from_file_location(
    "open_loop", Path(__file__).resolve().parents[2] / "bench" / "open_loop.py"
)
assert _SPEC is not None
assert _SPEC.loader is not None
open_loop = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(open_loop)


def test_the_schedule_spaces_calls_evenly_at_the_rate() -> None:
    offsets = open_loop.schedule(rate=40.0, seconds=2.5)

    assert len(offsets) == 100
    assert offsets[0] == 0.0
    assert offsets[1:] == pytest.approx([i / 40.0 for i in range(1, 100)])


def test_the_summary_takes_the_50th_and_99th_percentiles_in_milliseconds() -> None:
    samples = [ms / 1000 for ms in range(100, 0, -1)]  # 1 ms to 100 ms, out of order

    assert open_loop.latency_summary(samples) == {"count": 100, "p50_ms": 50.5, "p99_ms": 99.0}


def test_the_summary_of_one_or_no_sample_says_what_it_has() -> None:
    assert open_loop.latency_summary([0.012]) == {"count": 1, "p50_ms": 12.0, "p99_ms": 12.0}
    empty = open_loop.latency_summary([])
    assert empty["count"] == 0
    assert empty["p99_ms"] != empty["p99_ms"]  # NaN: no figure rather than a made-up one


async def test_every_call_starts_while_the_earlier_ones_are_still_running() -> None:
    calls = 8
    all_started = asyncio.Event()
    seen: list[tuple[int, float]] = []

    async def held_until_all_have_started(i: int, due: float) -> None:
        seen.append((i, due))
        if len(seen) == calls:
            all_started.set()
        await all_started.wait()  # a loop that waited for this call would never start the next

    loading = open_loop.run_on_schedule(100.0, calls / 100.0, held_until_all_have_started)
    await asyncio.wait_for(loading, timeout=30)

    assert [i for i, _ in seen] == list(range(calls))
    dues = [due for _, due in seen]
    assert [later - dues[0] for later in dues] == pytest.approx([i / 100.0 for i in range(calls)])

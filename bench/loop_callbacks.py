"""Each event-loop callback's CPU time in a benchmark's server, to see whether a loop blocks.

``bench/verify.py --rate --loop-callbacks`` copies this file as ``sitecustomize.py`` into the
throwaway directory on the server's ``PYTHONPATH`` (never into the venv). In every process
(workers too: they are forked) it times each ``asyncio`` handle's run with the thread's CPU clock,
which neighbours on a shared machine do not stretch, and writes every second, to
``loop-callbacks/<pid>.json`` beside itself, the callbacks of each second by CPU time
(under 1, 2, 5 and 10 ms, and 10 ms or more) and those of 2 ms or more by name.
:func:`read_window` sums them over a span of ``time.monotonic()``, the clock all processes share.
"""

from __future__ import annotations

import asyncio.events
import json
import os
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

BOUNDS_MS = (1, 2, 5, 10)
"""Callbacks are counted by CPU time below each bound in turn, and at or above the last."""
SLOW_MS = 2.0
_OUT = Path(__file__).resolve().parent / "loop-callbacks"

_buckets: defaultdict[int, Counter[int]] = defaultdict(Counter)
_slow: list[tuple[float, float, str]] = []
_lock = threading.Lock()
_timed_run = asyncio.events.Handle._run  # noqa: SLF001 - the one place every callback passes


def _name(handle: asyncio.events.Handle) -> str:
    callback = handle._callback  # type: ignore[attr-defined]  # noqa: SLF001
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return str(getattr(coro, "__qualname__", type(coro).__name__))
    return str(getattr(callback, "__qualname__", type(callback).__name__))


def _run(self: asyncio.events.Handle) -> None:
    began = time.thread_time()
    try:
        _timed_run(self)
    finally:
        used_ms = 1000 * (time.thread_time() - began)
        bucket = sum(used_ms >= bound for bound in BOUNDS_MS)
        now = time.monotonic()
        with _lock:
            _buckets[int(now)][bucket] += 1
            if used_ms >= SLOW_MS:
                _slow.append((now, used_ms, _name(self)))


def _write_every_second() -> None:
    _OUT.mkdir(exist_ok=True)
    while True:
        time.sleep(1)
        with _lock:
            state = {"buckets": {s: dict(c) for s, c in _buckets.items()}, "slow": list(_slow)}
        target = _OUT / f"{os.getpid()}.json"
        target.with_suffix(".tmp").write_text(json.dumps(state), encoding="utf-8")
        target.with_suffix(".tmp").replace(target)


def _start_in_child() -> None:
    with _lock:
        _buckets.clear()
        _slow.clear()
    threading.Thread(target=_write_every_second, daemon=True).start()


def install() -> None:
    """Time every callback of every event loop in this process and its forks."""
    asyncio.events.Handle._run = _run  # type: ignore[method-assign]  # noqa: SLF001
    threading.Thread(target=_write_every_second, daemon=True).start()
    os.register_at_fork(after_in_child=_start_in_child)


def read_window(site: Path, began: float, ended: float) -> dict[str, Any]:
    """All processes' callbacks between two ``time.monotonic()`` readings, as benchmark figures."""
    counts: Counter[int] = Counter()
    slow: list[tuple[float, float, str]] = []
    for dump in (site / "loop-callbacks").glob("*.json"):
        state = json.loads(dump.read_text(encoding="utf-8"))
        for second, buckets in state["buckets"].items():
            if began <= int(second) < ended:
                counts.update({int(b): n for b, n in buckets.items()})
        slow.extend(tuple(entry) for entry in state["slow"] if began <= entry[0] < ended)
    by_name: defaultdict[str, list[float]] = defaultdict(list)
    for _, used_ms, name in slow:
        by_name[name].append(used_ms)
    labels = ["under_1_ms", "1_to_2_ms", "2_to_5_ms", "5_to_10_ms", "10_ms_or_more"]
    return {
        "loop_callbacks": sum(counts.values()),
        **{f"loop_callbacks_{label}": counts[i] for i, label in enumerate(labels)},
        "loop_callback_max_cpu_ms": round(max((s[1] for s in slow), default=0.0), 2),
        "loop_callbacks_slow_by_name": {
            name: [len(times), round(max(times), 2)]
            for name, times in sorted(by_name.items(), key=lambda item: -max(item[1]))[:8]
        },
    }


if __name__ == "sitecustomize":
    install()

"""What ``bench/overhead.py`` puts into its server: a trivial argon2 profile and a CPU profiler.

Copied as ``sitecustomize.py`` into the throwaway directory on the server's ``PYTHONPATH``
(never into the venv), so it runs in the supervisor and, through the fork, in every worker:

* the server's argon2 profile may be below OWASP's minimum (``Argon2Params.from_config`` is
  called with ``allow_weak``), so that ``[argon2] memory_kib = 8, time_cost = 1`` makes a
  signup's CPU almost all overhead. The package itself keeps refusing such a profile;
* SIGUSR2 starts, and the next SIGUSR2 stops, a ``cProfile`` of the process's main thread (the
  event loop's) timed by that thread's CPU clock, which neighbours on a shared machine do not
  stretch; the stop writes ``cpu-profile/<pid>.prof`` beside this file.
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

# ``python -m idverify`` puts its working directory first on sys.path only after this module ran:
# imported from here without it, idverify would come from wherever the venv installed it, not
# from the tree the benchmark runs.
sys.path.insert(0, str(Path.cwd()))
from idverify.privacy import identity_index

_OUT = Path(__file__).resolve().parent / "cpu-profile"
_running: list[cProfile.Profile] = []
_checked_config = identity_index.Argon2Params.from_config.__func__  # type: ignore[attr-defined]


def _weak_allowed(cls: type[identity_index.Argon2Params], /, **values: Any) -> identity_index.Argon2Params:
    return _checked_config(cls, **{**values, "allow_weak": True})  # type: ignore[no-any-return]


def _toggle(_signum: int, _frame: FrameType | None) -> None:
    if not _running:
        profile = cProfile.Profile(time.thread_time)
        _running.append(profile)
        profile.enable()
        return
    profile = _running.pop()
    profile.disable()
    _OUT.mkdir(exist_ok=True)
    profile.dump_stats(_OUT / f"{os.getpid()}.prof")


def install() -> None:
    """Allow the trivial profile and profile on SIGUSR2, in this process and its forks."""
    identity_index.Argon2Params.from_config = classmethod(_weak_allowed)  # type: ignore[method-assign,assignment]
    signal.signal(signal.SIGUSR2, _toggle)


if __name__ == "sitecustomize":
    install()

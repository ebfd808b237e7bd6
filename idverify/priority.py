"""Background CPU work at the lowest scheduling priority, so that the calls' event loop preempts it.

A worker is one core (docs/ARCHITECTURE.md, "Workers"): its event loop answers calls of a few
milliseconds that a caller waits on, while its argon2 hashes (tens of milliseconds of CPU each) and, after a
start or a reload, its IP table build run in threads on the same core. At equal priority Linux
gives each runnable thread an equal share, so a call that lands beside a hash takes about twice
its time plus the scheduler's slices. At nice 19 a background thread weighs 15 against the event
loop's 1024: it gets the core whenever the event loop waits and almost none of it otherwise, so no
throughput is lost. Linux keeps the nice value per thread (``setpriority`` with a thread id), and
with autogroups (one per session) it orders threads within the server's own group only: a niced
hash does not yield to other programs on the machine any more than it did.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Final

__all__ = ["LOWEST", "run_in_background", "set_background_niceness"]

LOWEST: Final = 19
"""Linux's lowest priority (the highest nice value)."""

_background_niceness = 0
"""The nice value :func:`run_in_background` gives a thread when not told: the server's setting."""


def set_background_niceness(niceness: int) -> None:
    """Set the nice value of this process's background threads from now on (``[argon2] niceness``).

    One value for the process: the hashes and the IP table build share a worker's core, and a
    build at a higher priority than the hashes would hold them back for seconds after a start.

    Raises:
        ValueError: ``niceness`` is outside 0 to 19.
    """
    global _background_niceness  # noqa: PLW0603 - a property of the process, like nice itself
    _check(niceness)
    _background_niceness = niceness


def _check(niceness: int) -> None:
    if not 0 <= niceness <= LOWEST:
        raise ValueError("niceness must be between 0 and 19")


_COMM_BYTES: Final = 15
"""Linux keeps 15 bytes of a thread's name (``TASK_COMM_LEN`` less its NUL)."""


def run_in_background(name: str, niceness: int | None = None) -> None:
    """Name the calling thread for the OS and lower its priority to ``niceness``.

    Called first thing in a background thread (or as a thread pool's initializer). The name is
    what ``top -H``, ``ps -L`` and ``/proc/<pid>/task/*/comm`` show (Python 3.11 does not pass its
    thread names on). A thread already nicer keeps its value; ``niceness`` 0 only names it, and
    None takes the process's value (:func:`set_background_niceness`, 0 until set).

    Raises:
        ValueError: ``name`` is longer than the OS keeps, or ``niceness`` is outside 0 to 19.
    """
    if len(name.encode()) > _COMM_BYTES:
        raise ValueError(f"thread name {name!r} is longer than {_COMM_BYTES} bytes")
    niceness = _background_niceness if niceness is None else niceness
    _check(niceness)
    # Cosmetic where there is no /proc.
    with contextlib.suppress(OSError):
        Path("/proc/thread-self/comm").write_text(name, encoding="utf-8")
    if not niceness or not hasattr(os, "setpriority"):
        return
    # Lowering a priority needs no privilege. An OS that refuses leaves the thread at the event
    # loop's priority: correct, only slower for the short calls. Raising it again does: without
    # CAP_SYS_NICE a thread's nice value goes down only to 20 - RLIMIT_NICE, and RLIMIT_NICE is 0
    # by default (as an unprivileged user here, setpriority from 19 back to 18 fails with
    # EACCES), so a hash stalled behind a busy loop cannot be "aged" back to its priority. What keeps
    # such a hash from starving is that its loop stops taking in starts it cannot hash in time
    # (idverify/privacy/hash_backlog.py) and so goes back to waiting, when the hash runs.
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, thread) < niceness:
            os.setpriority(os.PRIO_PROCESS, thread, niceness)

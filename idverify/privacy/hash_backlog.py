"""The hashes a worker has queued or running, and whether a start's hash would finish in its time.

A worker hashes on one thread (or a few) behind its event loop, which keeps accepting calls: left
alone, a burst of starts queues hashes that finish only after their callers gave up, each still
costing its full argon2id, while the starts behind them wait longer still. A start therefore
promises its hashes before it reserves or counts anything (``VerificationFlow.start``), and is
refused at once with RESOURCE_EXHAUSTED (``HASH_QUEUE_FULL``) when, behind the hashes already
promised, queued or running, its own would not be done within half the call's time left: the
other half is for the start's Redis steps, its code send, and an estimate that was low.

The bound is also what lets the hashes run at nice 19 (``[argon2] niceness``) without starving:
a nice-19 hash gets its core only while its event loop waits, and an event loop that refuses the
excess at once, rather than taking in every start, goes back to waiting (docs/ARCHITECTURE.md,
"The hot paths").

The time of a hash is measured, not configured: the wall time of the hashes that finished (an
average that follows the machine as its load changes). A hash still running past that time is
stalled (its thread waiting for a core its event loop or a neighbour holds): every hash behind
it waits as long again, so its delay so far is added once to every start's wait. While the loop
is busy the delay grows until starts are refused, the loop goes back to waiting, and the hash
runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from idverify.domain.errors import RateLimited

__all__ = ["DEADLINE_SHARE", "HashBacklog", "Promise"]

log = logging.getLogger("idverify.hashes")
T = TypeVar("T")

DEADLINE_SHARE = 0.5
"""The part of a call's time left that its hashes may take, queueing included."""

# How much a finished hash moves the estimate: about the last ten hashes weigh in.
_SMOOTHING = 0.2
# A refused caller is told to wait at least this long: sooner, the queue cannot have moved.
_MIN_RETRY_SECONDS = 0.05
# Refusals come in bursts: one log line sums up those of this many seconds.
_LOG_EVERY_SECONDS = 10.0


@dataclass(slots=True)
class Promise:
    """Hashes a start will ask for, counted in the backlog from its admission until they are submitted."""

    left: int


_promise: ContextVar[Promise | None] = ContextVar("idverify_hash_promise", default=None)


class HashBacklog:
    """Counts one indexer's hashes queued or running, and refuses starts that would wait too long.

    Hashes are counted in on the event loop's thread and out on whichever thread finishes them,
    and their start and end are recorded on the hashing threads: one lock guards it all.
    """

    def __init__(
        self, threads: int, first_estimate: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """A backlog of ``threads`` hashing threads whose hash takes ``first_estimate`` seconds.

        Raises:
            ValueError: ``threads`` is less than 1 or ``first_estimate`` is negative.
        """
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if first_estimate < 0:
            raise ValueError("first_estimate must not be negative")
        self._threads = threads
        self._clock = clock
        self._lock = threading.Lock()
        self._hash_seconds = first_estimate
        self._pending = 0
        self._running: dict[int, float] = {}
        self._refused_since_log = 0
        self._last_log = -math.inf

    @property
    def pending(self) -> int:
        """Hashes promised, queued or running."""
        return self._pending

    def hash_seconds(self) -> float:
        """The wall time one hash is expected to take, from those that finished."""
        return self._hash_seconds

    def stalled_seconds(self) -> float:
        """How far the oldest running hash is past its expected time: a delay all behind it share."""
        with self._lock:
            oldest = min(self._running.values(), default=None)
            if oldest is None:
                return 0.0
            return max(self._clock() - oldest - self._hash_seconds, 0.0)

    def wait_seconds(self, hashes: int) -> float:
        """How long ``hashes`` more would take to be done, behind every hash counted now."""
        rounds = math.ceil((self._pending + hashes) / self._threads)
        return rounds * self._hash_seconds + self.stalled_seconds()

    @contextlib.contextmanager
    def promise(self, hashes: int, seconds_left: float) -> Iterator[Promise]:
        """Counts a start's ``hashes`` in, or refuses it when they would not be done in its time.

        Within the block the start's own hashes (:meth:`submit` in the same context) draw on the
        promise instead of counting again; whatever it did not use is counted out at the end.

        Raises:
            RateLimited: ``HASH_QUEUE_FULL``, before anything is counted; its ``retry_after`` is
                how long the hashes counted now take to be done.
        """
        wait = self.wait_seconds(hashes)
        if wait > seconds_left * DEADLINE_SHARE:
            self._refused(wait, seconds_left)
            raise RateLimited(
                "this worker's identity hashes would not be done before the call's deadline; "
                "try again shortly",
                retry_after=max(self.wait_seconds(0), _MIN_RETRY_SECONDS),
                reason="HASH_QUEUE_FULL",
            )
        promised = Promise(hashes)
        with self._lock:
            self._pending += hashes
        token = _promise.set(promised)
        try:
            yield promised
        finally:
            _promise.reset(token)
            with self._lock:
                self._pending -= promised.left
                promised.left = 0

    def submit(self, executor: Executor, work: Callable[[], T]) -> Future[T]:
        """Runs ``work`` (one hash) on ``executor``, counted from now until it is done or cancelled.

        Called on the event loop's thread. A promise of this context (:meth:`promise`) that has
        hashes left counts it already; the hash's wall time on its thread goes into the estimate.

        Raises:
            RuntimeError: the executor is shut down (nothing stays counted).
        """
        promised = _promise.get()
        with self._lock:
            if promised is not None and promised.left > 0:
                promised.left -= 1
            else:
                self._pending += 1
        try:
            future = executor.submit(self._timed, work)
        except BaseException:
            self._count_out(1)
            raise
        future.add_done_callback(lambda _: self._count_out(1))
        return future

    def _timed(self, work: Callable[[], T]) -> T:
        thread = threading.get_ident()
        with self._lock:
            began = self._clock()
            self._running[thread] = began
        try:
            return work()
        finally:
            with self._lock:
                del self._running[thread]
                took = self._clock() - began
                self._hash_seconds += _SMOOTHING * (took - self._hash_seconds)

    def _count_out(self, hashes: int) -> None:
        with self._lock:
            self._pending -= hashes

    def _refused(self, wait: float, seconds_left: float) -> None:
        """Sums refusals up in a log line at most every few seconds: no request data, only counts."""
        self._refused_since_log += 1
        now = self._clock()
        if now - self._last_log < _LOG_EVERY_SECONDS:
            return
        log.warning(
            "refused %d start(s) whose hashes would wait too long: %d hashes counted on %d thread(s), "
            "%.0f ms expected against %.0f ms left",
            self._refused_since_log,
            self._pending,
            self._threads,
            wait * 1000,
            seconds_left * 1000,
        )
        self._refused_since_log = 0
        self._last_log = now

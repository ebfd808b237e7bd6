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

The time of a hash is measured, not configured, and in two parts that a burst affects
differently: the CPU time a hash needs (its thread's CPU clock, an average of those
that finished), and the share of a core it gets from the rest of the machine. The share counts
only what others took: the wall time a hash ran minus the CPU time this worker spent meanwhile
(its event loop, gRPC's threads, the hash itself; a worker is pinned to a core, so what it spent
is what its hash waited for). A hash's wall time alone does not tell the two apart: while the
event loop takes in a burst it holds the core and the nice-19 hash gets nothing, but that ends
with the intake (a refusal is cheap, and the loop then waits), whereas a neighbour's hold does
not. Counted as wall time, the intake inflated the estimate of every start in the burst and of
the hashes after it, and the bound refused most of what the worker could hash in time (7-12 of
200 let in at load 4 where 49-62 completed in time without it). A hash therefore takes ``cpu / share``,
and ``rounds`` of them, queueing included, must fit ``DEADLINE_SHARE`` of the call's time left.

A hash still running is late when the others' hold on the core during it passes what the share
predicted: that delay (a neighbour that came or grew since the last hash finished) is added once
to every start's wait, so that a core taken away is answered with refusals at once, not only
after its slow hash finished. The event loop's own intake is not late by this measure, up to
the other half of the call's time, which is the calls' own work (the admitted starts' Redis
steps and code send): a loop still busy past it is not taking in a burst that ends but
overloaded, and what passes that half is added to the wait as a neighbour's delay would be.
Off a pinned core (a CPU quota narrower than the affinity: workers not pinned) the worker's CPU
on another core is subtracted too, so the share there reads high: the half left is the margin.
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

__all__ = ["DEADLINE_SHARE", "Clocks", "HashBacklog", "HashSample", "Promise"]

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


def _thread_cpu(thread: int) -> float:
    """The CPU time of a live thread of this process (``threading.get_ident``), read from any thread."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread))


@dataclass(frozen=True, slots=True)
class Clocks:
    """Where the backlog reads time: the wall, a hashing thread's CPU time, the whole process's."""

    wall: Callable[[], float] = time.monotonic
    thread_cpu: Callable[[int], float] = _thread_cpu
    process_cpu: Callable[[], float] = time.process_time


@dataclass(frozen=True, slots=True)
class HashSample:
    """A finished hash: its CPU time, its wall time, and the worker's CPU time meanwhile (its own too)."""

    cpu: float
    wall: float
    worker_cpu: float

    def share(self) -> float | None:
        """The share of a core the hash got of what this worker left free; None without CPU time to judge."""
        if self.cpu <= 0:
            return None
        others_and_hash = self.wall - (self.worker_cpu - self.cpu)
        return min(self.cpu / max(others_and_hash, self.cpu), 1.0)


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

    def __init__(self, threads: int, first_estimate: float, *, clocks: Clocks = Clocks()) -> None:
        """A backlog of ``threads`` hashing threads whose hash takes ``first_estimate`` CPU seconds.

        The hashes are taken to get a whole core until one finished (:meth:`calibrate`).

        Raises:
            ValueError: ``threads`` is less than 1 or ``first_estimate`` is negative.
        """
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if first_estimate < 0:
            raise ValueError("first_estimate must not be negative")
        self._threads = threads
        self._clocks = clocks
        self._lock = threading.Lock()
        self._cpu_seconds = first_estimate
        self._share = 1.0
        self._pending = 0
        # A running hash's thread: the wall clock, the worker's CPU time and its own when it began.
        self._running: dict[int, tuple[float, float, float]] = {}
        self._refused_since_log = 0
        self._last_log = -math.inf

    @property
    def pending(self) -> int:
        """Hashes promised, queued or running."""
        return self._pending

    def hash_seconds(self) -> float:
        """The wall time one hash is expected to take while this worker leaves its core free."""
        return self._cpu_seconds / self._share

    def share(self) -> float:
        """The share of a core the hashes got of what this worker left free, from those that finished."""
        return self._share

    def stalled_seconds(self) -> float:
        """How much longer others held the core during the oldest running hash than the share predicted.

        The time this worker itself used meanwhile (its event loop taking in calls) is not a stall:
        it ends with the intake. A delay all the hashes behind share.
        """
        with self._lock:
            oldest = min(self._running.values(), default=None)
            if oldest is None:
                return 0.0
            began, worker_cpu_then, _ = oldest
            others = (self._clocks.wall() - began) - (self._clocks.process_cpu() - worker_cpu_then)
            expected = self._cpu_seconds / self._share - self._cpu_seconds
            return max(others - expected, 0.0)

    def held_seconds(self) -> float:
        """The CPU time the rest of this worker (its event loop, gRPC) took during the oldest running hash."""
        with self._lock:
            oldest = min(self._running.items(), key=lambda item: item[1][0], default=None)
            if oldest is None:
                return 0.0
            thread, (_, worker_cpu_then, hash_cpu_then) = oldest
            hashed = self._clocks.thread_cpu(thread) - hash_cpu_then
            return max(self._clocks.process_cpu() - worker_cpu_then - hashed, 0.0)

    def wait_seconds(self, hashes: int) -> float:
        """How long ``hashes`` more would take to be done, behind every hash counted now."""
        rounds = math.ceil((self._pending + hashes) / self._threads)
        return rounds * self.hash_seconds() + self.stalled_seconds()

    @contextlib.contextmanager
    def promise(self, hashes: int, seconds_left: float) -> Iterator[Promise]:
        """Counts a start's ``hashes`` in, or refuses it when they would not be done in its time.

        Within the block the start's own hashes (:meth:`submit` in the same context) draw on the
        promise instead of counting again; whatever it did not use is counted out at the end.

        Raises:
            RateLimited: ``HASH_QUEUE_FULL``, before anything is counted; its ``retry_after`` is
                how long the hashes counted now take to be done.
        """
        # The worker's own hold on the core is the other share's (its calls' work): only what
        # passes it, a loop that stays busy, delays the hashes as a neighbour's would.
        overheld = max(self.held_seconds() - seconds_left * (1 - DEADLINE_SHARE), 0.0)
        wait = self.wait_seconds(hashes) + overheld
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

    def calibrate(self, executor: Executor, work: Callable[[], object]) -> HashSample:
        """Runs ``work`` (a throwaway hash) on ``executor`` and takes its time as the estimate, unsmoothed."""
        _, sample = executor.submit(self._measured, work).result()
        with self._lock:
            self._cpu_seconds = sample.cpu
            self._share = sample.share() or self._share
        return sample

    def _timed(self, work: Callable[[], T]) -> T:
        return self._measured(work)[0]

    def _measured(self, work: Callable[[], T]) -> tuple[T, HashSample]:
        """Runs ``work`` on this (hashing) thread, counted as running, and moves the estimate."""
        thread, clocks = threading.get_ident(), self._clocks
        with self._lock:
            began, cpu_began, worker_began = clocks.wall(), clocks.thread_cpu(thread), clocks.process_cpu()
            self._running[thread] = (began, worker_began, cpu_began)
        try:
            result = work()
        finally:
            with self._lock:
                del self._running[thread]
                sample = HashSample(
                    cpu=clocks.thread_cpu(thread) - cpu_began,
                    wall=clocks.wall() - began,
                    worker_cpu=clocks.process_cpu() - worker_began,
                )
                self._cpu_seconds += _SMOOTHING * (sample.cpu - self._cpu_seconds)
                share = sample.share()
                if share is not None:
                    self._share += _SMOOTHING * (share - self._share)
        return result, sample

    def _count_out(self, hashes: int) -> None:
        with self._lock:
            self._pending -= hashes

    def _refused(self, wait: float, seconds_left: float) -> None:
        """Sums refusals up in a log line at most every few seconds: no request data, only counts."""
        self._refused_since_log += 1
        now = self._clocks.wall()
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

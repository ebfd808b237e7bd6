"""The hash backlog: which starts it lets queue a hash, and how it counts them.

The clocks are the test's own (the wall, the hash's CPU time, the worker's), so that each decision is
one the test sets up (no time is measured);
the hashes are real functions on a real thread pool, held on an event where a test needs one running.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from idverify.domain.errors import RateLimited
from idverify.privacy.hash_backlog import DEADLINE_SHARE, Clocks, HashBacklog, HashSample


class Clock:
    """The wall clock, the hashing thread's CPU time and the worker's (the hash's included)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.hash_cpu = 5.0
        self.worker_cpu = 50.0

    def clocks(self) -> Clocks:
        return Clocks(
            wall=lambda: self.now,
            thread_cpu=lambda _thread: self.hash_cpu,
            process_cpu=lambda: self.worker_cpu,
        )

    def hash_runs(self, seconds: float) -> None:
        """The hash has the core for ``seconds``."""
        self.now += seconds
        self.hash_cpu += seconds
        self.worker_cpu += seconds

    def worker_runs(self, seconds: float) -> None:
        """The worker's event loop has the core (the hash waits)."""
        self.now += seconds
        self.worker_cpu += seconds

    def neighbour_runs(self, seconds: float) -> None:
        """Another process has the core."""
        self.now += seconds


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def refusal(backlog: HashBacklog, hashes: int, seconds_left: float) -> RateLimited:
    with pytest.raises(RateLimited) as refused, backlog.promise(hashes, seconds_left):
        pass
    return refused.value


class TestAStartIsLetInWhileItsHashesFitHalfItsTime:
    def test_promises_fill_the_threads_rounds_up_to_half_the_time_left(self) -> None:
        """Two threads, 1 s a hash, 10 s left: 5 rounds of 2 hashes fit, the 11th hash does not."""
        backlog = HashBacklog(2, 1.0, clocks=Clock().clocks())
        with contextlib.ExitStack() as held:
            for _ in range(10):
                held.enter_context(backlog.promise(1, 10.0))
            assert backlog.pending == 10
            refused = refusal(backlog, 1, 10.0)
            assert refused.reason == "HASH_QUEUE_FULL"
            # The caller is told how long the hashes counted now take: 5 rounds.
            assert refused.retry_after == 5.0
            assert backlog.pending == 10, "a refused start counts nothing"
            # A caller with more time left still fits.
            with backlog.promise(1, 12.0):
                assert backlog.pending == 11
        assert backlog.pending == 0

    def test_a_start_of_two_peppers_needs_room_for_both(self) -> None:
        backlog = HashBacklog(1, 1.0, clocks=Clock().clocks())
        seconds_left = 2 / DEADLINE_SHARE
        with backlog.promise(2, seconds_left):
            assert backlog.pending == 2
        assert refusal(backlog, 3, seconds_left).reason == "HASH_QUEUE_FULL"

    def test_without_time_left_nothing_is_let_in(self) -> None:
        assert refusal(HashBacklog(4, 0.001, clocks=Clock().clocks()), 1, 0.0).reason == "HASH_QUEUE_FULL"

    def test_a_backlog_needs_a_thread_and_a_time(self) -> None:
        with pytest.raises(ValueError, match="threads"):
            HashBacklog(0, 1.0)
        with pytest.raises(ValueError, match="first_estimate"):
            HashBacklog(1, -1.0)


class TestHashesAreCountedOnce:
    def test_a_starts_own_hashes_draw_on_its_promise(self, pool: ThreadPoolExecutor) -> None:
        backlog = HashBacklog(2, 1.0, clocks=Clock().clocks())
        with backlog.promise(2, 100.0) as promised:
            assert backlog.submit(pool, lambda: "a").result() == "a"
            assert promised.left == 1
            assert backlog.pending == 1, "the hash done, its promised one still counted"
        assert backlog.pending == 0, "the hash the start never asked for is counted out"

    def test_hashes_outside_a_start_count_until_done(self, pool: ThreadPoolExecutor) -> None:
        """A CheckIdentity's or a rehash's hash: counted from its submission, not promised."""
        backlog = HashBacklog(1, 1.0, clocks=Clock().clocks())
        release = threading.Event()
        future = backlog.submit(pool, release.wait)
        assert backlog.pending == 1
        release.set()
        future.result()
        assert backlog.pending == 0

    def test_a_hash_cancelled_before_it_ran_is_counted_out(self) -> None:
        backlog = HashBacklog(1, 1.0, clocks=Clock().clocks())
        release = threading.Event()
        with ThreadPoolExecutor(max_workers=1) as single:
            first = backlog.submit(single, release.wait)
            queued = backlog.submit(single, lambda: None)
            assert backlog.pending == 2
            assert queued.cancel()
            assert backlog.pending == 1
            release.set()
            first.result()
        assert backlog.pending == 0

    def test_a_refused_submission_is_counted_out(self) -> None:
        backlog = HashBacklog(1, 1.0, clocks=Clock().clocks())
        closed = ThreadPoolExecutor(max_workers=1)
        closed.shutdown()
        with pytest.raises(RuntimeError):
            backlog.submit(closed, lambda: None)
        assert backlog.pending == 0


class TestTheEstimateFollowsTheHashes:
    def test_a_hash_needing_more_cpu_moves_the_estimate_toward_it(self, pool: ThreadPoolExecutor) -> None:
        clock = Clock()
        backlog = HashBacklog(1, 1.0, clocks=clock.clocks())
        backlog.submit(pool, lambda: clock.hash_runs(3.0)).result()
        assert 1.0 < backlog.hash_seconds() < 3.0
        assert backlog.share() == 1.0

    def test_a_hash_slowed_by_its_own_event_loop_does_not_move_the_estimate(
        self, pool: ThreadPoolExecutor
    ) -> None:
        """The loop took in a burst for 5 s while a 0.1 s hash waited: that ends, a hash costs the same."""
        clock = Clock()
        backlog = HashBacklog(1, 0.1, clocks=clock.clocks())

        def behind_an_intake() -> None:
            clock.worker_runs(5.0)
            clock.hash_runs(0.1)

        backlog.submit(pool, behind_an_intake).result()
        assert backlog.hash_seconds() == pytest.approx(0.1)

    def test_a_neighbour_holding_half_the_core_doubles_a_hash(self, pool: ThreadPoolExecutor) -> None:
        clock = Clock()
        backlog = HashBacklog(1, 0.1, clocks=clock.clocks())

        def shared() -> None:
            for _ in range(10):
                clock.hash_runs(0.01)
                clock.neighbour_runs(0.01)

        for _ in range(30):
            backlog.submit(pool, shared).result()
        assert backlog.share() == pytest.approx(0.5, abs=0.01)
        assert backlog.hash_seconds() == pytest.approx(0.2, abs=0.01)
        # Ten 0.2 s rounds fill half of 4 s: the 11th hash is refused.
        with contextlib.ExitStack() as held:
            for _ in range(10):
                held.enter_context(backlog.promise(1, 4.0))
            assert refusal(backlog, 1, 4.0).reason == "HASH_QUEUE_FULL"

    def test_calibration_takes_its_hash_unsmoothed(self, pool: ThreadPoolExecutor) -> None:
        clock = Clock()
        backlog = HashBacklog(1, 0.0, clocks=clock.clocks())

        def throwaway() -> None:
            clock.hash_runs(0.05)
            clock.neighbour_runs(0.15)

        assert backlog.calibrate(pool, throwaway) == HashSample(
            cpu=pytest.approx(0.05), wall=pytest.approx(0.2), worker_cpu=pytest.approx(0.05)
        )
        assert backlog.hash_seconds() == pytest.approx(0.2)

    def test_a_hash_starved_by_a_neighbour_delays_every_start_behind_it(
        self, pool: ThreadPoolExecutor
    ) -> None:
        """A hash still running 8 s after it began, where one takes 0.1 s (a neighbour holds the core).

        Behind it 50 hashes would fit in half of 10 s; its 7.9 s past due leave room for none.
        """
        clock = Clock()
        backlog = HashBacklog(1, 0.1, clocks=clock.clocks())
        started, release = threading.Event(), threading.Event()

        def stalled() -> None:
            started.set()
            release.wait()

        future = backlog.submit(pool, stalled)
        started.wait()
        with backlog.promise(1, 10.0):
            pass
        clock.neighbour_runs(7.9)
        assert backlog.stalled_seconds() == pytest.approx(7.9)
        assert refusal(backlog, 1, 10.0).reason == "HASH_QUEUE_FULL"
        # Once 2 s past due, the same start fits again: the delay is counted once, not per hash.
        clock.now -= 6.0
        with backlog.promise(1, 10.0):
            assert backlog.pending == 2
        release.set()
        future.result()
        assert backlog.stalled_seconds() == 0.0

    def test_a_hash_waiting_on_its_own_event_loop_is_not_stalled(self, pool: ThreadPoolExecutor) -> None:
        """The loop taking in a burst holds the hash back, but that ends: within its half, starts fit.

        A loop still busy past the other half of the caller's time delays the hashes as a
        neighbour would (it is not taking in a burst that ends, but overloaded).
        """
        clock = Clock()
        backlog = HashBacklog(1, 0.1, clocks=clock.clocks())
        started, release = threading.Event(), threading.Event()

        def waiting() -> None:
            started.set()
            release.wait()

        future = backlog.submit(pool, waiting)
        try:
            started.wait()
            clock.hash_runs(0.05)
            clock.worker_runs(4.0)
            assert backlog.stalled_seconds() == 0.0
            assert backlog.held_seconds() == pytest.approx(4.0)
            with backlog.promise(1, 10.0):
                assert backlog.pending == 2
            # 9.7 s held: 4.7 s past the loop's half of 10 s, plus two 0.1 s hashes, fit 5 s.
            clock.worker_runs(5.7)
            with backlog.promise(1, 10.0):
                pass
            # 9.9 s held: 4.9 s past it, plus two hashes, no longer fit.
            clock.worker_runs(0.2)
            assert refusal(backlog, 1, 10.0).reason == "HASH_QUEUE_FULL"
            # A neighbour's second on top of the expected share is a stall, whatever the loop did.
            clock.neighbour_runs(1.0)
            assert backlog.stalled_seconds() == pytest.approx(1.0)
        finally:
            release.set()
        future.result()

"""The hash backlog: which starts it lets queue a hash, and how it counts them.

The clock is the test's own, so that each decision is one the test sets up (no time is measured);
the hashes are real functions on a real thread pool, held on an event where a test needs one running.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from idverify.domain.errors import RateLimited
from idverify.privacy.hash_backlog import DEADLINE_SHARE, HashBacklog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


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
        backlog = HashBacklog(2, 1.0, clock=Clock())
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
        backlog = HashBacklog(1, 1.0, clock=Clock())
        seconds_left = 2 / DEADLINE_SHARE
        with backlog.promise(2, seconds_left):
            assert backlog.pending == 2
        assert refusal(backlog, 3, seconds_left).reason == "HASH_QUEUE_FULL"

    def test_without_time_left_nothing_is_let_in(self) -> None:
        assert refusal(HashBacklog(4, 0.001, clock=Clock()), 1, 0.0).reason == "HASH_QUEUE_FULL"

    def test_a_backlog_needs_a_thread_and_a_time(self) -> None:
        with pytest.raises(ValueError, match="threads"):
            HashBacklog(0, 1.0)
        with pytest.raises(ValueError, match="first_estimate"):
            HashBacklog(1, -1.0)


class TestHashesAreCountedOnce:
    def test_a_starts_own_hashes_draw_on_its_promise(self, pool: ThreadPoolExecutor) -> None:
        backlog = HashBacklog(2, 1.0, clock=Clock())
        with backlog.promise(2, 100.0) as promised:
            assert backlog.submit(pool, lambda: "a").result() == "a"
            assert promised.left == 1
            assert backlog.pending == 1, "the hash done, its promised one still counted"
        assert backlog.pending == 0, "the hash the start never asked for is counted out"

    def test_hashes_outside_a_start_count_until_done(self, pool: ThreadPoolExecutor) -> None:
        """A CheckIdentity's or a rehash's hash: counted from its submission, not promised."""
        backlog = HashBacklog(1, 1.0, clock=Clock())
        release = threading.Event()
        future = backlog.submit(pool, release.wait)
        assert backlog.pending == 1
        release.set()
        future.result()
        assert backlog.pending == 0

    def test_a_hash_cancelled_before_it_ran_is_counted_out(self) -> None:
        backlog = HashBacklog(1, 1.0, clock=Clock())
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
        backlog = HashBacklog(1, 1.0, clock=Clock())
        closed = ThreadPoolExecutor(max_workers=1)
        closed.shutdown()
        with pytest.raises(RuntimeError):
            backlog.submit(closed, lambda: None)
        assert backlog.pending == 0


class TestTheEstimateFollowsTheHashes:
    def test_a_finished_hash_moves_the_estimate_toward_its_time(self, pool: ThreadPoolExecutor) -> None:
        clock = Clock()
        backlog = HashBacklog(1, 1.0, clock=clock)

        def slow_hash() -> None:
            clock.now += 3.0

        backlog.submit(pool, slow_hash).result()
        assert 1.0 < backlog.hash_seconds() < 3.0

    def test_a_stalled_hash_delays_every_start_behind_it(self, pool: ThreadPoolExecutor) -> None:
        """A hash still running 8 s after it began, where one takes 0.1 s (its thread starved of CPU).

        Behind it 50 hashes would fit in half of 10 s; its 7.9 s past due leave room for none.
        """
        clock = Clock()
        backlog = HashBacklog(1, 0.1, clock=clock)
        started, release = threading.Event(), threading.Event()

        def stalled() -> None:
            started.set()
            release.wait()

        future = backlog.submit(pool, stalled)
        started.wait()
        with backlog.promise(1, 10.0):
            pass
        clock.now += 8.0
        assert backlog.stalled_seconds() == pytest.approx(7.9)
        assert refusal(backlog, 1, 10.0).reason == "HASH_QUEUE_FULL"
        # Once 2 s past due, the same start fits again: the delay is counted once, not per hash.
        clock.now -= 6.0
        with backlog.promise(1, 10.0):
            assert backlog.pending == 2
        release.set()
        future.result()
        assert backlog.stalled_seconds() == 0.0

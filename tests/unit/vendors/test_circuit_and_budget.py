# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The circuit breaker's states and the QPS budget, on a fake clock."""

from __future__ import annotations

import pytest

from idverify.vendors.circuit import CircuitBreaker, CircuitState
from idverify.vendors.qps import QpsBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class TestCircuitBreaker:
    def breaker(self, clock: Clock) -> CircuitBreaker:
        return CircuitBreaker(failure_threshold=3, reset_seconds=10, clock=clock)

    def test_opens_after_the_threshold_of_consecutive_failures(self) -> None:
        """Two failures leave it closed; the third opens it and calls are refused."""
        clock = Clock()
        breaker = self.breaker(clock)
        breaker.record_failure()
        breaker.record_failure()
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state is CircuitState.OPEN
        assert not breaker.allow()

    def test_a_success_resets_the_count(self) -> None:
        """Failures must be consecutive to open the circuit."""
        breaker = self.breaker(Clock())
        for _ in range(2):
            breaker.record_failure()
        breaker.record_success()
        breaker.record_failure()
        breaker.record_failure()
        assert breaker.state is CircuitState.CLOSED

    def test_half_open_lets_one_trial_through(self) -> None:
        """After the reset time one call may try; a second waits for its outcome."""
        clock = Clock()
        breaker = self.breaker(clock)
        for _ in range(3):
            breaker.record_failure()
        clock.now += 10
        assert breaker.state is CircuitState.HALF_OPEN
        assert breaker.allow()
        assert not breaker.allow()

    def test_trial_success_closes(self) -> None:
        """A successful trial closes the circuit."""
        clock = Clock()
        breaker = self.breaker(clock)
        for _ in range(3):
            breaker.record_failure()
        clock.now += 11
        assert breaker.allow()
        breaker.record_success()
        assert breaker.state is CircuitState.CLOSED
        assert breaker.allow()

    def test_trial_failure_reopens_for_another_period(self) -> None:
        """A failed trial opens the circuit again, from now."""
        clock = Clock()
        breaker = self.breaker(clock)
        for _ in range(3):
            breaker.record_failure()
        clock.now += 10
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state is CircuitState.OPEN
        clock.now += 9
        assert not breaker.allow()

    def test_rejects_nonsense_settings(self) -> None:
        """A zero threshold would never close."""
        with pytest.raises(ValueError, match="failure_threshold"):
            CircuitBreaker(failure_threshold=0, reset_seconds=1)


class TestQpsBudget:
    async def test_burst_then_queue_then_refuse(self) -> None:
        """Two tokens go at once, the third waits half a second, the fourth would wait too long."""
        clock = Clock()
        budget = QpsBudget(2, max_wait_seconds=0.6, clock=clock, sleep=clock.sleep)
        assert await budget.acquire()
        assert await budget.acquire()
        assert await budget.acquire()
        assert clock.slept == [pytest.approx(0.5)]
        assert not await QpsBudget(1, max_wait_seconds=0.1, burst=0, clock=clock, sleep=clock.sleep).acquire()

    async def test_tokens_come_back_with_time(self) -> None:
        """After a second the bucket is full again."""
        clock = Clock()
        budget = QpsBudget(1, max_wait_seconds=0, clock=clock, sleep=clock.sleep)
        assert await budget.acquire()
        assert not await budget.acquire()
        clock.now += 1
        assert await budget.acquire()

    async def test_zero_means_unlimited(self) -> None:
        """A budget of 0 calls per second means no limit."""
        budget = QpsBudget(0, max_wait_seconds=0)
        assert all([await budget.acquire() for _ in range(100)])

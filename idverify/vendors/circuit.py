# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""A circuit breaker: stop calling a vendor that keeps failing, and probe it again later.

Closed: calls go through; after ``failure_threshold`` failures in a row it opens. Open: calls
are refused at once (the step answers UNAVAILABLE without waiting for a timeout) until
``reset_seconds`` have passed. Half-open: one trial call goes through; its success closes the
circuit, its failure opens it again. One breaker per vendor per worker process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

__all__ = ["CircuitBreaker", "CircuitState"]


class CircuitState(Enum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures of one vendor and decides whether a call may go out.

    Args:
        failure_threshold: consecutive failures that open the circuit (at least 1).
        reset_seconds: how long it stays open before a trial call is let through.
        clock: monotonic seconds (injectable for tests).

    Raises:
        ValueError: on a threshold below 1 or a negative reset time.

    """

    def __init__(
        self,
        *,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or reset_seconds < 0:
            raise ValueError("failure_threshold >= 1 and reset_seconds >= 0")
        self._threshold = failure_threshold
        self._reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False

    @property
    def state(self) -> CircuitState:
        """The current state (an open circuit whose time is up reads as half-open)."""
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._trial_out or self._clock() - self._opened_at >= self._reset_seconds:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open state, only one at a time may."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN or self._trial_out:
            return False
        self._trial_out = True
        return True

    def record_success(self) -> None:
        """A call got a usable answer: close the circuit."""
        self._failures = 0
        self._opened_at = None
        self._trial_out = False

    def record_failure(self) -> None:
        """A call failed: count it, and open (or re-open) the circuit at the threshold."""
        self._failures += 1
        if self._trial_out or self._failures >= self._threshold:
            self._opened_at = self._clock()
        self._trial_out = False

    def release_trial(self) -> None:
        """A trial call ended without telling anything about the vendor: let another one try."""
        self._trial_out = False

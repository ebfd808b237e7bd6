"""The shared rate limits over in-memory counters: windows, refusals and lock-out audits, no Redis or gRPC.

Each test shows one decision of ``security.rate_limits``: a window off at 0, what a count over its
limit answers (reason, retry time), a principal's lock-out audited once a window, and a counter
checked at its limit. ``tests/unit/flows/test_admission.py`` and ``tests/e2e/test_abuse.py`` run
them over Redis and through the server.
"""

from __future__ import annotations

import pytest

from idverify.domain.errors import RateLimited, StoreUnavailable
from idverify.security.rate_limits import (
    LOCKOUT_AUDIT_WINDOW_SECONDS,
    CounterCheck,
    LockoutAuditor,
    WindowLimiter,
    refuse_at_limit,
)
from idverify.testing.memory_rate_limits import MemoryRateWindows

REQUEST = {"principal": "registrar01", "request_id": "r1", "trace_id": ""}


async def test_a_window_refuses_the_count_over_its_limit_until_it_ends() -> None:
    windows = MemoryRateWindows()
    limiter = WindowLimiter(windows)
    for _ in range(3):
        await limiter.hit("acme", "identity", "p1", limit=3, window_seconds=3600, request=REQUEST)
    windows.advance(600_000)
    with pytest.raises(RateLimited) as refused:
        await limiter.hit("acme", "identity", "p1", limit=3, window_seconds=3600, request=REQUEST)
    assert refused.value.reason == "IDENTITY_RATE_LIMITED"
    assert refused.value.retry_after == 3000.0  # the window's 50 minutes left
    with pytest.raises(RateLimited):  # still refused, and audited once
        await limiter.hit("acme", "identity", "p1", limit=3, window_seconds=3600, request=REQUEST)
    assert windows.audit == [("acme", "identity")]
    await limiter.hit("acme", "identity", "p2", limit=3, window_seconds=3600, request=REQUEST)
    windows.advance(3_000_000)
    await limiter.hit("acme", "identity", "p1", limit=3, window_seconds=3600, request=REQUEST)


async def test_a_window_of_limit_0_is_off_and_counts_nothing() -> None:
    windows = MemoryRateWindows()
    windows.down = True  # not asked at all
    for _ in range(5):
        await WindowLimiter(windows).hit(
            "acme", "identity", "p1", limit=0, window_seconds=3600, request=REQUEST
        )


async def test_a_window_that_cannot_be_counted_fails() -> None:
    windows = MemoryRateWindows()
    windows.down = True
    with pytest.raises(StoreUnavailable):
        await WindowLimiter(windows).hit(
            "acme", "identity", "p1", limit=1, window_seconds=3600, request=REQUEST
        )


async def test_a_lockout_is_audited_once_a_window() -> None:
    windows = MemoryRateWindows()
    lockouts = LockoutAuditor(windows)
    await lockouts.record("acme", "c1", REQUEST)
    await lockouts.record("acme", "c1", REQUEST)
    await lockouts.record("acme", "c2", REQUEST)
    assert windows.audit == [("acme", "principal"), ("acme", "principal")]
    windows.advance(LOCKOUT_AUDIT_WINDOW_SECONDS * 1000)
    await lockouts.record("acme", "c1", REQUEST)
    assert len(windows.audit) == 3


async def test_a_counter_at_its_limit_refuses_with_its_windows_time_left() -> None:
    windows = MemoryRateWindows()
    request = {**REQUEST, "limit": "claim_refusals"}
    windows.bump("acme", "claim_refusals", "tag", 86_400_000)
    refuse_at_limit(
        await windows.check("acme", "claim_refusals", "tag", limit=2, request=request), "claim_refusals"
    )
    windows.bump("acme", "claim_refusals", "tag", 86_400_000)
    with pytest.raises(RateLimited) as refused:
        refuse_at_limit(
            await windows.check("acme", "claim_refusals", "tag", limit=2, request=request), "claim_refusals"
        )
    assert refused.value.reason == "CLAIM_REFUSALS_LIMIT_REACHED"
    assert refused.value.retry_after == 86_400.0
    refuse_at_limit(CounterCheck(limited=False), "claim_refusals")

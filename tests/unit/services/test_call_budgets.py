"""Shares of calls in progress: each class of call is refused only when its own share is used up."""

from __future__ import annotations

import pytest

from idverify.domain.errors import RateLimited
from idverify.services.call_budgets import IN_TRANSIT_MARGIN, CallBudgets, CallLimits

LIMITS = CallLimits(authenticated=3, public_streams_per_connection=2, public_streams=5, health_checks=2)


class TestCallBudgets:
    def test_calls_with_credentials_past_their_share_are_server_busy(self) -> None:
        """The call past max_concurrent_rpcs is refused; one ending makes room for the next."""
        budgets = CallBudgets(LIMITS)
        for _ in range(3):
            budgets.enter_call()
        with pytest.raises(RateLimited) as refused:
            budgets.enter_call()
        assert refused.value.reason == "SERVER_BUSY"
        budgets.leave_call()  # the refused call leaves too, as the interceptor's finally does
        budgets.leave_call()
        budgets.enter_call()
        assert budgets.calls == 3

    def test_shares_do_not_take_from_each_other(self) -> None:
        """Full shares of calls and public streams leave health checks theirs, and the reverse."""
        budgets = CallBudgets(LIMITS)
        for _ in range(3):
            budgets.enter_call()
        for connection in ("a", "a", "b", "b", "c"):
            assert budgets.take_public_stream(connection)
        assert budgets.take_check()
        assert budgets.take_check()
        assert not budgets.take_check()
        budgets.release_check()
        assert budgets.take_check()

    def test_public_streams_are_limited_per_connection_and_per_worker(self) -> None:
        """A connection holds at most its share; all connections together at most the worker's."""
        budgets = CallBudgets(LIMITS)
        assert budgets.take_public_stream("a")
        assert budgets.take_public_stream("a")
        assert not budgets.take_public_stream("a")
        for connection in ("b", "b", "c"):
            assert budgets.take_public_stream(connection)
        assert not budgets.take_public_stream("d")
        budgets.release_public_stream("a")
        assert budgets.take_public_stream("d")
        assert not budgets.take_public_stream("a")
        for connection in ("a", "b", "b", "c", "d"):
            budgets.release_public_stream(connection)
        assert budgets.public_streams == 0
        assert budgets.take_public_stream("a")

    def test_grpc_limit_leaves_every_share_room(self) -> None:
        """The limit of gRPC itself is every share plus the margin, so a share is refused by us first."""
        assert LIMITS.grpc_limit == 3 + 5 + 2 + IN_TRANSIT_MARGIN

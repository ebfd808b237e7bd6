"""Slow senders: connections that open calls and never send their message, or send nothing at all.

gRPC counts a call in its own concurrency limit from its headers, before the interceptor's
shares can (they need the message); 480 such calls once filled a worker's limit and every
other caller was refused. The transport now bounds them per connection and ends them with
the connection's age, and a worker's limit holds every call its connections can open.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idverify.grpc_transport import STREAMS_PER_CONNECTION
from idverify.services.call_budgets import CallLimits
from idverify.testing import ServerProcess
from idverify.v1 import verification_pb2

from .conftest import assert_still_serving
from .slow_http2 import SlowSenders

# Serial: an honest burst must never be refused, and signups must go on beside the slow calls.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]
STATUS = verification_pb2.VerificationStatus
SLOW_PATH = "/idverify.v1.VerificationService/ListMethods"
CONNECTIONS = 8
STREAMS_TRIED = 120  # per connection, more than it may open
IDLE_CONNECTIONS = 4


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_calls_without_their_message_leave_signups_and_health_checks_working(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """800 calls held without a message on 8 connections (one worker), and 4 silent connections.

    The worker's old limit was 480 calls of every kind. Each connection keeps 100 streams and has
    the rest refused; Health/Check and signups answer in time meanwhile; the connection age
    (20 s here) and its grace (the RPC timeout, 5 s) end the held calls, and the handshake
    timeout closes the connections that never sent the HTTP/2 preface.
    """
    config = "[grpc]\nmax_connection_age_seconds = 20\nrpc_timeout_seconds = 5\n"
    with (
        ServerProcess(
            tmp_path_factory.mktemp("slow-senders"), config=config, extra_args=["--workers", "1"]
        ) as server,
        SlowSenders(
            server.target, SLOW_PATH, connections=CONNECTIONS, streams=STREAMS_TRIED, idle=IDLE_CONNECTIONS
        ) as senders,
    ):
        held = CONNECTIONS * STREAMS_PER_CONNECTION
        assert wait_until(lambda: sum(senders.open_per_connection()) <= held, 15), senders.endings()
        open_now = senders.open_per_connection()
        assert sum(open_now) == held, senders.endings()
        assert held > CallLimits().grpc_limit  # the calls that once starved a worker
        assert_still_serving(server, "slow")
        # Still held while the service answered others: nothing here ended them early.
        assert sum(senders.open_per_connection()) == held, senders.endings()
        ended = wait_until(lambda: not any(senders.open_per_connection()), 60)
        endings = senders.endings()
        idle_closed = senders.idle_closed()
    assert ended, endings
    assert endings.get("reset") == CONNECTIONS * (STREAMS_TRIED - STREAMS_PER_CONNECTION), endings
    assert set(endings) <= {"reset", "trailers", "connection closed"}, endings
    assert idle_closed == IDLE_CONNECTIONS


def burst_of_checks(target: str, calls: int) -> Counter[str]:
    """``calls`` Health/Check calls released at once on a fresh channel: how each ended."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        together = threading.Barrier(calls)

        def check(_: int) -> str:
            together.wait()
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=20)
            except grpc.RpcError as error:
                return str(error.code())
            return "ok"

        with ThreadPoolExecutor(max_workers=calls) as pool:
            return Counter(pool.map(check, range(calls)))


def test_an_honest_burst_on_one_channel_is_never_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    """90 calls at once on a fresh channel all answer: gRPC clients do not reliably wait for streams.

    At 32 streams a connection, a fresh channel's burst of 200 calls had up to 79 refused
    (UNAVAILABLE, RST_STREAM REFUSED_STREAM) and one of 64 had 1-2: honest platforms run such bursts.
    """
    with ServerProcess(tmp_path_factory.mktemp("burst"), extra_args=["--workers", "1"]) as server:
        for _ in range(3):
            assert burst_of_checks(server.target, 90) == Counter({"ok": 90})

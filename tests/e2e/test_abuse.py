"""Abuse resistance: identity enumeration, brute force of codes, and floods of no-token streams.

Equal work is shown by counting, not timing: the server's own argon2 histogram (scraped from
its Prometheus endpoint) must grow by exactly one per CheckIdentity, known or unknown.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from idverify.client import Client
from idverify.testing import ServerProcess, free_port
from idverify.v1 import verification_pb2

from .conftest import (
    assert_still_serving,
    embedded_redis,
    person,
    rich_error,
    start,
    submit,
    verify,
    wrong_code,
)

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    port = free_port()
    # Tenant "est" takes sms as establishing names, so that one document's name is established.
    config = (
        f'[telemetry]\nmetrics = "prometheus"\nprometheus_port = {port}\n'
        '\n[tenants.est]\nclaim_assurance = "low"\n'
    )
    # One worker: each worker has its own metrics endpoint (base port + worker index), and the
    # test must see every hash the server computes.
    with ServerProcess(
        tmp_path_factory.mktemp("abuse"), config=config, extra_args=["--workers", "1"]
    ) as server:
        yield server, port


def argon2_count(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    match = re.search(r"^idverify_argon2_duration\w*_count\{?[^}\n]*\}?\s+([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


class TestEnumeration:
    def test_check_identity_costs_one_argon2_and_answers_in_one_shape(
        self, observed: tuple[ServerProcess, int]
    ) -> None:
        """Known account, unknown account, wrong name, wrong number: one hash each, same reply shape."""
        server, port = observed
        alice, stranger = person(), person()
        with server.client() as registrar:
            verify(server, registrar, alice, "enum-acct")
            cases = [
                ("enum-acct", alice.subject()),
                ("enum-acct", alice.subject(name=stranger.name)),
                ("enum-acct", stranger.subject()),
                ("enum-nobody", alice.subject()),
                ("enum-nobody", stranger.subject()),
            ]
            replies = []
            for account, subject in cases:
                before = argon2_count(port)
                reply = registrar.verification.CheckIdentity(
                    verification_pb2.CheckIdentityRequest(account_id=account, subject=subject)
                )
                assert argon2_count(port) - before == 1, account
                replies.append(reply)
        assert [r.match for r in replies] == [True, False, False, False, False]
        sizes = {len(r.SerializeToString()) for r in replies[1:]}
        assert len(sizes) == 1
        assert all(set(r.DESCRIPTOR.fields_by_name) == {"match"} for r in replies)

    def test_a_start_costs_one_argon2_whatever_the_store_holds_of_the_document(
        self, observed: tuple[ServerProcess, int]
    ) -> None:
        """Another name of an established document, a document at its limit, an unknown one: alike."""
        server, port = observed
        established, full, unknown = person(), person(), person()
        with server.client(tenant="est") as registrar:
            verify(server, registrar, established, "enum-est")
            for n in range(5):
                verify(server, registrar, full, f"enum-full-{n}")
            cases = [
                (established, "enum-s1", {"name": unknown.name, "phone_number": person().phone}),
                (full, "enum-s2", {"phone_number": person().phone}),
                (unknown, "enum-s3", {}),
            ]
            shapes = set()
            for identity, account, changes in cases:
                before = argon2_count(port)
                reply = start(registrar, identity, account, **changes)
                assert argon2_count(port) - before == 1, account
                fields = tuple(sorted(d.name for d, _ in reply.ListFields()))
                shapes.add((reply.status, reply.reason_code, reply.next_step, reply.attempts_left, fields))
        assert len(shapes) == 1, shapes


class TestBruteForce:
    def test_code_guessing_is_bounded_across_restarts_of_the_verification(
        self, server: ServerProcess
    ) -> None:
        """Wrong codes are capped per account and phone; starting over does not buy more guesses.

        The lock-out and the refusal to send again are both in the audit log.
        """
        target = person()
        guesses = 0
        locked_id = ""
        with server.client() as registrar:
            for _ in range(4):
                started = start(registrar, target, "brute-acct")
                if started.status == STATUS.Value("VERIFICATION_STATUS_REJECTED"):
                    assert started.reason_code == "OTP_LOCKED"
                    locked_id = started.verification_id
                    break
                code = server.sms_code(started.verification_id)
                while True:
                    answer = submit(registrar, started.verification_id, wrong_code(code))
                    guesses += 1
                    if answer.status != STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT"):
                        break
        assert guesses == 5
        with embedded_redis(server) as store:
            log = [json.loads(entry) for entry in store.hvals("iv1:{t:default}:audit:log")]
        rejected = [entry for entry in log if entry["type"] == "verification.rejected"]
        rejections = {(entry["verification_id"], entry["reason"]) for entry in rejected}
        assert "OTP_ATTEMPTS_EXHAUSTED" in {reason for _, reason in rejections}
        assert locked_id
        assert (locked_id, "OTP_LOCKED") in rejections

    def test_a_principal_hammering_the_service_is_limited(
        self, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """Past its per-minute budget a client gets RESOURCE_EXHAUSTED with PRINCIPAL_RATE_LIMITED.

        The lock-out is audited once, however many refusals and workers saw it.
        """
        config = "[rate_limits]\nper_principal_per_minute = 30\n"
        codes: list[grpc.StatusCode] = []
        reasons: list[str] = []
        with ServerProcess(tmp_path_factory.mktemp("principal"), config=config) as server:
            token = server.token("registrar")
            with Client(server.target, token) as registrar:
                for _ in range(100):
                    try:
                        registrar.verification.ListMethods(verification_pb2.ListMethodsRequest())
                    except grpc.RpcError as error:
                        codes.append(error.code())
                        reasons.append(rich_error(error)[0])
            with embedded_redis(server) as store:
                log = [json.loads(entry) for entry in store.hvals("iv1:{t:default}:audit:log")]
        lockouts = [entry for entry in log if entry["type"] == "rate_limit.hit"]
        assert len(lockouts) == 1, lockouts
        assert lockouts[0]["principal"].startswith("default/registrar/")
        assert lockouts[0]["attributes"] == {"limit": "principal"}
        assert 60 <= len(codes) <= 71
        assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert set(reasons) == {"PRINCIPAL_RATE_LIMITED"}


class StreamFlood:
    """Health/Watch streams held open by another process, as an anonymous attacker would.

    The streams run on grpc.aio in a process of their own: gRPC's asyncio and blocking stacks in
    one process (the test's own calls are blocking) can stall each other. Each channel is its
    own connection (a local subchannel pool), so per-connection and per-worker limits can be
    told apart. ``report()`` counts "open" for each stream that got its first answer and is
    still running, and the status code name of each stream that ended.
    """

    def __init__(self, target: str, *, channels: int, streams_per_channel: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_hold_streams, args=(target, channels, streams_per_channel, child), daemon=True
        )

    def __enter__(self) -> Self:
        self._process.start()
        assert self._pipe.poll(90), "streams still starting"
        assert self._pipe.recv() == "settled"
        return self

    def report(self) -> tuple[Counter[str], Counter[int]]:
        """(outcomes of the streams, streams open per channel) now."""
        self._pipe.send("report")
        outcomes, open_by_channel = self._pipe.recv()
        return Counter(outcomes), Counter(open_by_channel)

    def __exit__(self, *_: object) -> None:
        self._pipe.send("stop")
        self._process.join(30)
        if self._process.is_alive():
            self._process.kill()


def _hold_streams(target: str, channels: int, streams_per_channel: int, pipe: Connection) -> None:
    """The flood process: opens the streams, says when all got an answer, reports until told to stop."""
    asyncio.run(_StreamHolder(target, channels, streams_per_channel).run(pipe))


class _StreamHolder:
    def __init__(self, target: str, channels: int, streams_per_channel: int) -> None:
        self.target = target
        self.channels = channels
        self.streams_per_channel = streams_per_channel
        self.outcomes: Counter[str] = Counter()
        self.open_by_channel: Counter[int] = Counter()

    async def run(self, pipe: Connection) -> None:
        loop = asyncio.get_running_loop()
        channels = [
            grpc.aio.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(self.channels)
        ]
        started: list[asyncio.Future[None]] = []
        tasks = []
        for index, channel in enumerate(channels):
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(self.streams_per_channel):
                first: asyncio.Future[None] = loop.create_future()
                started.append(first)
                tasks.append(asyncio.create_task(self._watch(health, index, first)))
        await asyncio.wait_for(asyncio.gather(*started), 80)
        pipe.send("settled")
        while await loop.run_in_executor(None, pipe.recv) == "report":
            pipe.send((dict(self.outcomes), dict(self.open_by_channel)))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()

    async def _watch(
        self, health: health_pb2_grpc.HealthStub, channel: int, first: asyncio.Future[None]
    ) -> None:
        call = health.Watch(health_pb2.HealthCheckRequest())
        try:
            await call.read()
            self.outcomes["open"] += 1
            self.open_by_channel[channel] += 1
            first.set_result(None)
            while await call.read() is not grpc.aio.EOF:
                pass
            self.outcomes["open"] -= 1
            self.outcomes["OK"] += 1
        except grpc.aio.AioRpcError as error:
            if first.done():
                self.outcomes["open"] -= 1
            else:
                first.set_result(None)
            self.outcomes[error.code().name] += 1


class TestAnonymousStreams:
    def test_a_thousand_watch_streams_leave_signups_and_health_checks_working(
        self, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """1,000 open Health/Watch streams get a small budget of their own; the service serves on.

        One worker, so that every stream lands on it: past 4 streams on a connection and 128 in
        the worker, more are refused with RESOURCE_EXHAUSTED, and signups and Health/Check
        still answer in time.
        """
        with (
            ServerProcess(tmp_path_factory.mktemp("watch-flood"), extra_args=["--workers", "1"]) as server,
            StreamFlood(server.target, channels=100, streams_per_channel=10) as flood,
        ):
            assert_still_serving(server, "flood")
            outcomes, open_by_channel = flood.report()
        busiest_connection = max(open_by_channel.values())
        assert dict(outcomes) == {"open": 128, "RESOURCE_EXHAUSTED": 872}, outcomes
        assert busiest_connection == 4

    def test_a_public_stream_ends_after_its_lifetime(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        """A Health/Watch stream is ended with DEADLINE_EXCEEDED once public_stream_lifetime_seconds pass."""
        config = "[grpc]\npublic_stream_lifetime_seconds = 1\n"
        with (
            ServerProcess(tmp_path_factory.mktemp("lifetime"), config=config) as server,
            grpc.insecure_channel(server.target) as channel,
        ):
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
            began = time.monotonic()
            assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as ended:
                next(stream)
            lasted = time.monotonic() - began
        assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.5 < lasted < 10

    def test_reflection_streams_share_the_connection_budget(
        self, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """With a connection's public streams all in use by Watch, a reflection stream is refused."""
        config = "[grpc]\npublic_streams_per_connection = 2\n"
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with (
            ServerProcess(
                tmp_path_factory.mktemp("reflection"), config=config, extra_args=["--workers", "1"]
            ) as server,
            grpc.insecure_channel(server.target) as channel,
        ):
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            listed = next(reflection.ServerReflectionInfo(iter([request]), timeout=5))
            assert listed.list_services_response.service
            watches = [
                health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
                for _ in range(2)
            ]
            for watch in watches:
                next(watch)
            with pytest.raises(grpc.RpcError) as refused:
                next(reflection.ServerReflectionInfo(iter([request]), timeout=5))
            for watch in watches:
                watch.cancel()
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


class HeldGateway:
    """An SMS gateway on loopback that holds every request until released: calls that stay busy."""

    def __init__(self) -> None:
        self.received = threading.Semaphore(0)
        self.release = threading.Event()
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                held.received.release()
                held.release.wait(20)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.http.shutdown()
        self.http.server_close()

    def wait_for(self, requests: int, calls: list[Future[Any]], timeout: float = 30) -> None:
        """Waits until this many requests are held, failing at once with the error of a call that ended."""
        deadline = time.monotonic() + timeout
        while requests:
            if self.received.acquire(timeout=0.1):
                requests -= 1
                continue
            for call in calls:
                if call.done():
                    raise AssertionError(f"a call ended before reaching the gateway: {call.result()}")
            assert time.monotonic() < deadline, "the calls never reached the gateway"

    def config(self, secret_file: Path) -> str:
        """The [sms] table that sends codes here."""
        url = f"http://127.0.0.1:{self.http.server_address[1]}/send"
        return (
            '[sms]\nsender = "http"\n'
            f'options = {{ url = "{url}", secret_file = "{secret_file}", timeout_seconds = 30 }}\n'
        )


class TestCallShares:
    def test_busy_calls_with_credentials_leave_health_checks_their_share(
        self, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """With max_concurrent_rpcs calls busy, one more is SERVER_BUSY and Health/Check still answers."""
        directory = tmp_path_factory.mktemp("shares")
        secret = directory / "gateway-secret"
        secret.write_text("s" * 40, encoding="utf-8")
        with HeldGateway() as gateway:
            config = "max_concurrent_rpcs = 2\n" + gateway.config(secret)
            with (
                ServerProcess(directory, config=config, extra_args=["--workers", "1"]) as server,
                server.client() as registrar,
                ThreadPoolExecutor(2) as pool,
                grpc.insecure_channel(server.target) as channel,
            ):
                busy = [pool.submit(start, registrar, person(), f"busy-{n}") for n in range(2)]
                gateway.wait_for(2, busy)
                with pytest.raises(grpc.RpcError) as refused:
                    registrar.verification.ListMethods(verification_pb2.ListMethodsRequest())
                answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                gateway.release.set()
                started = [future.result(timeout=30) for future in busy]
                assert registrar.verification.ListMethods(verification_pb2.ListMethodsRequest()).methods
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert rich_error(refused.value)[0] == "SERVER_BUSY"
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert {s.status for s in started} == {STATUS.VERIFICATION_STATUS_CHALLENGE_SENT}

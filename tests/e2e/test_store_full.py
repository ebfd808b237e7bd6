"""A Redis at its memory limit (``maxmemory`` with ``noeviction``) during a signup load.

Redis then refuses every command that could grow its memory, and a script at its first such
write (a script that has written runs to its end, so a step is stored whole or not at all).
What these tests prove: callers get UNAVAILABLE with reason STORE_FULL and a retry delay,
never INTERNAL; the write services' health says NOT_SERVING while the overall health (what
readiness probes ask) stays SERVING for reads; the service recovers by itself once memory is
freed; and no refused step left anything behind: the audit log verifies and every verification
has exactly the audit entries of its state.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import redis
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idverify.testing import ServerProcess
from idverify.v1 import verification_pb2

from .conftest import person, server_on_own_redis, start, submit
from .test_audit import cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
STATUS = verification_pb2.VerificationStatus
# Room for a hundred or so signups above what the warmed-up server holds: the load fills it in
# seconds. Measured after a warm-up, so that what a first signup allocates once (a worker's new
# connections and their buffers, the first read-accounting and event keys) is not what fills it.
HEADROOM_BYTES = 1024 * 1024
WARM_UP_SIGNUPS = 8
VERIFICATION_SERVICE = "idverify.v1.VerificationService"
AUDIT_SERVICE = "idverify.v1.AuditService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    reason: str
    retry_seconds: float | None


@dataclass
class Load:
    started: list[str] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def refusal(error: grpc.RpcError) -> Refusal:
    """The code, ErrorInfo reason and RetryInfo delay of a failed call."""
    reason, retry = "", None
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key != "grpc-status-details-bin":
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                delay = error_details_pb2.RetryInfo()
                detail.Unpack(delay)
                retry = delay.retry_delay.ToMilliseconds() / 1000
    return Refusal(error.code(), reason, retry)


def health(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=2).status


def wait_health(target: str, service: str, wanted: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (status := health(target, service)) != wanted:
        assert time.monotonic() < deadline, f"{service or 'overall'} health still {status} after {within} s"
        time.sleep(0.1)


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[redis.Redis, ServerProcess]]:
    """A server on an external Redis that refuses writes, rather than evicting, when full."""
    with (
        server_on_own_redis(tmp_path, extra_args=["--maxmemory-policy", "noeviction"]) as (store, server),
        redis.Redis.from_url(store.url) as admin,
    ):
        yield admin, server


def signups(server: ServerProcess, load: Load, stop: threading.Event, worker: int) -> None:
    with server.client() as registrar:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                started = start(registrar, person(), f"full-{worker}-{n}")
            except grpc.RpcError as error:
                with load.lock:
                    load.refusals.append(refusal(error))
                time.sleep(0.05)
                continue
            assert started.status == STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT"), started
            with load.lock:
                load.started.append(started.verification_id)


def warm_up(server: ServerProcess, n: int) -> str:
    """One signup before Redis is limited; its verification id."""
    with server.client() as registrar:
        started = start(registrar, person(), f"warm-{n}")
    assert started.status == STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT"), started
    return started.verification_id


class TestStoreFull:
    def test_a_full_redis_refuses_signups_cleanly_and_the_service_recovers(
        self, limited: tuple[redis.Redis, ServerProcess], tmp_path: Path
    ) -> None:
        """Signups until Redis is full: STORE_FULL refusals, write health down, recovery, a whole log."""
        admin, server = limited
        server.token("registrar")  # once, before the workers share it
        load = Load()
        with ThreadPoolExecutor(max_workers=4) as pool:
            warm = list(pool.map(lambda n: warm_up(server, n), range(WARM_UP_SIGNUPS)))
        load.started.extend(warm)
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used + HEADROOM_BYTES)
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=4) as pool:
            workers = [pool.submit(signups, server, load, stop, w) for w in range(4)]
            deadline = time.monotonic() + 90
            while len(load.refusals) < 40 and time.monotonic() < deadline:
                time.sleep(0.2)
            stop.set()
            for worker in workers:
                worker.result()

        assert len(load.started) > WARM_UP_SIGNUPS, "no signup succeeded before Redis was full"
        assert len(load.refusals) >= 40, "Redis never became full"
        unexpected = [
            r
            for r in load.refusals
            if r.code not in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
            or r.reason != "STORE_FULL"
            or not r.retry_seconds
        ]
        assert not unexpected, unexpected[:5]

        # Still full, and firmly: with the load gone, expiring keys could let a write through.
        # The write services say so by name, the overall health and reads do not.
        admin.config_set("maxmemory", 1)
        wait_health(server.target, VERIFICATION_SERVICE, NOT_SERVING, within=5)
        assert health(server.target) == SERVING
        assert health(server.target, AUDIT_SERVICE) == SERVING
        first = load.started[0]
        code = server.sms_code(first)
        with server.client() as registrar:
            read = registrar.verification.GetVerification(
                verification_pb2.GetVerificationRequest(verification_id=first)
            ).verification
            # An answer is taken whole or refused whole: submit.lua's first write (HDEL) is not
            # one Redis refuses, and a script that has written runs to its end.
            answered: int | Refusal
            try:
                answered = submit(registrar, first, code).status
            except grpc.RpcError as error:
                answered = refusal(error)
        assert read.status == STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT")
        assert answered in {
            STATUS.Value("VERIFICATION_STATUS_VERIFIED"),
            Refusal(grpc.StatusCode.UNAVAILABLE, "STORE_FULL", 5.0),
        }

        admin.config_set("maxmemory", 0)
        wait_health(server.target, VERIFICATION_SERVICE, SERVING, within=5)
        with server.client() as registrar:
            if isinstance(answered, Refusal):  # it changed nothing: the same code verifies now
                assert submit(registrar, first, code).status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")
            for n in range(5):
                after = start(registrar, person(), f"after-{n}")
                assert after.status == STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT")
                load.started.append(after.verification_id)

        # One log line for the whole episode in each worker process (at most one a minute).
        lines = server.log_text().count("redis is full")
        assert 1 <= lines <= len(server.server_pids()), server.log_tail()

        assert_stored_whole(admin, load.started, verified=first)
        assert_log_verifies(server, tmp_path)


def assert_stored_whole(admin: redis.Redis, started: list[str], *, verified: str) -> None:
    """Exactly the accepted starts were stored and audited, each with its entries."""
    # A start's consents are admitted (and audited) before its verification commits, and by
    # design a start that fails after that keeps those audit entries and nothing else.
    entries = [json.loads(e) for e in admin.hvals("iv1:{t:default}:audit:log")]
    audited: dict[str, set[str]] = {}
    for entry in entries:
        if entry.get("verification_id"):
            audited.setdefault(entry["verification_id"], set()).add(entry["type"])
    for verification_id in started:
        assert {"consent.granted", "verification.started", "challenge.sent"} <= audited[verification_id]
    assert {"verification.verified", "account.bound"} <= audited[verified], audited[verified]
    refused_after_admission = {v: t for v, t in audited.items() if v not in started}
    assert all(types == {"consent.granted"} for types in refused_after_admission.values())
    stored = {key.decode().rsplit(":", 1)[1] for key in admin.scan_iter("iv1:{t:default}:vf:*")}
    assert stored == set(started)


def assert_log_verifies(server: ServerProcess, directory: Path) -> None:
    """The audit log, exported through the CLI, verifies offline against the server's key."""
    token = server.token("auditor")
    out = directory / "audit.jsonl"
    done = cli("--server", server.target, "--token", token, "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    key = cli("--server", server.target, "--token", token, "public-key")
    assert key.returncode == 0, key.stderr
    (directory / "log.pub").write_text(key.stdout)
    verified = cli("verify", str(out), "--public-key", str(directory / "log.pub"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("OK:")

"""Faults under load: Redis killed mid-signup, and races on one challenge.

Durability mode documented as safe: AOF with ``appendfsync always``. A ``kill -9`` of Redis does
not test fsync (the page cache survives the process), so what these tests prove is that no
*acknowledged* verification, binding or audit entry is lost across a crash and restart, that
calls fail fast meanwhile, and that the service recovers by itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idverify.testing import RedisProcess, ServerProcess
from idverify.v1 import account_pb2, verification_pb2

from .conftest import person, server_on_own_redis, start, submit

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
STATUS = verification_pb2.VerificationStatus


def serving(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[tuple[RedisProcess, ServerProcess]]:
    with server_on_own_redis(tmp_path, appendfsync="always") as deployment:
        yield deployment


class TestRedisCrash:
    def test_kill_9_loses_no_acknowledged_verification(
        self, durable: tuple[RedisProcess, ServerProcess]
    ) -> None:
        """Signups under load while Redis is SIGKILLed and restarted: every acknowledged one survives."""
        store, server = durable
        acknowledged: list[tuple[str, str]] = []
        outage_failures: list[tuple[grpc.StatusCode, float]] = []
        stop = threading.Event()
        down = threading.Event()

        def signups(worker: int) -> None:
            with server.client() as registrar:
                n = 0
                while not stop.is_set():
                    n += 1
                    account = f"crash-{worker}-{n}"
                    began = time.monotonic()
                    try:
                        started = start(registrar, person(), account)
                        answer = submit(
                            registrar, started.verification_id, server.sms_code(started.verification_id)
                        )
                    except (grpc.RpcError, LookupError) as error:
                        if down.is_set() and isinstance(error, grpc.RpcError):
                            outage_failures.append((error.code(), time.monotonic() - began))
                        time.sleep(0.05)
                        continue
                    if answer.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED"):
                        acknowledged.append((account, started.verification_id))

        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(signups, w) for w in range(6)]
            time.sleep(3)
            store.stop(hard=True)
            down.set()
            time.sleep(2)
            store.start()
            began = time.monotonic()
            while not serving(server.target):
                assert time.monotonic() - began < 5, "not serving 5 s after Redis came back"
                time.sleep(0.1)
            recovered_after = time.monotonic() - began
            down.clear()
            time.sleep(2)
            stop.set()
            for future in futures:
                future.result()

        assert len(acknowledged) > 20
        assert outage_failures, "no call was made while Redis was down"
        assert {code for code, _ in outage_failures} <= {grpc.StatusCode.UNAVAILABLE}
        assert max(seconds for _, seconds in outage_failures) < 10
        assert recovered_after < 5
        assert_survived(store, server, acknowledged)


def assert_survived(store: RedisProcess, server: ServerProcess, acknowledged: list[tuple[str, str]]) -> None:
    """Every acknowledged signup is bound, VERIFIED, and has its audit entry."""
    with redis.Redis.from_url(store.url) as store_client:
        log = [json.loads(entry) for entry in store_client.hvals("iv1:{t:default}:audit:log")]
    verified_in_log = {e.get("verification_id") for e in log if e.get("type") == "verification.verified"}
    with server.client("platform") as platform, server.client() as registrar:
        for account, verification_id in acknowledged:
            bound = platform.account.GetAccount(account_pb2.GetAccountRequest(account_id=account)).account
            assert bound.verified, account
            state = registrar.verification.GetVerification(
                verification_pb2.GetVerificationRequest(verification_id=verification_id)
            ).verification
            assert state.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")
            assert verification_id in verified_in_log


class TestChallengeRaces:
    def test_only_one_of_many_right_answers_wins(self, server: ServerProcess) -> None:
        """Twenty concurrent submissions of the right code: one VERIFIED, the rest FAILED_PRECONDITION."""
        with server.client() as client:
            started = start(client, person(), "race-right")
            code = server.sms_code(started.verification_id)

            def answer(_: int) -> str:
                try:
                    return STATUS.Name(submit(client, started.verification_id, code).status)
                except grpc.RpcError as error:
                    return error.code().name

            with ThreadPoolExecutor(max_workers=20) as pool:
                outcomes = list(pool.map(answer, range(20)))
        assert outcomes.count("VERIFICATION_STATUS_VERIFIED") == 1
        assert outcomes.count("FAILED_PRECONDITION") == 19

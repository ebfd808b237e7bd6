"""Abuse resistance: identity enumeration through CheckIdentity, and brute force of codes.

Equal work is shown by counting, not timing: the server's own argon2 histogram (scraped from
its Prometheus endpoint) must grow by exactly one per CheckIdentity, known or unknown.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator

import grpc
import pytest

from idverify.client import Client
from idverify.testing import ServerProcess, free_port
from idverify.v1 import verification_pb2

from .conftest import embedded_redis, person, rich_error, start, submit, verify, wrong_code

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    port = free_port()
    config = f'[telemetry]\nmetrics = "prometheus"\nprometheus_port = {port}\n'
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

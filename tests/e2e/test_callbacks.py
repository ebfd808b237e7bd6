# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Vendor callbacks end to end: the Cloudauth fake calls the server's callback URL after the face step.

A genuine callback finishes the verification without the caller, who learns it by watching; the
verdict is always fetched from the vendor, never read from the callback. Hostile callers: a
forged token, another tenant's or an unknown verification, a replay, a callback that lies about
the result, a flood from one address, an oversized body, and a vendor down when asked.
"""

from __future__ import annotations

import itertools
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from idverify.client import Client
from idverify.domain.consent import text_version_of
from idverify.testing import ServerProcess, free_port
from idverify.v1 import events_pb2, verification_pb2
from idverify.vendors.fakes import Drop, FakeAlibaba

from .conftest import Identity, embedded_redis, everything_stored, needles_of, person, submit
from .test_console import PRODUCTION_SMS
from .test_tls import Authority, credentials, pki, tls_config

__all__ = ["pki"]  # the TLS tests' fixture, used here too

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
CHALLENGE_SENT = STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT")
VERIFIED = STATUS.Value("VERIFICATION_STATUS_VERIFIED")
REJECTED = STATUS.Value("VERIFICATION_STATUS_REJECTED")
BIOMETRIC_TEXT = {"identity": text_version_of("id-e2e"), "biometric": text_version_of("bio-e2e")}
PER_SOURCE = 40
STREAM_TIMEOUT = 20.0
_requests = itertools.count(1)

CONFIG = """
[callbacks]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}/vendor"
per_source_per_minute = {per_source}

[vendors.alibaba]
kind = "alibaba"
endpoint = "{url}"
secret_id_env = "E2E_ALI_ID"
secret_key_env = "E2E_ALI_KEY"
liveness_scene_id = 1000000006
timeout_seconds = 2
connect_timeout_seconds = 1
backoff_seconds = 0
max_retries = 0
breaker_failures = 50

[verifiers.face_liveness]
vendor = "alibaba"

[tenants.default.methods.sms]
assurance = "substantial"
steps = ["document", "sms_otp"]

[tenants.default.methods.face]
assurance = "high"
steps = ["document", "face_liveness"]
"""


@pytest.fixture(scope="module")
def cloudauth() -> Iterator[FakeAlibaba]:
    with FakeAlibaba() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cloudauth: FakeAlibaba) -> Iterator[ServerProcess]:
    port = free_port()
    config = CONFIG.format(port=port, url=cloudauth.url, per_source=PER_SOURCE)
    env = {"E2E_ALI_ID": cloudauth.key_id, "E2E_ALI_KEY": cloudauth.secret}
    # One worker: the per-source limit is per worker, and the flood test counts on one share.
    directory = tmp_path_factory.mktemp("callbacks")
    with ServerProcess(directory, config=config, env=env, extra_args=["--workers", "1"]) as running:
        running.callback_port = port  # type: ignore[attr-defined]
        yield running


@pytest.fixture(scope="module")
def registrar(server: ServerProcess) -> Iterator[Client]:
    with server.client("registrar") as client:
        yield client


def _face(client: Client, identity: Identity | None = None) -> verification_pb2.Verification:
    n = next(_requests)
    request = verification_pb2.StartVerificationRequest(
        request_id=f"cb-{n}",
        account_id=f"acct-cb-{n}",
        method_id="face",
        subject=(identity or person()).subject(phone_number=""),
        consents=["identity", "biometric"],
        consent_text_versions=BIOMETRIC_TEXT,
        challenge_client=verification_pb2.ChallengeClient(meta_info='{"zimVer":"3.0.0"}'),
    )
    started = client.verification.StartVerification(request).verification
    assert started.status == CHALLENGE_SENT, started
    assert started.next_step == "vendor_challenge"
    return started


def _status(client: Client, verification_id: str) -> int:
    got = client.verification.GetVerification(
        verification_pb2.GetVerificationRequest(verification_id=verification_id)
    )
    return int(got.verification.status)


def _describes(cloudauth: FakeAlibaba) -> int:
    return cloudauth.actions().count("DescribeFaceVerify")


def _get(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as answer:  # noqa: S310 - a test URL
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


class TestGenuine:
    def test_the_vendor_is_given_our_url_and_a_token_of_this_verification(
        self, server: ServerProcess, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        started = _face(registrar)
        url, token = cloudauth.callbacks[started.challenge_token]
        port = server.callback_port  # type: ignore[attr-defined]
        assert url == f"http://127.0.0.1:{port}/vendor/alibaba/default/{started.verification_id}"
        assert len(token) == 43
        other = _face(registrar)
        assert cloudauth.callbacks[other.challenge_token][1] != token

    def test_a_watcher_sees_verified_without_the_caller_submitting(
        self, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        started = _face(registrar)
        watch = registrar.verification.WatchVerification(
            verification_pb2.WatchVerificationRequest(verification_id=started.verification_id),
            timeout=STREAM_TIMEOUT,
        )
        answered: list[int | None] = []

        def user_finishes() -> None:
            time.sleep(0.5)
            answered.append(cloudauth.complete_liveness(started.challenge_token, passed=True, call_back=True))

        threading.Thread(target=user_finishes, daemon=True).start()
        seen = [reply.verification.status for reply in watch]
        assert seen == [CHALLENGE_SENT, VERIFIED]
        assert answered == [200]

    def test_a_failed_verdict_fetched_rejects_whatever_the_callback_says(
        self, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        """The callback claims passed=T; the vendor, asked, says the face did not match."""
        started = _face(registrar)
        cloudauth.complete_liveness(started.challenge_token, passed=False, sub_code="205")
        before = _describes(cloudauth)
        assert cloudauth.call_back(started.challenge_token, passed="T", subcode="200") == 200
        assert _describes(cloudauth) == before + 1
        done = registrar.verification.GetVerification(
            verification_pb2.GetVerificationRequest(verification_id=started.verification_id)
        ).verification
        assert done.status == REJECTED, done

    def test_a_callback_before_the_user_is_done_changes_nothing(
        self, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        """A lying early callback (passed=T while the flow is open): the vendor says not yet."""
        started = _face(registrar)
        assert cloudauth.call_back(started.challenge_token, passed="T", subcode="200") == 202
        assert _status(registrar, started.verification_id) == CHALLENGE_SENT
        cloudauth.complete_liveness(started.challenge_token, passed=True)
        assert submit(registrar, started.verification_id, "").status == VERIFIED


class TestHostile:
    def test_a_forged_token_has_no_effect_and_costs_no_vendor_call(
        self, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        started = _face(registrar)
        cloudauth.complete_liveness(started.challenge_token, passed=True)
        before = _describes(cloudauth)
        for forged in ("A" * 43, "", "x"):
            status = cloudauth.call_back(started.challenge_token, callbackToken=forged)
            assert status in {400, 403}, forged
        assert _describes(cloudauth) == before
        assert _status(registrar, started.verification_id) == CHALLENGE_SENT

    def test_another_verifications_token_or_flow_does_not_finish_this_one(
        self, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        """A user holding their own genuine callback tries it on someone else's verification."""
        mine, theirs = _face(registrar), _face(registrar)
        cloudauth.complete_liveness(theirs.challenge_token, passed=True)
        my_url, my_token = cloudauth.callbacks[mine.challenge_token]
        their_url = my_url.replace(mine.verification_id, theirs.verification_id)
        # My token on their URL: the token is an HMAC of the verification id.
        assert _get(f"{their_url}?certifyId={theirs.challenge_token}&callbackToken={my_token}") == 403
        # My URL and token with their flow's certifyId: not the flow recorded for mine.
        assert _get(f"{my_url}?certifyId={theirs.challenge_token}&callbackToken={my_token}") == 403
        assert _status(registrar, mine.verification_id) == CHALLENGE_SENT
        assert _status(registrar, theirs.verification_id) == CHALLENGE_SENT

    def test_another_tenants_verification_is_out_of_reach(
        self, server: ServerProcess, cloudauth: FakeAlibaba
    ) -> None:
        with server.client("registrar", tenant="other") as other:
            theirs = _face(other)
        url, token = cloudauth.callbacks[theirs.challenge_token]
        assert "/alibaba/other/" in url
        cloudauth.complete_liveness(theirs.challenge_token, passed=True)
        # Their genuine token under the default tenant's path: the token is bound to the tenant.
        moved = url.replace("/alibaba/other/", "/alibaba/default/")
        assert _get(f"{moved}?certifyId={theirs.challenge_token}&callbackToken={token}") == 403
        with server.client("registrar", tenant="other") as other:
            assert _status(other, theirs.verification_id) == CHALLENGE_SENT
        # Their own genuine callback finishes theirs, in their tenant only.
        assert cloudauth.call_back(theirs.challenge_token) == 200
        with server.client("registrar", tenant="other") as other:
            assert _status(other, theirs.verification_id) == VERIFIED

    def test_unknown_and_malformed_callbacks_answer_without_effect(
        self, server: ServerProcess, cloudauth: FakeAlibaba
    ) -> None:
        base = f"http://127.0.0.1:{server.callback_port}/vendor/alibaba/default"  # type: ignore[attr-defined]
        before = _describes(cloudauth)
        assert _get(f"{base}/{'0' * 32}?certifyId=abc&callbackToken={'A' * 43}") == 403
        assert _get(f"{base}/not-an-id?certifyId=abc&callbackToken=abc") == 400
        assert _get(f"{base}/{'0' * 32}") == 400
        assert _get(f"http://127.0.0.1:{server.callback_port}/vendor/tencent/default/{'0' * 32}") == 404  # type: ignore[attr-defined]
        assert _describes(cloudauth) == before

    def test_a_replay_finishes_once(self, registrar: Client, cloudauth: FakeAlibaba) -> None:
        started = _face(registrar)
        assert cloudauth.complete_liveness(started.challenge_token, passed=True, call_back=True) == 200
        asked = _describes(cloudauth)
        for _ in range(3):
            assert cloudauth.call_back(started.challenge_token) == 200
        # A final verification is not asked about again, and has exactly one VERIFIED.
        assert _describes(cloudauth) == asked
        assert _status(registrar, started.verification_id) == VERIFIED
        watch = registrar.verification.WatchVerification(
            verification_pb2.WatchVerificationRequest(verification_id=started.verification_id),
            timeout=STREAM_TIMEOUT,
        )
        assert [reply.verification.status for reply in watch] == [VERIFIED]

    def test_a_vendor_down_leaves_it_pending_and_submit_still_works(
        self, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        started = _face(registrar)
        cloudauth.complete_liveness(started.challenge_token, passed=True)
        cloudauth.plan(Drop())
        assert cloudauth.call_back(started.challenge_token) == 503
        assert _status(registrar, started.verification_id) == CHALLENGE_SENT
        assert submit(registrar, started.verification_id, "").status == VERIFIED

    def test_an_oversized_body_is_refused(self, registrar: Client, cloudauth: FakeAlibaba) -> None:
        started = _face(registrar)
        cloudauth.complete_liveness(started.challenge_token, passed=True)
        url, token = cloudauth.callbacks[started.challenge_token]
        query = f"?certifyId={started.challenge_token}&callbackToken={token}"
        assert _get(url + query, data=b"x" * 100_000) == 413
        assert _status(registrar, started.verification_id) == CHALLENGE_SENT

    def test_a_redis_dump_holds_no_callback_token(
        self, server: ServerProcess, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        """A thief with the store cannot call back: the token is computed, never stored."""
        started = _face(registrar)
        _, token = cloudauth.callbacks[started.challenge_token]
        stored = b"\n".join(everything_stored(embedded_redis(server)))
        assert token.encode() not in stored
        assert started.verification_id.encode() in stored  # the scan does see the verification

    def test_a_callback_racing_submit_finishes_once(self, registrar: Client, cloudauth: FakeAlibaba) -> None:
        started = _face(registrar)
        cloudauth.complete_liveness(started.challenge_token, passed=True)
        answers: list[object] = []

        def by_callback() -> None:
            answers.append(cloudauth.call_back(started.challenge_token))

        def by_submit() -> None:
            try:
                answers.append(submit(registrar, started.verification_id, "").status)
            except grpc.RpcError as refused:
                answers.append(refused.code())

        threads = [threading.Thread(target=by_callback), threading.Thread(target=by_submit)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert _status(registrar, started.verification_id) == VERIFIED
        assert 200 in answers  # the callback: finished, or already final
        assert VERIFIED in answers or grpc.StatusCode.FAILED_PRECONDITION in answers
        request = events_pb2.StreamEventsRequest(types=["verification.verified"], until_caught_up=True)
        verified = [
            reply.event
            for reply in registrar.events.StreamEvents(request, timeout=STREAM_TIMEOUT)
            if reply.event.verification_id == started.verification_id
        ]
        assert len(verified) == 1

    def test_no_identity_in_the_server_log(self, server: ServerProcess) -> None:
        from .conftest import IDENTITIES  # noqa: PLC0415 - every person this run made

        log = server.log_text().encode()
        assert b"vendor callback" in log
        for identity in IDENTITIES:
            for needle in needles_of(identity):
                assert needle not in log

    def test_a_flood_from_one_address_is_cut_off(self, server: ServerProcess) -> None:
        """Last in the module: it spends this address's share (per_source_per_minute)."""
        url = f"http://127.0.0.1:{server.callback_port}/vendor/alibaba/default/{'0' * 32}"  # type: ignore[attr-defined]
        answers = [_get(f"{url}?certifyId=abc&callbackToken={'A' * 43}") for _ in range(PER_SOURCE + 5)]
        assert 429 in answers
        assert answers.count(403) <= PER_SOURCE


def test_https_with_the_grpc_certificate_and_no_client_certificate_asked(
    pki: tuple[Authority, Path], tmp_path: Path
) -> None:
    """Production with mutual TLS on gRPC: the endpoint is HTTPS and asks Alibaba for no certificate."""
    ca, directory = pki
    port = free_port()
    config = (
        PRODUCTION_SMS
        + tls_config(directory, mutual=True)
        + f'[callbacks]\nlisten = "127.0.0.1:{port}"\npublic_url = "https://idv.example/cb"\n'
    )
    server = ServerProcess(
        tmp_path,
        config=config,
        credentials=credentials(ca, directory, "registrar-client"),
        development=False,
        env={"SMS_SECRET": "s" * 32},
        extra_args=["--workers", "1"],
    )
    with server:
        url = f"https://localhost:{port}/cb/alibaba/default/{'0' * 32}?certifyId=a&callbackToken={'A' * 43}"
        context = ssl.create_default_context(cadata=ca.pem.decode())
        try:
            with urllib.request.urlopen(url, timeout=10, context=context) as answer:
                status = int(answer.status)
        except urllib.error.HTTPError as refused:
            status = refused.code
        assert status == 403
        with pytest.raises(ConnectionError):  # plain HTTP to the TLS port: the connection is dropped
            urllib.request.urlopen(f"http://127.0.0.1:{port}/cb/alibaba/default/{'0' * 32}", timeout=10)


def test_production_refuses_a_plain_http_public_url(tmp_path: Path) -> None:
    config = (
        PRODUCTION_SMS
        + f'[callbacks]\nlisten = "127.0.0.1:{free_port()}"\npublic_url = "http://idv.example"\n'
    )
    server = ServerProcess(tmp_path, config=config, development=False, env={"SMS_SECRET": "s" * 32})
    with pytest.raises(RuntimeError, match=r"callbacks\.public_url"):
        server.start()
    server.stop()

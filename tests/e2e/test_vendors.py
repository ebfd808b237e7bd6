# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Vendor-backed methods end to end: `idverify serve` against the local fake FaceID."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from idverify.client import Client
from idverify.domain.consent import text_version_of
from idverify.testing import ServerProcess
from idverify.v1 import verification_pb2
from idverify.vendors.fakes import Drop, FakeTencent

from .conftest import embedded_redis, start, submit
from .faceid import faceid_server, known

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
BIOMETRIC_TEXT = {"identity": text_version_of("id-e2e"), "biometric": text_version_of("bio-e2e")}

CONFIG = """
[verifiers.authority]
vendor = "tencent"

[verifiers.carrier_3factor]
vendor = "tencent"

[verifiers.face_liveness]
vendor = "tencent"

[tenants.default.methods.sms]
assurance = "substantial"
steps = ["document", "sms_otp"]

[tenants.default.methods.authority]
assurance = "substantial"
steps = ["document", "authority"]

[tenants.default.methods.carrier]
assurance = "substantial"
steps = ["document", "carrier_3factor", "sms_otp"]

[tenants.default.methods.face]
assurance = "high"
steps = ["document", "face_liveness"]

[tenants.default.methods.org_document]
subject_kinds = ["organization"]
steps = ["document"]
"""


@pytest.fixture(scope="module")
def vendor_server(tmp_path_factory: pytest.TempPathFactory, faceid: FakeTencent) -> Iterator[ServerProcess]:
    with faceid_server(tmp_path_factory.mktemp("vendors"), faceid, CONFIG) as server:
        yield server


@pytest.fixture(scope="module")
def client(vendor_server: ServerProcess) -> Iterator[Client]:
    with vendor_server.client("registrar") as registrar:
        yield registrar


class TestAuthority:
    def test_a_match_verifies_and_binds(self, client: Client, faceid: FakeTencent) -> None:
        """Document + authority against FaceID: both steps pass and the account is bound."""
        identity = known(faceid)
        verification = start(client, identity, "acct-auth-1", method="authority", consents=("identity",))
        assert verification.status == STATUS.VERIFICATION_STATUS_VERIFIED, verification
        assert faceid.actions()[-1] == "IdCardVerification"
        assert faceid.all_signatures_ok

    def test_a_mismatch_is_rejected_with_fallbacks(self, client: Client, faceid: FakeTencent) -> None:
        """A wrong name: REJECTED / AUTHORITY_MISMATCH, other non-biometric methods offered."""
        identity = known(faceid)
        verification = start(
            client, identity, "acct-auth-2", method="authority", consents=("identity",), name="王小二"
        )
        assert verification.status == STATUS.VERIFICATION_STATUS_REJECTED
        assert verification.reason_code == "AUTHORITY_MISMATCH"
        assert sorted(verification.fallback_method_ids) == ["carrier", "sms"]

    def test_vendor_down_offers_only_methods_without_that_vendor(
        self, client: Client, faceid: FakeTencent
    ) -> None:
        """FaceID drops the connection: REJECTED / VENDOR_UNAVAILABLE, and only sms is offered."""
        identity = known(faceid)
        faceid.plan(Drop())
        verification = start(client, identity, "acct-auth-3", method="authority", consents=("identity",))
        assert verification.status == STATUS.VERIFICATION_STATUS_REJECTED
        assert verification.reason_code == "VENDOR_UNAVAILABLE"
        assert list(verification.fallback_method_ids) == ["sms"]

    def test_the_vendor_code_is_kept_with_the_step(
        self, vendor_server: ServerProcess, client: Client, faceid: FakeTencent
    ) -> None:
        """The verification's step record carries FaceID's result code, and no identity."""
        identity = known(faceid)
        verification = start(
            client, identity, "acct-auth-4", method="authority", consents=("identity",), name="王小三"
        )
        redis = embedded_redis(vendor_server)
        records = [
            redis.hget(key, "steps")
            for key in redis.scan_iter(match=f"*{verification.verification_id}*")
            if redis.type(key) == b"hash"
        ]
        steps = json.loads(next(r for r in records if r))
        assert {
            "verifier": "authority",
            "outcome": "fail",
            "reason": "AUTHORITY_MISMATCH",
            "vendor_code": "-1",
        } in steps


class TestFaceLiveness:
    def test_vendor_run_challenge(self, client: Client, faceid: FakeTencent) -> None:
        """Start gives the vendor page and token; an empty submit waits, then verifies once passed."""
        identity = known(faceid)
        request = verification_pb2.StartVerificationRequest(
            request_id="face-1",
            account_id="acct-face-1",
            method_id="face",
            subject=identity.subject(phone_number=""),
            consents=["identity", "biometric"],
            consent_text_versions=BIOMETRIC_TEXT,
            challenge_client=verification_pb2.ChallengeClient(return_url="https://app.example/back"),
        )
        started = client.verification.StartVerification(request).verification
        assert started.status == STATUS.VERIFICATION_STATUS_CHALLENGE_SENT, started
        assert started.next_step == "vendor_challenge"
        assert started.challenge_url.startswith("https://")
        assert started.challenge_token
        waiting = submit(client, started.verification_id, "")
        assert waiting.status == STATUS.VERIFICATION_STATUS_CHALLENGE_SENT
        faceid.complete_liveness(started.challenge_token, passed=True)
        done = submit(client, started.verification_id, "")
        assert done.status == STATUS.VERIFICATION_STATUS_VERIFIED, done
        assert not done.challenge_url

    def test_failed_liveness_is_final(self, client: Client, faceid: FakeTencent) -> None:
        """A failed flow rejects the verification with the vendor's reason."""
        identity = known(faceid)
        request = verification_pb2.StartVerificationRequest(
            request_id="face-2",
            account_id="acct-face-2",
            method_id="face",
            subject=identity.subject(phone_number=""),
            consents=["identity", "biometric"],
            consent_text_versions=BIOMETRIC_TEXT,
        )
        started = client.verification.StartVerification(request).verification
        faceid.complete_liveness(started.challenge_token, passed=False, live=False)
        done = submit(client, started.verification_id, "")
        assert (done.status, done.reason_code) == (STATUS.VERIFICATION_STATUS_REJECTED, "LIVENESS_FAILED")
        assert sorted(done.fallback_method_ids) == ["authority", "carrier", "sms"]


def test_no_identity_in_the_server_log(vendor_server: ServerProcess, faceid: FakeTencent) -> None:
    """After every vendor call above, the log holds neither names nor ID numbers."""
    log = vendor_server.log_text()
    for known_person in faceid.people.values():
        assert known_person.name not in log
        assert known_person.id_number not in log

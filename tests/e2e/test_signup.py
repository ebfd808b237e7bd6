"""The signup flow end to end against `idverify serve` on its embedded default."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from idverify.client import Client
from idverify.domain.consent import text_version_of
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, common_pb2, consent_pb2, verification_pb2

from .conftest import (
    IDENTITIES,
    embedded_redis,
    everything_stored,
    needles_of,
    person,
    rich_error,
    start,
    submit,
    text_versions,
    verify,
    wrong_code,
)

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus


class TestMethods:
    def test_list_methods_offers_a_non_biometric_method_with_its_fields(self, registrar: Client) -> None:
        """ListMethods describes the default document + SMS method: not biometric, and LOW.

        A checksum and a code to any phone prove neither the name nor the document.
        """
        methods = registrar.verification.ListMethods(verification_pb2.ListMethodsRequest()).methods
        assert any(not m.biometric for m in methods)
        sms = next(m for m in methods if m.id == "sms")
        assert list(sms.steps) == ["document", "sms_otp"]
        assert set(sms.required_fields) == {"name", "document_type", "document_number", "phone_number"}
        assert sms.assurance == common_pb2.ASSURANCE_LEVEL_LOW

    def test_organizations_get_their_own_methods(self, registrar: Client) -> None:
        """Organization subjects are offered the social-credit-code method only."""
        methods = registrar.verification.ListMethods(
            verification_pb2.ListMethodsRequest(subject_kind=common_pb2.SUBJECT_KIND_ORGANIZATION)
        ).methods
        assert [m.id for m in methods] == ["org_document"]


class TestHappyPath:
    def test_code_verifies_and_binds_the_account(self, server: ServerProcess, registrar: Client) -> None:
        """Start sends a code to the masked phone; the right code verifies and binds."""
        alice = person()
        started = start(registrar, alice, "acct-happy")
        assert started.status == STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT")
        assert started.masked_phone == f"{alice.phone[:3]}****{alice.phone[-4:]}"
        assert started.attempts_left == 5
        assert started.next_step == "submit_challenge"
        done = submit(registrar, started.verification_id, server.sms_code(started.verification_id))
        assert done.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")
        again = registrar.verification.GetVerification(
            verification_pb2.GetVerificationRequest(verification_id=started.verification_id)
        ).verification
        assert again.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")
        assert again.account_id == "acct-happy"
        with server.client("platform") as platform:
            account = platform.account.GetAccount(
                account_pb2.GetAccountRequest(account_id="acct-happy")
            ).account
        assert account.verified
        assert account.method_id == "sms"
        assert account.age_band == account_pb2.AGE_BAND_ADULT

    def test_check_identity_answers_match_only_for_the_bound_claim(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """CheckIdentity is true for the bound name + number and false for anything else."""
        bob = person()
        other = person()
        verify(server, registrar, bob, "acct-check")

        def check(account: str, subject: common_pb2.Subject) -> bool:
            return registrar.verification.CheckIdentity(
                verification_pb2.CheckIdentityRequest(account_id=account, subject=subject)
            ).match

        assert check("acct-check", bob.subject())
        assert not check("acct-check", bob.subject(name=other.name))
        assert not check("acct-check", other.subject())
        assert not check("acct-never-bound", bob.subject())

    def test_organization_is_verified_by_its_code_alone(self, registrar: Client) -> None:
        """The organization method has no challenge: a valid code verifies at once."""
        org = registrar.verification.StartVerification(
            verification_pb2.StartVerificationRequest(
                request_id="req-org",
                account_id="acct-org",
                method_id="org_document",
                consents=["identity"],
                consent_text_versions=text_versions(["identity"]),
                subject=common_pb2.Subject(
                    kind=common_pb2.SUBJECT_KIND_ORGANIZATION,
                    name="示例科技有限公司",
                    document_type=common_pb2.DOCUMENT_TYPE_CN_USCC,
                    document_number="91110000600037341L",
                ),
            )
        ).verification
        assert org.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")

    def test_repeated_request_id_returns_the_same_verification(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """A retried StartVerification returns the first verification and sends no second code."""
        carol = person()
        first = start(registrar, carol, "acct-idem", request_id="req-idem")
        second = start(registrar, carol, "acct-idem", request_id="req-idem")
        assert second.verification_id == first.verification_id
        assert server.log_text().count(f"(verification {first.verification_id})") == 1

    def test_a_request_id_reused_for_another_account_starts_a_second_verification(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """A request id is its account's: another account's reuse is a start of its own.

        Its answer names nothing of the first (id, account, code), and each account's retry
        still gets its own verification.
        """
        erin, frank = person(), person()
        first = start(registrar, erin, "acct-reqid-1", request_id="req-shared")
        other = start(registrar, frank, "acct-reqid-2", request_id="req-shared")
        assert other.verification_id != first.verification_id
        assert (other.account_id, other.status) == (
            "acct-reqid-2",
            STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT"),
        )
        assert server.log_text().count(f"(verification {other.verification_id})") == 1  # its own code
        assert start(registrar, erin, "acct-reqid-1", request_id="req-shared").verification_id == (
            first.verification_id
        )
        assert start(registrar, frank, "acct-reqid-2", request_id="req-shared").verification_id == (
            other.verification_id
        )


class TestWrongCodes:
    def test_each_wrong_code_costs_an_attempt_until_rejection(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """Five wrong codes kill the challenge with OTP_ATTEMPTS_EXHAUSTED; the right one is then refused."""
        dave = person()
        started = start(registrar, dave, "acct-wrong")
        code = server.sms_code(started.verification_id)
        for left in (4, 3, 2, 1):
            answer = submit(registrar, started.verification_id, wrong_code(code))
            assert (answer.status, answer.attempts_left, answer.reason_code) == (
                STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT"),
                left,
                "OTP_MISMATCH",
            )
        last = submit(registrar, started.verification_id, wrong_code(code))
        assert last.status == STATUS.Value("VERIFICATION_STATUS_REJECTED")
        assert last.reason_code == "OTP_ATTEMPTS_EXHAUSTED"
        assert last.fallback_method_ids == []
        with pytest.raises(grpc.RpcError) as refused:
            submit(registrar, started.verification_id, code)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION

    def test_starting_again_does_not_reset_the_failure_count(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """Wrong codes count per account and phone across verifications within the window."""
        erin = person()
        first = start(registrar, erin, "acct-reset")
        code = server.sms_code(first.verification_id)
        for _ in range(3):
            submit(registrar, first.verification_id, wrong_code(code))
        second = start(registrar, erin, "acct-reset")
        assert second.attempts_left == 2
        code2 = server.sms_code(second.verification_id)
        submit(registrar, second.verification_id, wrong_code(code2))
        final = submit(registrar, second.verification_id, wrong_code(code2))
        assert final.reason_code == "OTP_ATTEMPTS_EXHAUSTED"
        locked = start(registrar, erin, "acct-reset")
        assert locked.status == STATUS.Value("VERIFICATION_STATUS_REJECTED")
        assert locked.reason_code == "OTP_LOCKED"

    def test_a_code_is_accepted_once_and_only_for_its_own_verification(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """Another verification's code is a wrong code; a used code cannot be replayed."""
        frank, grace = person(), person()
        one = start(registrar, frank, "acct-own-1")
        two = start(registrar, grace, "acct-own-2")
        code_one = server.sms_code(one.verification_id)
        code_two = server.sms_code(two.verification_id)
        if code_one != code_two:
            crossed = submit(registrar, two.verification_id, code_one)
            assert crossed.reason_code == "OTP_MISMATCH"
        assert submit(registrar, one.verification_id, code_one).status == STATUS.Value(
            "VERIFICATION_STATUS_VERIFIED"
        )
        with pytest.raises(grpc.RpcError) as replay:
            submit(registrar, one.verification_id, code_one)
        assert replay.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert rich_error(replay.value)[0] == "NOT_AWAITING_CHALLENGE"

    def test_concurrent_wrong_guesses_never_exceed_the_limit(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """Twenty wrong codes at once: exactly five are counted, the rest are refused."""
        ivan = person()
        started = start(registrar, ivan, "acct-concurrent")
        wrong = wrong_code(server.sms_code(started.verification_id))

        def guess(_: int) -> str:
            try:
                return verification_pb2.VerificationStatus.Name(
                    submit(registrar, started.verification_id, wrong).status
                )
            except grpc.RpcError as error:
                return error.code().name

        with ThreadPoolExecutor(max_workers=20) as pool:
            outcomes = sorted(pool.map(guess, range(20)))
        assert outcomes.count("VERIFICATION_STATUS_CHALLENGE_SENT") == 4
        assert outcomes.count("VERIFICATION_STATUS_REJECTED") == 1
        # The rest are refused uncounted: the challenge is dead (FAILED_PRECONDITION), or, for a
        # guess that read the challenge alive just before, the phone's own count of wrong codes
        # (five, across tenants) already locked it (RESOURCE_EXHAUSTED / PHONE_LOCKED).
        refused = outcomes.count("FAILED_PRECONDITION") + outcomes.count("RESOURCE_EXHAUSTED")
        assert refused == 15, outcomes
        store = embedded_redis(server)
        counts = [int(store.get(key) or 0) for key in store.keys("*:otpfail:*")]
        assert 5 in counts
        assert max(counts) <= 5

    def test_an_expired_challenge_is_dead(self, server: ServerProcess, registrar: Client) -> None:
        """After its time is up, the challenge reads EXPIRED and the right code no longer works."""
        heidi = person()
        started = start(registrar, heidi, "acct-expired")
        code = server.sms_code(started.verification_id)
        store = embedded_redis(server)
        # Move the challenge's deadline into the past instead of sleeping five minutes.
        (key,) = store.keys(f"*:vf:{started.verification_id}")
        store.hset(key, "challenge_expires_ms", int(time.time() * 1000) - 1)
        answer = submit(registrar, started.verification_id, code)
        assert answer.status == STATUS.Value("VERIFICATION_STATUS_EXPIRED")
        assert answer.reason_code == "OTP_EXPIRED"


class TestMinors:
    def test_a_minor_needs_a_verified_adult_guardian(self, server: ServerProcess, registrar: Client) -> None:
        """An under-14 subject waits for guardian consent, which a verified adult grants."""
        child = person(birth=date(2016, 5, 1))
        parent = person()
        started = start(registrar, child, "acct-child")
        waiting = submit(registrar, started.verification_id, server.sms_code(started.verification_id))
        assert waiting.status == STATUS.Value("VERIFICATION_STATUS_NEEDS_GUARDIAN_CONSENT")
        assert waiting.next_step == "guardian_consent"
        grant = consent_pb2.GrantConsentRequest(
            account_id="acct-child",
            purpose="guardian",
            text_version=text_version_of("abc"),
            verification_id=started.verification_id,
            guardian_account_id="acct-parent",
            relationship=consent_pb2.GUARDIAN_RELATIONSHIP_PARENT,
        )
        with pytest.raises(grpc.RpcError) as unverified:
            registrar.consent.GrantConsent(grant)
        assert unverified.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert rich_error(unverified.value) == ("GUARDIAN_NOT_VERIFIED", "guardian_account_id")
        verify(server, registrar, parent, "acct-parent")
        registrar.consent.GrantConsent(grant)
        done = registrar.verification.GetVerification(
            verification_pb2.GetVerificationRequest(verification_id=started.verification_id)
        ).verification
        assert done.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")

    def test_a_minor_cannot_be_a_guardian(self, server: ServerProcess, registrar: Client) -> None:
        """A guardian account bound to a 14-17 year old does not qualify."""
        child, teen = person(birth=date(2017, 1, 1)), person(birth=date(2010, 1, 1))
        verify(server, registrar, teen, "acct-teen")
        started = start(registrar, child, "acct-child-2")
        submit(registrar, started.verification_id, server.sms_code(started.verification_id))
        with pytest.raises(grpc.RpcError) as refused:
            registrar.consent.GrantConsent(
                consent_pb2.GrantConsentRequest(
                    account_id="acct-child-2",
                    purpose="guardian",
                    text_version=text_version_of("v1"),
                    verification_id=started.verification_id,
                    guardian_account_id="acct-teen",
                    relationship=consent_pb2.GUARDIAN_RELATIONSHIP_LEGAL_GUARDIAN,
                )
            )
        assert rich_error(refused.value)[0] == "GUARDIAN_NOT_ADULT"

    def test_a_minor_is_not_its_own_guardian(self, server: ServerProcess, registrar: Client) -> None:
        """A registrar naming the child's own account as its guardian is refused, naming the field."""
        child = person(birth=date(2016, 2, 1))
        started = start(registrar, child, "acct-child-self")
        submit(registrar, started.verification_id, server.sms_code(started.verification_id))
        with pytest.raises(grpc.RpcError) as refused:
            registrar.consent.GrantConsent(_guardian_grant("acct-child-self", started, "acct-child-self"))
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert rich_error(refused.value) == ("GUARDIAN_IS_SUBJECT", "guardian_account_id")
        assert _status_of(registrar, started) == STATUS.Value("VERIFICATION_STATUS_NEEDS_GUARDIAN_CONSENT")

    def test_a_cancelled_guardian_no_longer_consents(self, server: ServerProcess, registrar: Client) -> None:
        """A verified adult whose account was cancelled is no guardian: the child keeps waiting."""
        child = person(birth=date(2016, 3, 1))
        verify(server, registrar, person(), "acct-parent-cancelled")
        started = start(registrar, child, "acct-child-cancelled")
        submit(registrar, started.verification_id, server.sms_code(started.verification_id))
        with server.client("platform") as platform:
            platform.account.CancelAccount(
                account_pb2.CancelAccountRequest(account_id="acct-parent-cancelled")
            )
        with pytest.raises(grpc.RpcError) as refused:
            registrar.consent.GrantConsent(
                _guardian_grant("acct-child-cancelled", started, "acct-parent-cancelled")
            )
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert rich_error(refused.value) == ("GUARDIAN_NOT_VERIFIED", "guardian_account_id")
        assert _status_of(registrar, started) == STATUS.Value("VERIFICATION_STATUS_NEEDS_GUARDIAN_CONSENT")


def _guardian_grant(
    account_id: str, started: verification_pb2.Verification, guardian_account_id: str
) -> consent_pb2.GrantConsentRequest:
    return consent_pb2.GrantConsentRequest(
        account_id=account_id,
        purpose="guardian",
        text_version=text_version_of("guardian consent"),
        verification_id=started.verification_id,
        guardian_account_id=guardian_account_id,
        relationship=consent_pb2.GUARDIAN_RELATIONSHIP_PARENT,
    )


def _status_of(registrar: Client, started: verification_pb2.Verification) -> int:
    return registrar.verification.GetVerification(
        verification_pb2.GetVerificationRequest(verification_id=started.verification_id)
    ).verification.status


class TestDiscovery:
    def test_reflection_lists_every_service(self, server: ServerProcess) -> None:
        """Server reflection is on, so grpcurl-style tools can discover the API."""
        with grpc.insecure_channel(server.target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            answers = stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
            names = {s.name for s in next(iter(answers)).list_services_response.service}
        assert {
            "idverify.v1.VerificationService",
            "idverify.v1.AccountService",
            "idverify.v1.ConsentService",
            "idverify.v1.AuditService",
            "grpc.health.v1.Health",
        } <= names

    def test_health_is_serving(self, server: ServerProcess) -> None:
        """The health service answers SERVING for the whole server and each service."""
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "idverify.v1.VerificationService"):
                answer = health.Check(health_pb2.HealthCheckRequest(service=service))
                assert answer.status == health_pb2.HealthCheckResponse.SERVING


class TestPrivacy:
    """Runs last in this module: scans everything the server wrote during the tests above."""

    def test_nothing_personal_reaches_redis_or_the_log(self, server: ServerProcess) -> None:
        """No name, number or phone appears in Redis or the log, in the clear or as SHA-256/MD5 hex."""
        assert len(IDENTITIES) >= 10
        needles = set().union(*(needles_of(identity) for identity in IDENTITIES))
        haystack = [server.log_text().encode(), *everything_stored(embedded_redis(server))]
        aof = (server.data_dir / "redis").glob("*.aof*")
        haystack.extend(path.read_bytes() for path in aof if path.is_file())
        blob = b"\n".join(haystack)
        assert len(blob) > 10_000
        leaks = [needle for needle in needles if needle in blob]
        assert leaks == []

"""Consent per purpose, biometrics never the only way, and what GetAccount tells a platform."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import grpc
import pytest

from idverify.client import Client
from idverify.domain.consent import text_version_of
from idverify.privacy.keyring import load_keyring
from idverify.privacy.masking import mask_document, mask_phone
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, common_pb2, consent_pb2, verification_pb2

from .conftest import (
    embedded_redis,
    error_metadata,
    person,
    record_login_ip,
    rich_error,
    start,
    submit,
    text_versions,
    verify,
)

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
LOOSE_LIMITS = """
[rate_limits]
per_principal_per_minute = 100000
per_identity_per_hour = 100000
code_sends_per_phone_per_hour = 100000
"""
# A biometric step for tests only: passes every subject, and says it is biometric.
FACE_PLUGIN = """
from idverify.verifiers.base import StepResult


class TestFace:
    def __init__(self, options, deps):
        self.name = "test_face"
        self.biometric = True
        self.required_fields = frozenset({"name"})

    async def check(self, context):
        return StepResult.passed()
"""
FACE_CONFIG = (
    textwrap.dedent(
        """
        [tenants.default.methods.sms]
        display_name = "ID document + SMS code"
        assurance = "substantial"
        subject_kinds = ["person"]
        steps = ["document", "sms_otp"]

        [tenants.default.methods.face]
        display_name = "ID document + face"
        assurance = "high"
        subject_kinds = ["person"]
        steps = ["document", "test_face"]
        """
    )
    + LOOSE_LIMITS
)


def install_face_plugin(site: Path) -> None:
    """Makes ``test_face`` an installed verifier for a server started with ``PYTHONPATH=site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "idverify_test_face.py").write_text(FACE_PLUGIN, encoding="utf-8")
    info = site / "idverify_test_face-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: idverify-test-face\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[idverify.verifiers]\ntest_face = idverify_test_face:TestFace\n")


@pytest.fixture(scope="module")
def face_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that offers a biometric method (``face``) beside ``sms``."""
    directory = tmp_path_factory.mktemp("face")
    install_face_plugin(directory / "site")
    with ServerProcess(directory, config=FACE_CONFIG, env={"PYTHONPATH": str(directory / "site")}) as running:
        yield running


@pytest.fixture(scope="module")
def face_registrar(face_server: ServerProcess) -> Iterator[Client]:
    """A registrar of the face server."""
    with face_server.client("registrar") as client:
        yield client


TEXT_V1 = text_version_of("text-v1")


def grant(client: Client, account: str, purpose: str, version: str = TEXT_V1) -> consent_pb2.Consent:
    return client.consent.GrantConsent(
        consent_pb2.GrantConsentRequest(account_id=account, purpose=purpose, text_version=version)
    ).consent


def withdraw(client: Client, account: str, purpose: str) -> consent_pb2.Consent:
    return client.consent.WithdrawConsent(
        consent_pb2.WithdrawConsentRequest(account_id=account, purpose=purpose)
    ).consent


def listed(client: Client, account: str) -> dict[str, consent_pb2.Consent]:
    consents = client.consent.ListConsents(consent_pb2.ListConsentsRequest(account_id=account)).consents
    return {c.purpose: c for c in consents}


def start_face(
    client: Client,
    account: str,
    *,
    consents: tuple[str, ...] = ("identity",),
    versions: dict[str, str] | None = None,
) -> verification_pb2.Verification:
    identity = person()
    return client.verification.StartVerification(
        verification_pb2.StartVerificationRequest(
            request_id=f"req-face-{account}-{time.monotonic_ns()}",
            account_id=account,
            method_id="face",
            subject=identity.subject(phone_number=""),
            consents=list(consents),
            consent_text_versions=text_versions(consents) if versions is None else versions,
        )
    ).verification


def method_ids(client: Client, account: str = "") -> list[str]:
    methods = client.verification.ListMethods(verification_pb2.ListMethodsRequest(account_id=account)).methods
    return [m.id for m in methods]


class TestGrants:
    def test_grant_list_and_withdraw_one_purpose_at_a_time(self, registrar: Client) -> None:
        """A grant records its purpose and text version; a withdrawal takes it back and is listed."""
        given = grant(registrar, "consent-a", "identity", text_version_of("aaa"))
        assert (given.purpose, given.text_version, given.granted) == (
            "identity",
            text_version_of("aaa"),
            True,
        )
        assert given.HasField("granted_at")
        assert not given.HasField("withdrawn_at")
        grant(registrar, "consent-a", "phone", text_version_of("bbb"))
        taken_back = withdraw(registrar, "consent-a", "phone")
        assert not taken_back.granted
        assert taken_back.HasField("withdrawn_at")
        records = listed(registrar, "consent-a")
        assert set(records) == {"identity", "phone"}
        assert records["identity"].granted
        assert not records["phone"].granted
        assert records["phone"].text_version == text_version_of("bbb")

    @pytest.mark.parametrize(
        ("purpose", "version", "reason", "field"),
        [
            ("identity,phone", text_version_of("v1"), "BUNDLED_CONSENT", "purpose"),
            ("identity phone biometric", text_version_of("v1"), "BUNDLED_CONSENT", "purpose"),
            ("marketing", text_version_of("v1"), "UNKNOWN_PURPOSE", "purpose"),
            ("identity,financial", text_version_of("v1"), "BUNDLED_CONSENT", "purpose"),
            ("financial biometric", text_version_of("v1"), "BUNDLED_CONSENT", "purpose"),
            ("identity", "", "TEXT_VERSION_REQUIRED", "text_version"),
            ("financial", "", "TEXT_VERSION_REQUIRED", "text_version"),
            # Free text would reach the permanent audit log: only a digest is a version.
            ("identity", "110101199003074514", "BAD_TEXT_VERSION", "text_version"),
            ("identity", "sha256:" + "A" * 64, "BAD_TEXT_VERSION", "text_version"),
            ("identity", "sha256:" + "a" * 63, "BAD_TEXT_VERSION", "text_version"),
        ],
    )
    def test_bundled_or_unversioned_grants_are_refused(
        self, registrar: Client, purpose: str, version: str, reason: str, field: str
    ) -> None:
        """One call grants one purpose with its text version; anything else is refused."""
        with pytest.raises(grpc.RpcError) as refused:
            grant(registrar, "consent-bundle", purpose, version)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert rich_error(refused.value) == (reason, field)
        assert listed(registrar, "consent-bundle") == {}

    def test_consents_given_with_a_start_are_recorded_with_their_versions(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """The purposes a StartVerification consents to become grants, with the texts' versions."""
        started = registrar.verification.StartVerification(
            verification_pb2.StartVerificationRequest(
                request_id="req-consent-recorded",
                account_id="consent-recorded",
                method_id="sms",
                subject=person().subject(),
                consents=["identity", "phone"],
                consent_text_versions={
                    "identity": text_version_of("id-2026"),
                    "phone": text_version_of("ph-2026"),
                },
            )
        ).verification
        assert started.status == STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT")
        records = listed(registrar, "consent-recorded")
        assert {p: (c.granted, c.text_version) for p, c in records.items()} == {
            "identity": (True, text_version_of("id-2026")),
            "phone": (True, text_version_of("ph-2026")),
        }
        del server

    def test_standing_grants_cover_a_start(self, server: ServerProcess, registrar: Client) -> None:
        """With identity and phone granted beforehand, a start needs no consents of its own."""
        grant(registrar, "consent-standing", "identity")
        grant(registrar, "consent-standing", "phone")
        started = start(registrar, person(), "consent-standing", consents=())
        assert started.status == STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT")
        assert submit(
            registrar, started.verification_id, server.sms_code(started.verification_id)
        ).status == (STATUS.Value("VERIFICATION_STATUS_VERIFIED"))

    def test_withdrawal_ends_a_pending_verification_at_once(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """Withdrawing phone consent rejects the waiting SMS verification; its code is then refused."""
        started = start(registrar, person(), "consent-withdraw-now")
        code = server.sms_code(started.verification_id)
        withdraw(registrar, "consent-withdraw-now", "phone")
        now = registrar.verification.GetVerification(
            verification_pb2.GetVerificationRequest(verification_id=started.verification_id)
        ).verification
        assert (now.status, now.reason_code) == (
            STATUS.Value("VERIFICATION_STATUS_REJECTED"),
            "CONSENT_WITHDRAWN",
        )
        with pytest.raises(grpc.RpcError) as refused:
            submit(registrar, started.verification_id, code)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as again:
            start(registrar, person(), "consent-withdraw-now", consents=("identity",))
        assert rich_error(again.value) == ("CONSENT_REQUIRED", "consents")


class TestBiometrics:
    def test_a_biometric_method_needs_a_granted_biometric_consent(self, face_registrar: Client) -> None:
        """Without biometric consent the face method is refused, naming the non-biometric fallback."""
        with pytest.raises(grpc.RpcError) as refused:
            start_face(face_registrar, "bio-none")
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert rich_error(refused.value) == ("CONSENT_REQUIRED", "consents")
        assert error_metadata(refused.value)["fallback_method_ids"] == "sms"
        with pytest.raises(grpc.RpcError) as unversioned:
            start_face(
                face_registrar,
                "bio-none",
                consents=("identity", "biometric"),
                versions=text_versions(["identity"]),
            )
        assert unversioned.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert rich_error(unversioned.value) == ("TEXT_VERSION_REQUIRED", "consent_text_versions[biometric]")
        assert listed(face_registrar, "bio-none") == {}

    def test_granted_biometric_consent_lets_the_face_method_verify(self, face_registrar: Client) -> None:
        """A standing biometric grant, or one given with the request and its version, admits the method."""
        grant(face_registrar, "bio-granted", "biometric", text_version_of("face-v3"))
        assert start_face(face_registrar, "bio-granted").status == STATUS.Value(
            "VERIFICATION_STATUS_VERIFIED"
        )
        in_request = start_face(
            face_registrar,
            "bio-in-request",
            consents=("identity", "biometric"),
            versions={"identity": TEXT_V1, "biometric": text_version_of("face-v3")},
        )
        assert in_request.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")
        assert listed(face_registrar, "bio-in-request")["biometric"].text_version == text_version_of(
            "face-v3"
        )

    def test_a_refusal_keeps_biometrics_away_and_sms_still_works(
        self, face_server: ServerProcess, face_registrar: Client
    ) -> None:
        """After a refusal: not offered, not startable, cool-down shown; the SMS method still verifies."""
        account = "bio-refused"
        refusal = withdraw(face_registrar, account, "biometric")
        assert not refusal.granted
        assert not refusal.HasField("granted_at")
        assert refusal.HasField("cooldown_until")
        days = (refusal.cooldown_until.ToSeconds() - refusal.withdrawn_at.ToSeconds()) / 86400
        assert days == pytest.approx(30)
        assert "face" in method_ids(face_registrar)
        assert method_ids(face_registrar, account) == ["sms"]
        with pytest.raises(grpc.RpcError) as refused:
            start_face(
                face_registrar,
                account,
                consents=("identity", "biometric"),
                versions={"identity": TEXT_V1, "biometric": text_version_of("face-v3")},
            )
        assert rich_error(refused.value) == ("BIOMETRIC_COOLDOWN", "method_id")
        assert error_metadata(refused.value)["fallback_method_ids"] == "sms"
        assert verify(face_server, face_registrar, person(), account).status == STATUS.Value(
            "VERIFICATION_STATUS_VERIFIED"
        )

    def test_a_withdrawal_starts_the_cool_down_and_it_ends(
        self, face_server: ServerProcess, face_registrar: Client
    ) -> None:
        """A withdrawn grant is not offered again until the cool-down is over."""
        account = "bio-withdrawn"
        grant(face_registrar, account, "biometric")
        assert "face" in method_ids(face_registrar, account)
        withdraw(face_registrar, account, "biometric")
        assert "face" not in method_ids(face_registrar, account)
        keyring = load_keyring(path=face_server.data_dir / "keyring.json")
        pseudonym = keyring.pseudonym("default", "account", account)
        store = embedded_redis(face_server)
        # Thirty-one days pass.
        store.hset(
            f"iv1:{{t:default}}:consent:{pseudonym}", "biometric:w", int((time.time() - 31 * 86400) * 1000)
        )
        assert "face" in method_ids(face_registrar, account)


class TestGetAccount:
    def test_the_platform_sees_facts_never_the_identity(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """Verified, when, how, how sure, which kind, age band, IP label; no name, number or phone."""
        teen = person(birth=date(2011, 2, 3))
        verify(server, registrar, teen, "account-facts")
        with server.client("platform") as platform:
            record_login_ip(platform, "account-facts")
            answer = platform.account.GetAccount(account_pb2.GetAccountRequest(account_id="account-facts"))
        account = answer.account
        assert account.verified
        assert account.verified_at.ToSeconds() > time.time() - 120
        assert account.method_id == "sms"
        assert account.assurance == common_pb2.ASSURANCE_LEVEL_LOW
        assert account.binding_state == account_pb2.BINDING_STATE_BOUND
        assert account.subject_kind == common_pb2.SUBJECT_KIND_PERSON
        assert account.age_band == account_pb2.AGE_BAND_14_TO_17
        assert account.ip_location.display == "美国"
        assert not account.HasField("erasure_due_at")
        wire = answer.SerializeToString()
        text = str(answer)
        for secret in (
            teen.name,
            teen.number,
            teen.phone,
            mask_phone(f"+86{teen.phone}"),
            mask_document(teen.number),
        ):
            assert secret.encode() not in wire
            assert secret not in text
        names = {field.name for field in account_pb2.Account.DESCRIPTOR.fields}
        assert not names & {"name", "document_number", "phone_number", "masked_phone", "masked_document"}

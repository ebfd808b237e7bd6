# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The vendor-backed verifiers over the fakes: outcomes, claims, provider, lease and shutdown."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date
from typing import Any

import pytest

from idverify.domain.errors import ConfigError
from idverify.domain.methods import MethodSpec, TenantMethods, fallback_methods
from idverify.domain.subjects import AssuranceLevel, DocumentType, Subject, SubjectKind
from idverify.vendors.fakes import Drop, FakeTencent
from idverify.vendors.registry import EXTRAS_KEY, VendorRegistry
from idverify.verifiers.authority import AuthorityVerifier
from idverify.verifiers.authority_http import AuthorityHttpVerifier
from idverify.verifiers.bank_card_4factor import BankCard4FactorVerifier
from idverify.verifiers.base import JudgedChallengeVerifier, Outcome, StepContext, Verifier, VerifierDeps
from idverify.verifiers.carrier_3factor import Carrier3FactorVerifier
from idverify.verifiers.face_liveness import FaceLivenessVerifier
from idverify.verifiers.registry import build_verifier

VID = "ab" * 16


class Keyed:
    def mac(self, tenant: str, purpose: str, data: bytes) -> bytes:
        return hmac.new(f"{tenant}/{purpose}".encode(), data, hashlib.sha256).digest()


class NoSms:
    async def send_code(self, phone_e164: str, code: str, *, tenant: str, verification_id: str) -> None:
        del phone_e164, code, tenant, verification_id
        raise AssertionError("no SMS here")


@pytest.fixture
async def registry(fake_tencent: FakeTencent, credentials_env):
    tables = {
        "tencent": {
            **fake_tencent.vendor_options(),
            **credentials_env("TC", fake_tencent.key_id, fake_tencent.secret),
            "backoff_seconds": 0.0,
            "breaker_failures": 2,
        }
    }
    made = VendorRegistry(tables)
    yield made
    await made.aclose()


@pytest.fixture
def deps(registry: VendorRegistry) -> VerifierDeps:
    return VerifierDeps(keyed=Keyed(), sms_sender=NoSms(), extras={EXTRAS_KEY: registry})


def context(person: Any, **changes: Any) -> StepContext:
    fields: dict[str, Any] = {
        "name": person.name,
        "document_type": DocumentType.CN_RIC,
        "document_number": person.id_number,
        "phone_number": "+86" + person.phone,
        "bank_card_number": person.bank_card,
    }
    fields.update(changes)
    subject = Subject(kind=SubjectKind.PERSON, **fields)
    return StepContext("acme", VID, subject, None, date(2025, 6, 1), return_url="https://app.example/back")


class TestOutcomes:
    async def test_authority(self, deps: VerifierDeps, zhang) -> None:
        """Match passes with the vendor code; a wrong name fails with AUTHORITY_MISMATCH and -1."""
        verifier = AuthorityVerifier({"vendor": "tencent"}, deps)
        passed = await verifier.check(context(zhang))
        failed = await verifier.check(context(zhang, name="王五"))
        assert (passed.outcome, passed.vendor_code) == (Outcome.PASS, "0")
        assert (failed.outcome, failed.reason, failed.vendor_code) == (
            Outcome.FAIL,
            "AUTHORITY_MISMATCH",
            "-1",
        )

    async def test_unsupported_document_fails_rather_than_skips(self, deps: VerifierDeps, zhang) -> None:
        """A passport cannot be checked by FaceID: FAIL, never NOT_APPLICABLE (the method would pass)."""
        verifier = AuthorityVerifier({"vendor": "tencent"}, deps)
        result = await verifier.check(context(zhang, document_type=DocumentType.PASSPORT))
        assert (result.outcome, result.reason) == (Outcome.FAIL, "DOCUMENT_TYPE_UNSUPPORTED")

    async def test_carrier_needs_a_mainland_mobile(self, deps: VerifierDeps, fake_tencent, zhang) -> None:
        """A foreign number is not sent anywhere: PHONE_NOT_SUPPORTED."""
        verifier = Carrier3FactorVerifier({"vendor": "tencent"}, deps)
        result = await verifier.check(context(zhang, phone_number="+14155550100"))
        assert (result.outcome, result.reason) == (Outcome.FAIL, "PHONE_NOT_SUPPORTED")
        assert not fake_tencent.requests
        assert (await verifier.check(context(zhang))).outcome is Outcome.PASS
        assert fake_tencent.requests[-1].fields["Phone"] == zhang.phone

    async def test_bank_card_normalizes_and_validates(self, deps: VerifierDeps, zhang) -> None:
        """Spaces in the card number are dropped; letters make INVALID_BANK_CARD; none is REQUIRED."""
        verifier = BankCard4FactorVerifier({"vendor": "tencent"}, deps)
        spaced = " ".join(zhang.bank_card[i : i + 4] for i in range(0, len(zhang.bank_card), 4))
        assert (await verifier.check(context(zhang, bank_card_number=spaced))).outcome is Outcome.PASS
        assert (
            await verifier.check(context(zhang, bank_card_number="6222-abc"))
        ).reason == "INVALID_BANK_CARD"
        assert (await verifier.check(context(zhang, bank_card_number=""))).reason == "BANK_CARD_REQUIRED"

    async def test_vendor_down_is_unavailable(
        self, deps: VerifierDeps, fake_tencent: FakeTencent, zhang
    ) -> None:
        """A dropped connection makes the step UNAVAILABLE, then the open circuit does too."""
        verifier = AuthorityVerifier({"vendor": "tencent"}, deps)
        fake_tencent.plan(Drop(), Drop())
        reasons = [(await verifier.check(context(zhang))).vendor_code for _ in range(3)]
        assert reasons == ["CONNECTION_LOST", "CONNECTION_LOST", "CIRCUIT_OPEN"]
        assert len(fake_tencent.requests) == 2


class TestLiveness:
    async def test_check_then_judge(self, deps: VerifierDeps, fake_tencent: FakeTencent, zhang) -> None:
        """check() returns a challenge with the vendor URL and token; judge() waits, then passes."""
        verifier = FaceLivenessVerifier({"vendor": "tencent"}, deps)
        assert isinstance(verifier, JudgedChallengeVerifier)
        assert verifier.biometric
        started = await verifier.check(context(zhang))
        assert started.outcome is Outcome.CHALLENGE
        challenge = started.challenge
        assert challenge is not None
        assert challenge.url
        assert challenge.token
        assert challenge.max_attempts == 1
        assert challenge.expected_digest == b""
        assert fake_tencent.requests[-1].fields["RedirectUrl"] == "https://app.example/back"
        assert (await verifier.judge("acme", VID, challenge.token)).outcome is Outcome.CHALLENGE
        fake_tencent.complete_liveness(challenge.token, passed=True)
        assert (await verifier.judge("acme", VID, challenge.token)).outcome is Outcome.PASS

    async def test_judge_without_token(self, deps: VerifierDeps) -> None:
        """A record that lost its token can only fail."""
        verifier = FaceLivenessVerifier({"vendor": "tencent"}, deps)
        assert (await verifier.judge("acme", VID, "")).reason == "CHALLENGE_INVALID"

    def test_ttl_bounds(self, deps: VerifierDeps) -> None:
        """ttl_seconds outside 60-7200 is refused."""
        with pytest.raises(ConfigError, match="ttl_seconds"):
            FaceLivenessVerifier({"vendor": "tencent", "ttl_seconds": 10}, deps)


class TestWiring:
    def test_registry_builds_them_as_plugins(self, deps: VerifierDeps) -> None:
        """Each passes the plugin checks of the registry under its own name."""
        for name, factory in (
            ("authority", AuthorityVerifier),
            ("carrier_3factor", Carrier3FactorVerifier),
            ("bank_card_4factor", BankCard4FactorVerifier),
            ("face_liveness", FaceLivenessVerifier),
        ):
            built = build_verifier(name, factory, {"vendor": "tencent"}, deps)
            assert isinstance(built, Verifier)
            assert getattr(built, "provider", "") == "tencent"

    def test_config_errors(self, deps: VerifierDeps) -> None:
        """Missing vendor, unknown vendor and stray options fail at start-up with useful messages."""
        with pytest.raises(ConfigError, match="set vendor"):
            AuthorityVerifier({}, deps)
        with pytest.raises(ConfigError, match="configured: tencent"):
            AuthorityVerifier({"vendor": "alibaba"}, deps)
        with pytest.raises(ConfigError, match="unknown options"):
            AuthorityVerifier({"vendor": "tencent", "region": "x"}, deps)
        with pytest.raises(ConfigError, match="registry"):
            AuthorityVerifier({"vendor": "tencent"}, VerifierDeps(keyed=Keyed(), sms_sender=NoSms()))
        with pytest.raises(ConfigError, match="unknown kind"):
            VendorRegistry({"acme": {}}).get("acme")

    async def test_verifiers_share_one_vendor_until_the_last_closes(
        self, deps: VerifierDeps, registry
    ) -> None:
        """Two verifiers lease one adapter; it closes only when both have released it."""
        one = AuthorityVerifier({"vendor": "tencent"}, deps)
        two = Carrier3FactorVerifier({"vendor": "tencent"}, deps)
        assert one.vendor is two.vendor
        await one.aclose()
        await one.aclose()  # idempotent
        assert not two.vendor.transport._client.is_closed  # type: ignore[attr-defined]
        await two.aclose()
        assert two.vendor.transport._client.is_closed  # type: ignore[attr-defined]
        del registry

    async def test_authority_http(self, fake_gateway, monkeypatch, zhang) -> None:
        """The gateway verifier needs no [vendors] table: its options are the gateway's."""
        monkeypatch.setenv("GW_SECRET", fake_gateway.secret)
        verifier = AuthorityHttpVerifier(
            {"url": fake_gateway.url, "secret_env": "GW_SECRET"},
            VerifierDeps(keyed=Keyed(), sms_sender=NoSms()),
        )
        try:
            assert verifier.name == "authority_http"
            assert (await verifier.check(context(zhang))).outcome is Outcome.PASS
            assert (await verifier.check(context(zhang, name="王五"))).reason == "AUTHORITY_MISMATCH"
        finally:
            await verifier.aclose()


class TestFallbacksWithoutTheVendor:
    def method(self, method_id: str, *steps: str) -> MethodSpec:
        return MethodSpec(
            method_id, method_id, AssuranceLevel.SUBSTANTIAL, frozenset({SubjectKind.PERSON}), steps
        )

    def test_methods_of_the_unavailable_vendor_are_left_out(self) -> None:
        """With FaceID down, carrier_3factor (same vendor) is not offered; sms is."""
        table = TenantMethods(
            "t",
            (
                self.method("authority", "document", "authority"),
                self.method("carrier", "document", "carrier_3factor", "sms_otp"),
                self.method("sms", "document", "sms_otp"),
                self.method("face", "document", "face_liveness"),
            ),
        )
        current = table.get("authority")
        down = frozenset({"authority", "carrier_3factor", "face_liveness"})
        offered = fallback_methods(table, current, SubjectKind.PERSON, frozenset({"face_liveness"}), down)
        assert offered == ["sms"]
        assert fallback_methods(table, current, SubjectKind.PERSON, frozenset({"face_liveness"})) == [
            "carrier",
            "sms",
        ]


class TestReturnUrl:
    async def test_only_https_urls_of_bounded_length(self, deps: VerifierDeps, fake_tencent, zhang) -> None:
        """A plain-http or oversized return URL is refused before any vendor call."""
        verifier = FaceLivenessVerifier({"vendor": "tencent"}, deps)
        for url in ("http://app.example/back", "https://app.example/" + "x" * 1100):
            subject = context(zhang).subject
            ctx = StepContext("acme", VID, subject, None, date(2025, 6, 1), return_url=url)
            assert (await verifier.check(ctx)).reason == "INVALID_RETURN_URL"
        assert not fake_tencent.requests

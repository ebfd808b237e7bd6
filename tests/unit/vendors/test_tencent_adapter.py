# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The FaceID adapter against the local fake: formats, codes, encryption, signatures, liveness."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives import serialization

from idverify.domain.errors import ConfigError
from idverify.domain.subjects import DocumentType
from idverify.vendors.api import Check, LivenessRequest, LivenessSession
from idverify.vendors.fakes import ErrorCode, FakeTencent, ResultCode
from idverify.vendors.tencent import TencentFaceId
from idverify.vendors.verdicts import VendorUnavailable, VerdictKind

REF = "0123456789abcdef0123456789abcdef"


class TestChecks:
    async def test_name_id_match_and_mismatch(self, tencent, fake_tencent: FakeTencent, make_claim) -> None:
        """Result 0 passes; -1 is a billed mismatch; -5 no record; each carries its code."""
        vendor = tencent()
        match = await vendor.check_name_id(make_claim())
        wrong = await vendor.check_name_id(make_claim(name="王五"))
        unknown = await vendor.check_name_id(make_claim(document_number="110105194912310029"))
        assert (match.kind, match.vendor_code, match.billed) == (VerdictKind.MATCH, "0", True)
        assert (wrong.kind, wrong.reason, wrong.vendor_code) == (
            VerdictKind.MISMATCH,
            "AUTHORITY_MISMATCH",
            "-1",
        )
        assert (unknown.kind, unknown.vendor_code, unknown.billed) == (VerdictKind.NO_RECORD, "-5", False)
        assert fake_tencent.all_signatures_ok

    async def test_only_the_needed_fields_are_sent(
        self, tencent, fake_tencent: FakeTencent, make_claim
    ) -> None:
        """IdCardVerification gets name and number, never the phone or card of the claim."""
        await tencent().check_name_id(make_claim())
        assert set(fake_tencent.requests[0].fields) == {"IdCard", "Name"}

    async def test_carrier_detailed_mode_names_the_wrong_factor(
        self, tencent, fake_tencent, make_claim, li
    ) -> None:
        """VerifyMode 1; -4 with ResultDetail PhoneNameMismatch becomes CARRIER_NAME_MISMATCH."""
        vendor = tencent()
        verdict = await vendor.check_carrier(make_claim(li, name="王五"))
        assert (verdict.kind, verdict.reason, verdict.vendor_code) == (
            VerdictKind.MISMATCH,
            "CARRIER_NAME_MISMATCH",
            "-4/PhoneNameMismatch",
        )
        assert fake_tencent.requests[-1].fields["VerifyMode"] == "1"
        assert (await vendor.check_carrier(make_claim(li))).kind is VerdictKind.MATCH

    async def test_bank_card(self, tencent, fake_tencent: FakeTencent, make_claim) -> None:
        """Four factors; a card of someone else is a mismatch."""
        vendor = tencent()
        assert (await vendor.check_bank_card(make_claim())).kind is VerdictKind.MATCH
        other = await vendor.check_bank_card(make_claim(bank_card="6222020200998877665"))
        assert (other.kind, other.reason) == (VerdictKind.MISMATCH, "BANK_CARD_MISMATCH")
        assert fake_tencent.requests[0].fields["CertType"] == 0

    @pytest.mark.parametrize(
        ("action", "code", "kind", "reason"),
        [
            ("name_id", "-2", VerdictKind.INVALID_INPUT, "INVALID_DOCUMENT"),
            ("name_id", "-3", VerdictKind.INVALID_INPUT, "INVALID_NAME"),
            ("name_id", "-7", VerdictKind.DAILY_LIMIT, "VENDOR_DAILY_LIMIT"),
            ("carrier", "-6", VerdictKind.INVALID_INPUT, "INVALID_PHONE"),
            ("carrier", "-9", VerdictKind.NO_RECORD, "NO_RECORD"),
            ("carrier", "-12", VerdictKind.DAILY_LIMIT, "VENDOR_DAILY_LIMIT"),
            ("carrier", "-13", VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),
            ("bank_card", "-4", VerdictKind.INVALID_INPUT, "INVALID_BANK_CARD"),
            ("bank_card", "-13", VerdictKind.REJECTED, "BANK_CARD_REJECTED"),
            ("bank_card", "-19", VerdictKind.DAILY_LIMIT, "VENDOR_DAILY_LIMIT"),
            ("bank_card", "-20", VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),
        ],
    )
    async def test_result_codes(self, tencent, fake_tencent, make_claim, action, code, kind, reason) -> None:
        """Each documented result code maps to its verdict, keeping the code."""
        fake_tencent.plan(ResultCode(code))
        vendor = tencent()
        verdict = await getattr(vendor, f"check_{action}")(make_claim())
        assert (verdict.kind, verdict.reason, verdict.vendor_code) == (kind, reason, code)

    async def test_an_unknown_result_code_never_passes(self, tencent, fake_tencent, make_claim) -> None:
        """A code missing from the tables is VENDOR_ERROR, not a match."""
        fake_tencent.plan(ResultCode("-99"))
        with pytest.raises(VendorUnavailable) as raised:
            await tencent().check_name_id(make_claim())
        assert (raised.value.reason, raised.value.vendor_code) == ("VENDOR_ERROR", "-99")

    @pytest.mark.parametrize(
        ("code", "reason"),
        [
            ("AuthFailure.SecretIdNotFound", "VENDOR_AUTH_FAILED"),
            ("UnauthorizedOperation.Arrears", "VENDOR_ACCOUNT_ERROR"),
            ("FailedOperation.Whatever", "VENDOR_ERROR"),
        ],
    )
    async def test_error_codes_without_verdict(self, tencent, fake_tencent, make_claim, code, reason) -> None:
        """Errors that say nothing about the claim make the call unavailable, with the code."""
        fake_tencent.plan(ErrorCode(code))
        with pytest.raises(VendorUnavailable) as raised:
            await tencent(max_retries=0).check_name_id(make_claim())
        assert (raised.value.reason, raised.value.vendor_code) == (reason, code)

    async def test_wrong_secret_is_refused_by_the_signature_check(
        self, tencent, fake_tencent, make_claim, monkeypatch
    ):
        """The fake checks every signature: a wrong SecretKey gets AuthFailure.SignatureFailure."""
        vendor = tencent()
        monkeypatch.setattr(vendor, "_credentials", type(vendor._credentials)(fake_tencent.key_id, "wrong"))
        with pytest.raises(VendorUnavailable) as raised:
            await vendor.check_name_id(make_claim())
        assert raised.value.vendor_code == "AuthFailure.SignatureFailure"
        assert not fake_tencent.all_signatures_ok

    def test_supports(self, tencent) -> None:
        """FaceID's two- to four-factor checks take resident IDs only; liveness takes permits too."""
        vendor = tencent()
        assert vendor.supports(Check.NAME_ID, DocumentType.CN_RIC)
        assert not vendor.supports(Check.NAME_ID, DocumentType.PASSPORT)
        assert vendor.supports(Check.LIVENESS, DocumentType.CN_RESIDENCE_PERMIT)


class TestEncryption:
    async def test_fields_travel_encrypted(
        self, tencent, fake_tencent, faceid_key, make_claim, tmp_path
    ) -> None:
        """With the console's public key configured, name and ID arrive as ciphertext the fake decrypts."""
        key_file = tmp_path / "faceid.pem"
        key_file.write_bytes(
            faceid_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        vendor = tencent(encryption_public_key_file=str(key_file))
        assert (await vendor.check_name_id(make_claim())).kind is VerdictKind.MATCH
        assert (await vendor.check_carrier(make_claim())).kind is VerdictKind.MATCH
        assert (await vendor.check_bank_card(make_claim())).kind is VerdictKind.MATCH
        first, carrier, card = fake_tencent.requests
        assert sorted(first.encrypted) == ["IdCard", "Name"]
        assert sorted(carrier.encrypted) == ["IdCard", "Name", "Phone"]
        assert sorted(card.encrypted) == ["BankCard", "IdCard", "Name", "Phone"]

    async def test_the_plaintext_is_not_on_the_wire(
        self, tencent, faceid_key, make_claim, tmp_path, monkeypatch
    ):
        """The request body holds no name or ID in the clear."""
        key_file = tmp_path / "faceid.pem"
        key_file.write_bytes(
            faceid_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        )
        vendor = tencent(encryption_public_key_file=str(key_file))
        claim = make_claim()
        request = vendor._prepare(
            "IdCardVerification",
            vendor._protect({"IdCard": claim.document_number, "Name": claim.name}, "Encryption"),
        )
        assert claim.document_number.encode() not in request.body
        assert claim.name.encode() not in request.body
        assert b'"Algorithm":"AES-256-CBC"' in request.body
        del monkeypatch

    def test_a_bad_key_file_fails_at_start(self, tencent, tmp_path) -> None:
        """A missing or non-RSA key is a configuration error, not a runtime surprise."""
        with pytest.raises(ConfigError, match="cannot read"):
            tencent(encryption_public_key_file=str(tmp_path / "missing.pem"))
        junk = tmp_path / "junk.pem"
        junk.write_text("not a key")
        with pytest.raises(ConfigError, match="PEM"):
            tencent(encryption_public_key_file=str(junk))


class TestLiveness:
    async def test_detect_auth_then_result_by_token(
        self, tencent, fake_tencent: FakeTencent, make_claim
    ) -> None:
        """DetectAuth gives URL and BizToken; the result is PENDING, then MATCH after the user passes."""
        vendor = tencent()
        session = await vendor.start_liveness(
            make_claim(), LivenessRequest(REF, return_url="https://app.example/done")
        )
        assert isinstance(session, LivenessSession)
        assert session.url.startswith("https://")
        assert session.token
        sent = fake_tencent.requests[-1].fields
        assert (sent["RuleId"], sent["Extra"], sent["RedirectUrl"]) == ("1", REF, "https://app.example/done")
        assert (await vendor.liveness_result(session.token, REF)).kind is VerdictKind.PENDING
        fake_tencent.complete_liveness(session.token, passed=True)
        assert (await vendor.liveness_result(session.token, REF)).kind is VerdictKind.MATCH
        assert fake_tencent.requests[-1].fields["InfoType"] == "1"  # text only: never images

    async def test_failed_flow(self, tencent, fake_tencent: FakeTencent, make_claim) -> None:
        """A live person who is not the claimed one: FACE_MISMATCH; a spoof: LIVENESS_FAILED."""
        vendor = tencent()
        for live, reason in ((True, "FACE_MISMATCH"), (False, "LIVENESS_FAILED")):
            session = await vendor.start_liveness(make_claim(), LivenessRequest(REF))
            assert isinstance(session, LivenessSession)
            fake_tencent.complete_liveness(session.token, passed=False, live=live)
            verdict = await vendor.liveness_result(session.token, REF)
            assert (verdict.kind, verdict.reason) == (VerdictKind.MISMATCH, reason)

    async def test_a_token_of_another_verification_never_passes(
        self, tencent, fake_tencent, make_claim
    ) -> None:
        """Extra carries our verification id; a passed flow started for another one is refused."""
        vendor = tencent()
        session = await vendor.start_liveness(make_claim(), LivenessRequest(REF))
        assert isinstance(session, LivenessSession)
        fake_tencent.complete_liveness(session.token, passed=True)
        verdict = await vendor.liveness_result(session.token, "f" * 32)
        assert (verdict.kind, verdict.reason) == (VerdictKind.MISMATCH, "CHALLENGE_INVALID")

    async def test_refused_identity_and_unknown_token(self, tencent, make_claim) -> None:
        """DetectAuth refuses a mismatching identity; an unknown token is CHALLENGE_INVALID."""
        vendor = tencent()
        refused = await vendor.start_liveness(make_claim(name="王五"), LivenessRequest(REF))
        assert not isinstance(refused, LivenessSession)
        assert (refused.kind, refused.reason) == (VerdictKind.MISMATCH, "AUTHORITY_MISMATCH")
        unknown = await vendor.liveness_result("NOPE", REF)
        assert unknown.reason == "CHALLENGE_INVALID"

    async def test_rule_id_is_required(self, tencent, make_claim) -> None:
        """Without liveness_rule_id the step cannot start a flow."""
        with pytest.raises(ConfigError, match="liveness_rule_id"):
            await tencent(liveness_rule_id="").start_liveness(make_claim(), LivenessRequest(REF))


class TestProbeAndPrivacy:
    async def test_probe_proves_credentials(self, tencent, fake_tencent, monkeypatch) -> None:
        """An authenticated but meaningless question: ok; a wrong key: not ok."""
        vendor = tencent()
        assert (await vendor.probe()).ok
        monkeypatch.setattr(vendor, "_credentials", type(vendor._credentials)(fake_tencent.key_id, "bad"))
        report = await vendor.probe()
        assert not report.ok
        assert report.vendor_code == "AuthFailure.SignatureFailure"

    def test_dry_run_signs_without_sending(self, tencent, fake_tencent) -> None:
        """The dry run shows a signed request; the secret appears nowhere in it."""
        text = tencent().dry_run()
        assert "TC3-HMAC-SHA256 Credential=" in text
        assert fake_tencent.secret not in text
        assert not fake_tencent.requests

    async def test_no_identity_in_logs(self, tencent, make_claim, caplog: pytest.LogCaptureFixture) -> None:
        """Even at DEBUG (httpx, httpcore), no log line carries the name or the number."""
        claim = make_claim()
        with caplog.at_level(logging.DEBUG):
            vendor = tencent()
            await vendor.check_name_id(claim)
            await vendor.check_bank_card(claim)
        for secret in (claim.name, claim.document_number, claim.phone, claim.bank_card):
            assert secret not in caplog.text

    def test_unknown_options_and_missing_secrets(self, fake_tencent, monkeypatch) -> None:
        """A typo or an unset variable fails at start-up, naming the place, never a value."""
        with pytest.raises(ConfigError, match="unknown options"):
            TencentFaceId("tencent", {"endpont": fake_tencent.url})
        monkeypatch.delenv("NOPE_ID", raising=False)
        with pytest.raises(ConfigError, match="NOPE_ID"):
            TencentFaceId("tencent", {"secret_id_env": "NOPE_ID", "secret_key_env": "NOPE_ID"})

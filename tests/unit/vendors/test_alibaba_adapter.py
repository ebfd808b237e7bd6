# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The Cloudauth adapter against the local fake: form bodies, codes, gateway errors, face flow."""

from __future__ import annotations

import pytest

from idverify.domain.errors import ConfigError
from idverify.vendors.api import LivenessRequest, LivenessSession
from idverify.vendors.fakes import ErrorCode, FakeAlibaba, HttpStatus, ResultCode
from idverify.vendors.verdicts import VendorUnavailable, VerdictKind

REF = "0123456789abcdef0123456789abcdef"


class TestChecks:
    async def test_id2meta(self, alibaba, fake_alibaba: FakeAlibaba, make_claim) -> None:
        """BizCode 1 match, 2 mismatch (billed), 3 no record (not billed)."""
        vendor = alibaba()
        assert (await vendor.check_name_id(make_claim())).kind is VerdictKind.MATCH
        wrong = await vendor.check_name_id(make_claim(name="王五"))
        none = await vendor.check_name_id(make_claim(document_number="110105194912310029"))
        assert (wrong.reason, wrong.vendor_code, wrong.billed) == ("AUTHORITY_MISMATCH", "2", True)
        assert (none.kind, none.billed) == (VerdictKind.NO_RECORD, False)
        assert fake_alibaba.all_signatures_ok

    async def test_parameters_go_in_the_signed_body(
        self, alibaba, fake_alibaba: FakeAlibaba, make_claim
    ) -> None:
        """Name and number are form fields of the body; the request line carries none of them."""
        vendor = alibaba()
        claim = make_claim()
        request = vendor._prepare(
            "Id2MetaVerify", {"UserName": claim.name, "IdentifyNum": claim.document_number}
        )
        assert request.url.endswith("/")
        assert "?" not in request.url
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        await vendor.check_name_id(claim)
        assert fake_alibaba.requests[-1].fields == {
            "ParamType": "normal",
            "UserName": claim.name,
            "IdentifyNum": claim.document_number,
        }

    async def test_carrier_detail(self, alibaba, make_claim, li) -> None:
        """Mobile3MetaDetailVerify SubCode 203: the number belongs to the ID but not the name."""
        verdict = await alibaba().check_carrier(make_claim(li, name="王五"))
        assert (verdict.kind, verdict.reason, verdict.vendor_code) == (
            VerdictKind.MISMATCH,
            "CARRIER_NAME_MISMATCH",
            "2/203",
        )

    @pytest.mark.parametrize(
        ("biz", "sub", "kind", "reason"),
        [
            ("2", "201", VerdictKind.MISMATCH, "BANK_CARD_MISMATCH"),
            ("2", "210", VerdictKind.REJECTED, "BANK_CARD_REJECTED"),
            ("3", "304", VerdictKind.INVALID_INPUT, "INVALID_BANK_CARD"),
            ("3", "306", VerdictKind.DAILY_LIMIT, "VENDOR_DAILY_LIMIT"),
            ("3", "301", VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),
        ],
    )
    async def test_bank_subcodes(self, alibaba, fake_alibaba, make_claim, biz, sub, kind, reason) -> None:
        """BankMetaVerify's BizCode/SubCode pairs map to verdicts."""
        fake_alibaba.plan(ResultCode(biz, sub))
        verdict = await alibaba().check_bank_card(make_claim())
        assert (verdict.kind, verdict.reason, verdict.vendor_code) == (kind, reason, f"{biz}/{sub}")
        assert fake_alibaba.requests[-1].fields["ProductType"] == "BANK_CARD_4_META"

    @pytest.mark.parametrize(
        ("code", "kind", "reason"),
        [
            ("401", VerdictKind.INVALID_INPUT, "INVALID_INPUT"),
            ("403", VerdictKind.DAILY_LIMIT, "VENDOR_DAILY_LIMIT"),
            ("405", VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),
        ],
    )
    async def test_business_codes(self, alibaba, fake_alibaba, make_claim, code, kind, reason) -> None:
        """Non-200 Codes of the information checks that still answer about the claim."""
        fake_alibaba.plan(ErrorCode(code))
        verdict = await alibaba().check_carrier(make_claim())
        assert (verdict.kind, verdict.reason, verdict.vendor_code) == (kind, reason, code)

    @pytest.mark.parametrize(
        ("code", "reason", "attempts"),
        [
            ("500", "VENDOR_ERROR", 3),
            ("ServiceUnavailable", "VENDOR_ERROR", 3),
            ("Throttling.User", "VENDOR_BUSY", 3),
            ("InvalidAccessKeyId.NotFound", "VENDOR_AUTH_FAILED", 1),
            ("Forbidden.AccountAccessDenied", "VENDOR_ACCOUNT_ERROR", 1),
            ("410", "VENDOR_ACCOUNT_ERROR", 1),
        ],
    )
    async def test_errors(self, alibaba, fake_alibaba, make_claim, code, reason, attempts) -> None:
        """Transient gateway and system errors are retried (not billed); the others are not."""
        fake_alibaba.plan(*[ErrorCode(code)] * 3)
        with pytest.raises(VendorUnavailable) as raised:
            await alibaba(max_retries=2).check_name_id(make_claim())
        assert (raised.value.reason, raised.value.vendor_code) == (reason, code)
        assert len(fake_alibaba.requests) == attempts

    async def test_a_non_json_proxy_answer(self, alibaba, fake_alibaba, make_claim) -> None:
        """An HTML 502 from a proxy is VENDOR_UNAVAILABLE, not a crash."""
        fake_alibaba.plan(HttpStatus(502, "<html>bad gateway</html>"))
        with pytest.raises(VendorUnavailable, match="HTTP_502"):
            await alibaba().check_name_id(make_claim())

    async def test_every_request_has_a_fresh_nonce(self, alibaba, fake_alibaba, make_claim) -> None:
        """The fake refuses a reused x-acs-signature-nonce; ten calls all verify."""
        vendor = alibaba()
        for _ in range(10):
            await vendor.check_name_id(make_claim())
        assert fake_alibaba.all_signatures_ok
        assert len(fake_alibaba.requests) == 10


class TestFace:
    async def test_init_then_describe(self, alibaba, fake_alibaba: FakeAlibaba, make_claim) -> None:
        """InitFaceVerify gives CertifyId/Url; Describe is PENDING (424) until done, then T."""
        vendor = alibaba()
        session = await vendor.start_liveness(
            make_claim(), LivenessRequest(REF, meta_info='{"bioMetaInfo":"x"}')
        )
        assert isinstance(session, LivenessSession)
        sent = fake_alibaba.requests[-1].fields
        assert (sent["OuterOrderNo"], sent["CertType"], sent["SceneId"]) == (
            REF,
            "IDENTITY_CARD",
            "1000000006",
        )
        pending = await vendor.liveness_result(session.token, REF)
        assert (pending.kind, pending.vendor_code) == (VerdictKind.PENDING, "424")
        fake_alibaba.complete_liveness(session.token, passed=True)
        assert (await vendor.liveness_result(session.token, REF)).kind is VerdictKind.MATCH

    async def test_callback_url_and_token_only_when_given(
        self, alibaba, fake_alibaba: FakeAlibaba, make_claim
    ) -> None:
        """CallbackUrl and CallbackToken go to InitFaceVerify with callbacks on, and not otherwise."""
        vendor = alibaba()
        await vendor.start_liveness(make_claim(), LivenessRequest(REF, meta_info="{}"))
        assert "CallbackUrl" not in fake_alibaba.requests[-1].fields
        request = LivenessRequest(
            REF,
            meta_info="{}",
            callback_url="https://idv.example/cb/alibaba/t/x",
            callback_token="tok",  # noqa: S106
        )
        await vendor.start_liveness(make_claim(), request)
        sent = fake_alibaba.requests[-1].fields
        assert (sent["CallbackUrl"], sent["CallbackToken"]) == ("https://idv.example/cb/alibaba/t/x", "tok")
        assert "tok" not in repr(request)

    async def test_face_mismatch_and_invalid_id(self, alibaba, fake_alibaba: FakeAlibaba, make_claim) -> None:
        """Passed F with SubCode 204 is FACE_MISMATCH; an unknown CertifyId (406) is CHALLENGE_INVALID."""
        vendor = alibaba()
        session = await vendor.start_liveness(make_claim(), LivenessRequest(REF, meta_info="{}"))
        assert isinstance(session, LivenessSession)
        fake_alibaba.complete_liveness(session.token, passed=False, sub_code="204")
        assert (await vendor.liveness_result(session.token, REF)).reason == "FACE_MISMATCH"
        assert (await vendor.liveness_result("0" * 32, REF)).reason == "CHALLENGE_INVALID"

    async def test_missing_meta_info_is_invalid_input(self, alibaba, make_claim) -> None:
        """Without the client SDK's MetaInfo the vendor refuses (401)."""
        refused = await alibaba().start_liveness(make_claim(), LivenessRequest(REF))
        assert not isinstance(refused, LivenessSession)
        assert refused.kind is VerdictKind.INVALID_INPUT

    async def test_scene_id_is_required(self, alibaba, make_claim) -> None:
        """Without liveness_scene_id the step cannot start a flow."""
        with pytest.raises(ConfigError, match="liveness_scene_id"):
            await alibaba(liveness_scene_id=0).start_liveness(make_claim(), LivenessRequest(REF))

    async def test_probe(self, alibaba, fake_alibaba, monkeypatch) -> None:
        """The probe is ok with the right key and not with a wrong one."""
        vendor = alibaba()
        assert (await vendor.probe()).ok
        monkeypatch.setattr(vendor, "_credentials", type(vendor._credentials)(fake_alibaba.key_id, "bad"))
        report = await vendor.probe()
        assert (report.ok, report.vendor_code) == (False, "SignatureDoesNotMatch")

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The enterprise registry check: Cloudauth's EntElementVerify(V2) and the gateway's org_elements.

Every BizCode, business status, ReasonDetail flag and retired ReasonCode of the references, the
enterprise check's own error codes, a timeout, a malformed answer and an unknown status.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from idverify.domain.errors import ConfigError
from idverify.domain.subjects import DocumentType
from idverify.vendors import acs3
from idverify.vendors.alibaba import AlibabaCloudauth
from idverify.vendors.alibaba_enterprise_codes import ENT_REASON_FLAGS, NOT_OPERATING_STATUSES
from idverify.vendors.api import Check, OrgClaim, OrgMode
from idverify.vendors.fakes import (
    EntResult,
    ErrorCode,
    FakeAlibaba,
    FakeGateway,
    HttpStatus,
    Organization,
    Slow,
)
from idverify.vendors.verdicts import VendorUnavailable, VerdictKind

# Test organizations: valid GB 32100 check characters, made-up companies and people.
ACME = Organization("杭州示例网络科技有限公司", "91330106673959654P", "张三", "11010519491231002X")
GONE = Organization("北京旧时贸易有限公司", "91110108MA01ABCD1E", "李四", "440106199003070011", status="3")
REF = "0123456789abcdef0123456789abcdef"
# The reference's example answer of EntElementVerifyV2, field for field.
DOCUMENTED_MISMATCH = {
    "BizCode": "2",
    "OpenTime": "2018-09-25/9999-09-09",
    "ReasonDetail": "LegalPersonNameFlag,LegalPersonCertNoFlag",
    "Status": "1",
}


@pytest.fixture(autouse=True)
def registry(fake_alibaba: FakeAlibaba, fake_gateway: FakeGateway) -> None:
    """Both fakes' registries know ACME (operating) and GONE (deregistered)."""
    for fake in (fake_alibaba, fake_gateway):
        fake.organizations.update({ACME.code: ACME, GONE.code: GONE})


def org_claim(
    organization: Organization = ACME, mode: OrgMode = OrgMode.ENT_3META, **changes: str
) -> OrgClaim:
    fields = {
        "name": organization.name,
        "code": organization.code,
        "legal_representative_name": organization.legal_representative,
        "legal_representative_document_number": organization.legal_representative_id,
        **changes,
    }
    four = mode is OrgMode.ENT_4META
    return OrgClaim(
        reference=REF,
        mode=mode,
        name=fields["name"],
        code=fields["code"],
        legal_representative_name=fields["legal_representative_name"]
        if mode is not OrgMode.ENT_2META
        else "",
        legal_representative_document_type=DocumentType.CN_RIC if four else None,
        legal_representative_document_number=fields["legal_representative_document_number"] if four else "",
    )


class TestCloudauth:
    async def test_an_operating_match_in_every_mode(self, alibaba, fake_alibaba: FakeAlibaba) -> None:
        """BizCode 1 with Status 1 is the only MATCH; the request carries what the mode needs."""
        vendor = alibaba()
        for mode in OrgMode:
            verdict = await vendor.check_organization(org_claim(mode=mode))
            assert (verdict.kind, verdict.vendor_code, verdict.billed) == (VerdictKind.MATCH, "1/1", True)
            sent = fake_alibaba.requests[-1]
            assert sent.action == "EntElementVerifyV2"
            assert sent.fields["InfoVerifyType"] == mode.value
            assert ("LegalPersonName" in sent.fields) is (mode is not OrgMode.ENT_2META)
            assert ("LegalPersonCertNo" in sent.fields) is (mode is OrgMode.ENT_4META)
        assert fake_alibaba.all_signatures_ok

    async def test_the_request_is_a_signed_form_of_the_2022_version(
        self, alibaba, fake_alibaba: FakeAlibaba
    ) -> None:
        """Version 2022-11-25, parameters in the ACS3-signed body, our reference but no account id."""
        vendor = alibaba()
        await vendor.check_organization(org_claim())
        request = vendor._prepare("EntElementVerifyV2", {"EntName": ACME.name}, version="2022-11-25")
        assert request.headers["x-acs-version"] == "2022-11-25"
        assert request.headers["x-acs-content-sha256"] == hashlib.sha256(request.body).hexdigest()
        assert "?" not in request.url
        parsed = acs3.parse_authorization(request.headers["Authorization"])
        assert parsed is not None
        assert {"x-acs-version", "x-acs-content-sha256", "x-acs-action"} <= set(parsed.signed_headers)
        assert fake_alibaba.requests[-1].fields == {
            "SceneCode": "idverify",
            "MerchantBizId": REF,
            "MerchantUserId": REF,
            "UserAuthorization": "1",
            "InfoVerifyType": "ENT_3META",
            "EntName": ACME.name,
            "LicenseNo": ACME.code,
            "LegalPersonName": ACME.legal_representative,
        }

    async def test_the_signature_recomputed_by_hand(self, credentials_env, fake_alibaba) -> None:
        """The ACS3 steps of the signature page, done here without the signer, give the same value.

        No example is published for the enterprise actions; this rebuilds their canonical request
        (POST, path /, empty query, the six x-acs-* and host headers, the body's SHA-256) from
        the page's rules with a fixed clock and nonce, so a wrong version or header would differ.
        """
        vendor = AlibabaCloudauth(
            "alibaba",
            {
                **fake_alibaba.vendor_options(),
                **credentials_env("ALI", "YourAccessKeyId", "YourAccessKeySecret"),
            },
            clock=lambda: 1_698_315_752.0,  # 2023-10-26T10:22:32Z, the page's date
            nonce=lambda: "3156853299f313e23d1673dc12e1703d",
        )
        try:
            request = vendor._prepare(
                "EntElementVerifyV2", {"EntName": "示例", "InfoVerifyType": "ENT_2META"}, version="2022-11-25"
            )
        finally:
            await vendor.aclose()
        body_hash = hashlib.sha256(b"EntName=%E7%A4%BA%E4%BE%8B&InfoVerifyType=ENT_2META").hexdigest()
        assert request.body == b"EntName=%E7%A4%BA%E4%BE%8B&InfoVerifyType=ENT_2META"
        host = fake_alibaba.url.removeprefix("http://")
        names = ["content-type", "host", "x-acs-action", "x-acs-content-sha256", "x-acs-date"]
        signed = ";".join([*names, "x-acs-signature-nonce", "x-acs-version"])
        canonical = (
            "POST\n/\n\n"
            "content-type:application/x-www-form-urlencoded\n"
            f"host:{host}\n"
            "x-acs-action:EntElementVerifyV2\n"
            f"x-acs-content-sha256:{body_hash}\n"
            "x-acs-date:2023-10-26T10:22:32Z\n"
            "x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n"
            "x-acs-version:2022-11-25\n\n"
            f"{signed}\n{body_hash}"
        )
        to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
        signature = hmac.new(b"YourAccessKeySecret", to_sign.encode(), hashlib.sha256).hexdigest()
        assert request.headers["Authorization"] == (
            f"ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders={signed},Signature={signature}"
        )

    @pytest.mark.parametrize("status", sorted(NOT_OPERATING_STATUSES))
    async def test_a_match_that_does_not_operate(
        self, alibaba, fake_alibaba: FakeAlibaba, status: str
    ) -> None:
        """Relocated, deregistered, revoked, cancelled, suspended or other: ORG_NOT_ACTIVE, billed."""
        fake_alibaba.organizations[ACME.code] = Organization(
            ACME.name, ACME.code, ACME.legal_representative, ACME.legal_representative_id, status=status
        )
        verdict = await alibaba().check_organization(org_claim())
        assert (verdict.kind, verdict.reason, verdict.vendor_code, verdict.billed) == (
            VerdictKind.REJECTED,
            "ORG_NOT_ACTIVE",
            f"1/{status}",
            True,
        )

    async def test_a_deregistered_company_from_the_table(self, alibaba) -> None:
        """The fake's own deregistered company (Status 3) is refused as such."""
        verdict = await alibaba().check_organization(org_claim(GONE))
        assert (verdict.kind, verdict.reason) == (VerdictKind.REJECTED, "ORG_NOT_ACTIVE")

    @pytest.mark.parametrize(("flag", "reason"), list(ENT_REASON_FLAGS.items()))
    async def test_each_reason_detail_flag(
        self, alibaba, fake_alibaba: FakeAlibaba, flag: str, reason: str
    ) -> None:
        """Each inconsistent element has its own reason."""
        fake_alibaba.plan(EntResult({"BizCode": "2", "ReasonDetail": flag, "Status": "1"}))
        verdict = await alibaba().check_organization(org_claim())
        assert (verdict.kind, verdict.reason, verdict.vendor_code, verdict.billed) == (
            VerdictKind.MISMATCH,
            reason,
            f"2/{flag}",
            True,
        )

    async def test_the_documented_example_answer(self, alibaba, fake_alibaba: FakeAlibaba) -> None:
        """Two flags: the reason names the representative's name, the vendor code keeps both."""
        fake_alibaba.plan(EntResult(DOCUMENTED_MISMATCH))
        verdict = await alibaba().check_organization(org_claim(mode=OrgMode.ENT_4META))
        assert (verdict.reason, verdict.vendor_code) == (
            "LEGAL_REP_NAME_MISMATCH",
            "2/LegalPersonNameFlag,LegalPersonCertNoFlag",
        )

    async def test_the_fake_registry_compares_every_element(self, alibaba) -> None:
        """Wrong name, wrong representative, wrong ID number, a name under another code."""
        vendor = alibaba()
        wrong_name = await vendor.check_organization(org_claim(name="杭州冒名科技有限公司"))
        wrong_rep = await vendor.check_organization(org_claim(legal_representative_name="王五"))
        wrong_id = await vendor.check_organization(
            org_claim(mode=OrgMode.ENT_4META, legal_representative_document_number="440106199003070011")
        )
        other_code = await vendor.check_organization(org_claim(code="92440300MA5FXY312M"))
        assert [v.reason for v in (wrong_name, wrong_rep, wrong_id, other_code)] == [
            "ORG_NAME_MISMATCH",
            "LEGAL_REP_NAME_MISMATCH",
            "LEGAL_REP_ID_MISMATCH",
            "ORG_CODE_MISMATCH",
        ]

    async def test_not_found(self, alibaba) -> None:
        """BizCode 3: ORG_NOT_FOUND, not billed."""
        verdict = await alibaba().check_organization(
            org_claim(name="无此公司有限公司", code="91310115MA1K4PQR70")
        )
        assert (verdict.kind, verdict.reason, verdict.vendor_code, verdict.billed) == (
            VerdictKind.NO_RECORD,
            "ORG_NOT_FOUND",
            "3",
            False,
        )

    @pytest.mark.parametrize(
        ("result", "kind", "reason", "code"),
        [
            ({"BizCode": "2", "ReasonCode": "201"}, VerdictKind.MISMATCH, "LEGAL_REP_MISMATCH", "2/201"),
            ({"BizCode": "2", "ReasonCode": "202"}, VerdictKind.MISMATCH, "ORG_MISMATCH", "2/202"),
            ({"BizCode": "3", "ReasonCode": "301"}, VerdictKind.NO_RECORD, "ORG_NOT_FOUND", "3/301"),
            ({"BizCode": "3", "ReasonCode": "302"}, VerdictKind.NO_RECORD, "LEGAL_REP_NOT_FOUND", "3/302"),
            # A ReasonCode that contradicts the BizCode is not believed.
            ({"BizCode": "2", "ReasonCode": "301"}, VerdictKind.MISMATCH, "ORG_MISMATCH", "2"),
            ({"BizCode": "2", "ReasonDetail": "SomethingNew"}, VerdictKind.MISMATCH, "ORG_MISMATCH", "2"),
        ],
    )
    async def test_the_retired_reason_codes_of_entelementverify(
        self, alibaba, fake_alibaba: FakeAlibaba, result, kind, reason, code
    ) -> None:
        """EntElementVerify's ReasonCode counts when no flag is named."""
        fake_alibaba.plan(EntResult(result))
        verdict = await alibaba(enterprise_action="EntElementVerify").check_organization(org_claim())
        assert (verdict.kind, verdict.reason, verdict.vendor_code) == (kind, reason, code)
        assert fake_alibaba.requests[-1].action == "EntElementVerify"

    async def test_v1_answers_from_the_table_with_a_reason_code(self, alibaba) -> None:
        """The fake's EntElementVerify sends ReasonCode too; the flags still decide."""
        verdict = await alibaba(enterprise_action="EntElementVerify").check_organization(
            org_claim(legal_representative_name="王五")
        )
        assert verdict.reason == "LEGAL_REP_NAME_MISMATCH"

    @pytest.mark.parametrize(
        "result",
        [
            {"BizCode": "1", "Status": "9"},
            {"BizCode": "1"},
            {"BizCode": "1", "Status": None},
        ],
    )
    async def test_an_unknown_business_status_gives_no_verdict(self, alibaba, fake_alibaba, result) -> None:
        """A match whose status is not documented: VENDOR_ERROR, nothing echoed."""
        fake_alibaba.plan(EntResult(result))
        with pytest.raises(VendorUnavailable) as raised:
            await alibaba().check_organization(org_claim())
        assert (raised.value.reason, raised.value.vendor_code) == ("VENDOR_ERROR", "1/UNKNOWN_STATUS")

    async def test_an_unknown_biz_code(self, alibaba, fake_alibaba) -> None:
        fake_alibaba.plan(EntResult({"BizCode": "7", "Status": "1"}))
        with pytest.raises(VendorUnavailable) as raised:
            await alibaba().check_organization(org_claim())
        assert (raised.value.reason, raised.value.vendor_code) == ("VENDOR_ERROR", "UNKNOWN_BIZ_CODE")

    @pytest.mark.parametrize(
        "body",
        [
            '{"Code": "Success", "Message": "success"}',
            '{"Code": "Success", "Result": "1"}',
            "[1, 2]",
            "not json",
        ],
    )
    async def test_a_malformed_answer(self, alibaba, fake_alibaba, body: str) -> None:
        """No Result, a Result that is not an object, not an object at all, not JSON."""
        fake_alibaba.plan(HttpStatus(200, body))
        with pytest.raises(VendorUnavailable) as raised:
            await alibaba().check_organization(org_claim())
        assert (raised.value.reason, raised.value.vendor_code) == ("VENDOR_ERROR", "MALFORMED_RESPONSE")

    async def test_a_timeout(self, alibaba, fake_alibaba) -> None:
        fake_alibaba.plan(Slow(1.5))
        with pytest.raises(VendorUnavailable) as raised:
            await alibaba(max_retries=0, timeout_seconds=0.5).check_organization(org_claim())
        assert raised.value.reason == "VENDOR_TIMEOUT"

    @pytest.mark.parametrize(
        ("code", "kind", "reason"),
        [
            ("MissingParameter", VerdictKind.INVALID_INPUT, "INVALID_INPUT"),
            ("InvalidParameter", VerdictKind.INVALID_INPUT, "INVALID_INPUT"),
        ],
    )
    async def test_parameter_errors_are_verdicts(self, alibaba, fake_alibaba, code, kind, reason) -> None:
        """The check's own 400/401 codes (HTTP 4xx with a JSON body) say the input was refused."""
        fake_alibaba.plan(ErrorCode(code))
        verdict = await alibaba().check_organization(org_claim())
        assert (verdict.kind, verdict.reason, verdict.vendor_code) == (kind, reason, code)

    @pytest.mark.parametrize(
        ("code", "reason"),
        [
            ("Forbidden.AccountAccessDenied", "VENDOR_ACCOUNT_ERROR"),
            ("Forbidden.RAMUserAccessDenied", "VENDOR_ACCOUNT_ERROR"),
            ("SignatureDoesNotMatch", "VENDOR_AUTH_FAILED"),
            ("Throttling.User", "VENDOR_BUSY"),
            ("InternalError", "VENDOR_ERROR"),
        ],
    )
    async def test_account_and_gateway_errors(self, alibaba, fake_alibaba, code, reason) -> None:
        fake_alibaba.plan(*[ErrorCode(code)] * 3)
        with pytest.raises(VendorUnavailable) as raised:
            await alibaba(max_retries=2).check_organization(org_claim())
        assert (raised.value.reason, raised.value.vendor_code) == (reason, code)

    async def test_the_fake_refuses_a_missing_element(self, alibaba) -> None:
        """ENT_4META without the representative's ID number is a MissingParameter, as documented."""
        claim = org_claim(mode=OrgMode.ENT_4META, legal_representative_document_number="")
        verdict = await alibaba().check_organization(claim)
        assert (verdict.kind, verdict.vendor_code) == (VerdictKind.INVALID_INPUT, "MissingParameter")

    def test_options(self, alibaba) -> None:
        with pytest.raises(ConfigError, match="enterprise_action"):
            alibaba(enterprise_action="EntVerify")
        with pytest.raises(ConfigError, match="enterprise_scene_code"):
            alibaba(enterprise_scene_code="has space")
        assert alibaba(enterprise_scene_code="shop_signup").supports(Check.ORGANIZATION, DocumentType.CN_USCC)


class TestGateway:
    async def test_org_elements(self, gateway, fake_gateway: FakeGateway) -> None:
        """Match, each mismatch, not found, deregistered; the claim carries only what the mode needs."""
        vendor = gateway()
        assert (await vendor.check_organization(org_claim())).kind is VerdictKind.MATCH
        assert fake_gateway.requests[-1].action == "org_elements"
        assert fake_gateway.requests[-1].fields == {
            "mode": "ENT_3META",
            "name": ACME.name,
            "code": ACME.code,
            "legal_representative_name": ACME.legal_representative,
        }
        answers = [
            await vendor.check_organization(org_claim(name="杭州冒名科技有限公司")),
            await vendor.check_organization(org_claim(legal_representative_name="王五")),
            await vendor.check_organization(
                org_claim(mode=OrgMode.ENT_4META, legal_representative_document_number="440106199003070011")
            ),
            await vendor.check_organization(
                org_claim(name="上海无此企业有限公司", code="91310115MA1K4PQR70")
            ),
            await vendor.check_organization(org_claim(GONE)),
        ]
        assert [(a.kind, a.reason) for a in answers] == [
            (VerdictKind.MISMATCH, "ORG_NAME_MISMATCH"),
            (VerdictKind.MISMATCH, "LEGAL_REP_NAME_MISMATCH"),
            (VerdictKind.MISMATCH, "LEGAL_REP_ID_MISMATCH"),
            (VerdictKind.NO_RECORD, "ORG_NOT_FOUND"),
            (VerdictKind.REJECTED, "ORG_NOT_ACTIVE"),
        ]
        assert fake_gateway.all_signatures_ok

    @pytest.mark.parametrize(
        ("answer", "kind", "reason"),
        [
            # A reason outside the organization set is replaced by the kind's default.
            ({"result": "mismatch", "reason": "AUTHORITY_MISMATCH"}, VerdictKind.MISMATCH, "ORG_MISMATCH"),
            ({"result": "no_record", "reason": "NO_RECORD"}, VerdictKind.NO_RECORD, "ORG_NOT_FOUND"),
            ({"result": "rejected", "reason": "BANK_CARD_REJECTED"}, VerdictKind.REJECTED, "ORG_NOT_ACTIVE"),
            ({"result": "match", "business_status": "revoked"}, VerdictKind.REJECTED, "ORG_NOT_ACTIVE"),
            ({"result": "invalid_input"}, VerdictKind.INVALID_INPUT, "INVALID_INPUT"),
        ],
    )
    async def test_answers_keep_to_the_organization_reasons(
        self, gateway, fake_gateway: FakeGateway, answer, kind, reason
    ) -> None:
        fake_gateway.plan(EntResult(answer))
        verdict = await gateway().check_organization(org_claim())
        assert (verdict.kind, verdict.reason) == (kind, reason)

    @pytest.mark.parametrize(
        ("answer", "code"),
        [
            ({"result": "match"}, "UNKNOWN_STATUS"),
            ({"result": "match", "business_status": "dormant"}, "UNKNOWN_STATUS"),
            ({"result": "verified"}, "UNKNOWN_RESULT"),
        ],
    )
    async def test_a_match_without_a_known_status_gives_no_verdict(
        self, gateway, fake_gateway: FakeGateway, answer, code
    ) -> None:
        fake_gateway.plan(EntResult(answer))
        with pytest.raises(VendorUnavailable) as raised:
            await gateway().check_organization(org_claim())
        assert (raised.value.reason, raised.value.vendor_code) == ("VENDOR_ERROR", code)

    @pytest.mark.parametrize(
        ("answer", "code"),
        [
            # Signed by the gateway, yet not an answer: never a verdict on the organization.
            ([1, 2], "MALFORMED_RESPONSE"),
            ("match", "MALFORMED_RESPONSE"),
            ({"result": ["match"]}, "UNKNOWN_RESULT"),
            ({"result": "match", "business_status": ["operating"]}, "UNKNOWN_STATUS"),
            ({"result": "match", "business_status": {"operating": True}}, "UNKNOWN_STATUS"),
            ({"result": "match", "business_status": 1}, "UNKNOWN_STATUS"),
        ],
    )
    async def test_a_malformed_answer(self, gateway, fake_gateway: FakeGateway, answer, code) -> None:
        fake_gateway.plan(EntResult(answer))
        with pytest.raises(VendorUnavailable) as raised:
            await gateway().check_organization(org_claim())
        assert (raised.value.reason, raised.value.vendor_code) == ("VENDOR_ERROR", code)

    async def test_a_timeout(self, gateway, fake_gateway: FakeGateway) -> None:
        fake_gateway.plan(Slow(1.5))
        with pytest.raises(VendorUnavailable) as raised:
            await gateway(max_retries=0, timeout_seconds=0.5).check_organization(org_claim())
        assert raised.value.reason == "VENDOR_TIMEOUT"

    async def test_an_unsigned_match_is_refused(self, gateway, fake_gateway: FakeGateway) -> None:
        """A forged "match" injected on the way is not believed."""
        fake_gateway.sign_responses = False
        with pytest.raises(VendorUnavailable, match="BAD_RESPONSE_SIGNATURE"):
            await gateway().check_organization(org_claim())

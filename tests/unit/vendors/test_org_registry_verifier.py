# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``org_registry`` verifier over the Cloudauth and gateway fakes: modes, outcomes, wiring."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date
from typing import Any

import pytest

from idverify.domain.errors import ConfigError
from idverify.domain.subjects import DocumentType, Subject, SubjectKind
from idverify.vendors.fakes import FakeAlibaba, FakeGateway, FakeTencent, Organization, Slow
from idverify.vendors.registry import EXTRAS_KEY, VendorRegistry
from idverify.verifiers.base import Outcome, StepContext, Verifier, VerifierDeps
from idverify.verifiers.org_registry import OrgRegistryVerifier
from idverify.verifiers.registry import build_verifier

VID = "cd" * 16
ACME = Organization("杭州示例网络科技有限公司", "91330106673959654P", "张三", "11010519491231002X")
REVOKED = Organization("广州吊销实业有限公司", "92440300MA5FXY312M", "李四", "440106199003070011", status="4")


class Keyed:
    def mac(self, tenant: str, purpose: str, data: bytes) -> bytes:
        return hmac.new(f"{tenant}/{purpose}".encode(), data, hashlib.sha256).digest()


class NoSms:
    async def send_code(self, phone_e164: str, code: str, *, tenant: str, verification_id: str) -> None:
        del phone_e164, code, tenant, verification_id
        raise AssertionError("no SMS here")


@pytest.fixture
async def deps(
    fake_alibaba: FakeAlibaba,
    fake_gateway: FakeGateway,
    fake_tencent: FakeTencent,
    credentials_env,
    monkeypatch,
):
    for fake in (fake_alibaba, fake_gateway):
        fake.organizations.update({ACME.code: ACME, REVOKED.code: REVOKED})
    monkeypatch.setenv("GW_SECRET", fake_gateway.secret)
    fast = {"backoff_seconds": 0.0, "timeout_seconds": 1.0, "max_retries": 0}
    registry = VendorRegistry(
        {
            "alibaba": {
                **fake_alibaba.vendor_options(),
                **credentials_env("ALI", fake_alibaba.key_id, fake_alibaba.secret),
                **fast,
            },
            "gateway": {
                "kind": "http",
                "url": fake_gateway.url,
                "secret_env": "GW_SECRET",
                "documents": ["cn_uscc", "cn_ric"],
                **fast,
            },
            "tencent": {
                **fake_tencent.vendor_options(),
                **credentials_env("TC", fake_tencent.key_id, fake_tencent.secret),
            },
        }
    )
    yield VerifierDeps(keyed=Keyed(), sms_sender=NoSms(), extras={EXTRAS_KEY: registry})
    await registry.aclose()


def context(organization: Organization = ACME, **changes: Any) -> StepContext:
    fields: dict[str, Any] = {
        "kind": SubjectKind.ORGANIZATION,
        "name": organization.name,
        "document_type": DocumentType.CN_USCC,
        "document_number": organization.code,
        "legal_representative_name": organization.legal_representative,
        "legal_representative_document_type": DocumentType.CN_RIC,
        "legal_representative_document_number": organization.legal_representative_id,
    }
    fields.update(changes)
    return StepContext("acme", VID, Subject(**fields), None, date(2026, 6, 1))


@pytest.mark.parametrize("vendor", ["alibaba", "gateway"])
class TestOutcomes:
    async def test_pass_only_for_an_operating_match(self, deps: VerifierDeps, vendor: str) -> None:
        """ENT_3META by default: the operating company passes, the revoked one is ORG_NOT_ACTIVE."""
        verifier = OrgRegistryVerifier({"vendor": vendor}, deps)
        assert verifier.mode.value == "ENT_3META"
        assert (await verifier.check(context())).outcome is Outcome.PASS
        revoked = await verifier.check(context(REVOKED))
        assert (revoked.outcome, revoked.reason) == (Outcome.FAIL, "ORG_NOT_ACTIVE")

    async def test_each_mismatch_has_its_reason(self, deps: VerifierDeps, vendor: str) -> None:
        three = OrgRegistryVerifier({"vendor": vendor}, deps)
        four = OrgRegistryVerifier({"vendor": vendor, "mode": "ENT_4META"}, deps)
        results = [
            await three.check(context(name="杭州冒名网络科技有限公司")),
            await three.check(context(legal_representative_name="王五")),
            await four.check(context(legal_representative_document_number="440106199003070011")),
            await three.check(context(document_number="91310115MA1K4PQR70")),
            await three.check(context(name="上海无此企业有限公司", document_number="91310115MA1K4PQR70")),
        ]
        assert [(r.outcome, r.reason) for r in results] == [
            (Outcome.FAIL, "ORG_NAME_MISMATCH"),
            (Outcome.FAIL, "LEGAL_REP_NAME_MISMATCH"),
            (Outcome.FAIL, "LEGAL_REP_ID_MISMATCH"),
            (Outcome.FAIL, "ORG_CODE_MISMATCH"),
            (Outcome.FAIL, "ORG_NOT_FOUND"),
        ]

    async def test_two_elements_ignore_the_representative(self, deps: VerifierDeps, vendor: str) -> None:
        """ENT_2META sends no representative, so a wrong one cannot fail it."""
        two = OrgRegistryVerifier({"vendor": vendor, "mode": "ENT_2META"}, deps)
        assert two.required_fields == frozenset({"name", "document_type", "document_number"})
        assert (await two.check(context(legal_representative_name=""))).outcome is Outcome.PASS

    async def test_missing_elements_fail_before_any_call(self, deps: VerifierDeps, vendor: str) -> None:
        four = OrgRegistryVerifier({"vendor": vendor, "mode": "ENT_4META"}, deps)
        assert "legal_representative_document_number" in four.required_fields
        cases = [
            (context(name=" "), "NAME_REQUIRED"),
            (context(legal_representative_name=""), "LEGAL_REP_REQUIRED"),
            (context(legal_representative_document_type=None), "LEGAL_REP_DOCUMENT_REQUIRED"),
            (context(legal_representative_document_type=DocumentType.PASSPORT), "DOCUMENT_TYPE_UNSUPPORTED"),
            (context(kind=SubjectKind.PERSON), "DOCUMENT_TYPE_UNSUPPORTED"),
            (context(document_type=DocumentType.CN_RIC), "DOCUMENT_TYPE_UNSUPPORTED"),
        ]
        for step_context, reason in cases:
            result = await four.check(step_context)
            assert (result.outcome, result.reason) == (Outcome.FAIL, reason)

    async def test_a_registry_that_does_not_answer_is_unavailable(
        self, deps: VerifierDeps, vendor: str, fake_alibaba: FakeAlibaba, fake_gateway: FakeGateway
    ) -> None:
        (fake_alibaba if vendor == "alibaba" else fake_gateway).plan(Slow(2.5))
        result = await OrgRegistryVerifier({"vendor": vendor}, deps).check(context())
        assert (result.outcome, result.reason) == (Outcome.UNAVAILABLE, "VENDOR_TIMEOUT")


class TestWiring:
    def test_a_plugin_named_org_registry(self, deps: VerifierDeps) -> None:
        built = build_verifier("org_registry", OrgRegistryVerifier, {"vendor": "alibaba"}, deps)
        assert isinstance(built, Verifier)
        assert getattr(built, "provider", "") == "alibaba"
        assert "ENT_3META" in repr(built)

    def test_config_errors(self, deps: VerifierDeps) -> None:
        """A mode of another name, a stray option, and a vendor without an enterprise check."""
        with pytest.raises(ConfigError, match="mode"):
            OrgRegistryVerifier({"vendor": "alibaba", "mode": "ENT_5META"}, deps)
        with pytest.raises(ConfigError, match="unknown options"):
            OrgRegistryVerifier({"vendor": "alibaba", "region": "x"}, deps)
        with pytest.raises(ConfigError, match="no enterprise registry check"):
            OrgRegistryVerifier({"vendor": "tencent"}, deps)

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``http`` vendor kind: the signed JSON protocol both ways, against the fake gateway."""

from __future__ import annotations

import pytest

from idverify.domain.errors import ConfigError
from idverify.vendors.fakes import ErrorCode, FakeGateway, ResultCode
from idverify.vendors.gateway import HttpGateway
from idverify.vendors.verdicts import VendorUnavailable, VerdictKind


class TestProtocol:
    async def test_checks_send_only_their_fields(
        self, gateway, fake_gateway: FakeGateway, make_claim
    ) -> None:
        """name_id sends three fields, carrier four, bank_card five; all signed."""
        vendor = gateway()
        assert (await vendor.check_name_id(make_claim())).kind is VerdictKind.MATCH
        assert (await vendor.check_carrier(make_claim())).kind is VerdictKind.MATCH
        assert (await vendor.check_bank_card(make_claim(bank_card="1" * 16))).reason == "BANK_CARD_MISMATCH"
        sizes = [len(seen.fields) for seen in fake_gateway.requests]
        assert sizes == [3, 4, 5]
        assert fake_gateway.all_signatures_ok

    async def test_an_unsigned_answer_is_refused(
        self, gateway, fake_gateway: FakeGateway, make_claim
    ) -> None:
        """A forged "match" without the shared secret's signature is never believed."""
        fake_gateway.sign_responses = False
        with pytest.raises(VendorUnavailable) as raised:
            await gateway().check_name_id(make_claim())
        assert (raised.value.reason, raised.value.vendor_code) == (
            "VENDOR_AUTH_FAILED",
            "BAD_RESPONSE_SIGNATURE",
        )

    async def test_busy_not_billed_is_retried(self, gateway, fake_gateway: FakeGateway, make_claim) -> None:
        """{"result": "busy", "billed": false} is retried; the next answer counts."""
        fake_gateway.plan(ErrorCode("busy"))
        assert (await gateway().check_name_id(make_claim())).kind is VerdictKind.MATCH
        assert len(fake_gateway.requests) == 2

    async def test_reasons_must_look_like_codes(self, gateway, fake_gateway: FakeGateway, make_claim) -> None:
        """A free-text reason from the gateway is replaced by ours (it would reach logs and the API)."""
        fake_gateway.plan(ResultCode("mismatch", "x"))
        verdict = await gateway().check_name_id(make_claim())
        assert (verdict.kind, verdict.reason) == (VerdictKind.MISMATCH, "AUTHORITY_MISMATCH")

    async def test_unknown_result(self, gateway, fake_gateway: FakeGateway, make_claim) -> None:
        """An answer outside the protocol is VENDOR_ERROR."""
        fake_gateway.plan(ResultCode("perhaps"))
        with pytest.raises(VendorUnavailable, match="VENDOR_ERROR"):
            await gateway().check_name_id(make_claim())

    async def test_ping(self, gateway) -> None:
        """The probe gets a signed pong."""
        assert (await gateway().probe()).ok

    def test_secret_must_be_long(self, fake_gateway: FakeGateway, monkeypatch) -> None:
        """A short shared secret is refused at start-up."""
        monkeypatch.setenv("SHORT", "x" * 8)
        with pytest.raises(ConfigError, match="at least 32"):
            HttpGateway("gw", {"url": fake_gateway.url, "secret_env": "SHORT"})

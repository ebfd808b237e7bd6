"""The one filter every span, metric and log attribute passes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idverify.observability.telemetry import ALLOWED_ATTRIBUTES, safe_attributes


class TestSafeAttributes:
    def test_unknown_keys_are_dropped(self) -> None:
        """Only allow-listed keys survive."""
        assert safe_attributes({"subject.name": "x", "idverify.method": "sms"}) == {"idverify.method": "sms"}

    @pytest.mark.parametrize(
        "value",
        [
            "张三",
            "13800000000",
            "+8613800000000",
            "11010519491231002X",
            "6222021234567890123",
            "a b",
            "x" * 200,
        ],
    )
    def test_personal_looking_values_are_dropped_even_under_allowed_keys(self, value: str) -> None:
        """Names, long digit runs, spaces and long text never pass, whatever the key."""
        assert safe_attributes({"idverify.reason": value, "idverify.request_id": value}) == {}

    def test_codes_pass(self) -> None:
        """Enum-like codes and generated hex ids pass."""
        attributes = {
            "idverify.reason": "OTP_MISMATCH",
            "idverify.verification_id": "0f" * 16,
            "rpc.method": "StartVerification",
            "rpc.grpc.status_code": "OK",
        }
        assert safe_attributes(attributes) == attributes

    def test_display_labels_pass_but_not_long_text(self) -> None:
        """An IP display label is the published, minimised form; free text beyond it is dropped."""
        assert safe_attributes({"idverify.display": "广东"}) == {"idverify.display": "广东"}
        assert safe_attributes({"idverify.display": "广东省广州市天河区1号"}) == {}

    @given(st.dictionaries(st.sampled_from(sorted(ALLOWED_ATTRIBUTES)), st.text(max_size=40)))
    def test_no_digit_run_ever_passes(self, attributes: dict[str, str]) -> None:
        """Whatever the input, no exported string holds six digits in a row (a hex id aside)."""
        for key, value in safe_attributes(attributes).items():
            if key != "idverify.verification_id":
                assert not any(
                    value[i : i + 6].isdigit() and len(value[i : i + 6]) == 6 for i in range(len(value))
                )

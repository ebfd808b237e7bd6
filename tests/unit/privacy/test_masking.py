"""Tests of masking phone and document numbers for display."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idverify.privacy.masking import mask_document, mask_phone

# Each row pairs an input with the masked form a test expects of it.
E164_MASKS = [
    ("+8613800000000", "138****0000"),
    ("+8619912345678", "199****5678"),
    ("+14155550123", "+1 ****0123"),
    ("+79161234567", "+7 ****4567"),
    ("+447911123456", "+44 ****3456"),
    ("+85261234567", "+852 ****4567"),
    ("+886912345678", "+886 ****5678"),
    ("+861012345678", "+86 ****5678"),
    ("+8613800000", "+86 ****0000"),
]
MALFORMED_PHONE_MASKS = [
    ("", ""),
    ("+", "****"),
    ("+8", "+8 ****"),
    ("+86", "+86 ****"),
    ("+861380", "+86 ****"),
    ("+3541234567", "+354 ****"),
    ("13800000000", "****0000"),
    ("138 0000 0000", "****0000"),
    ("1234", "****"),
    ("not a phone", "****"),
    ("+86\uff11\uff13\uff18\uff10\uff10\uff10\uff10\uff10\uff10\uff10", "****"),
]
DOCUMENT_MASKS = [
    ("11010119900307763X", "1****************X"),
    ("E12345678", "E*******8"),
    ("123456", "1****6"),
    ("12345", "*****"),
    ("1", "*"),
    ("", ""),
]


class TestMaskPhone:
    @pytest.mark.parametrize(("e164", "masked"), E164_MASKS)
    def test_masks_e164_numbers(self, e164: str, masked: str) -> None:
        """Mainland mobiles keep 3 + 4 digits; others keep the country code and last 4."""
        assert mask_phone(e164) == masked

    @pytest.mark.parametrize(("value", "masked"), MALFORMED_PHONE_MASKS)
    def test_short_or_malformed_input_stays_masked(self, value: str, masked: str) -> None:
        """Short or non-E.164 input never raises and shows no more than four digits."""
        assert mask_phone(value) == masked

    @settings(database=None)
    @given(st.text())
    def test_never_raises(self, value: str) -> None:
        """Any string masks to a string."""
        assert isinstance(mask_phone(value), str)

    @settings(database=None)
    @given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
    def test_never_reveals_more_than_seven_national_digits(self, e164: str) -> None:
        """At most the country code and seven national digits (mainland 3 + 4) stay visible."""
        masked = mask_phone(e164)
        assert "****" in masked
        visible = sum(c.isdigit() for c in masked.split(" ")[-1])
        assert visible <= 7
        assert e164[1:] not in masked


class TestMaskDocument:
    @pytest.mark.parametrize(("number", "masked"), DOCUMENT_MASKS)
    def test_keeps_first_and_last_of_long_numbers(self, number: str, masked: str) -> None:
        """Numbers of 6 or more characters keep their ends; shorter ones are fully masked."""
        assert mask_document(number) == masked

    @settings(database=None)
    @given(st.text())
    def test_length_kept_and_at_most_two_characters_shown(self, number: str) -> None:
        """The mask keeps the length and shows at most the first and last character."""
        masked = mask_document(number)
        assert len(masked) == len(number)
        assert masked[1:-1].strip("*") == ""

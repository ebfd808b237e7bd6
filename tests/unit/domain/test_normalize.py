# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Tests of name, phone number and opaque identifier normalization."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idverify.domain.errors import InvalidArgument
from idverify.domain.normalize import (
    NAME_FIELD,
    PHONE_FIELD,
    normalize_identifier,
    normalize_identifiers,
    normalize_name,
    normalize_phone,
)


def name_reason(raw: str) -> str:
    with pytest.raises(InvalidArgument) as caught:
        normalize_name(raw)
    assert caught.value.field == NAME_FIELD
    return caught.value.reason


def phone_reason(raw: str) -> str:
    with pytest.raises(InvalidArgument) as caught:
        normalize_phone(raw)
    assert caught.value.field == PHONE_FIELD
    return caught.value.reason


class TestNormalizeName:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("张三", "张三"),
            ("  张  三 ", "张 三"),
            ("\uff21\uff4c\uff49\uff43\uff45\u3000Smith", "Alice Smith"),
            ("Jean  \u00a0Pierre", "Jean Pierre"),
            ("e\u0301lodie", "\u00e9lodie"),
        ],
    )
    def test_canonical_form(self, raw: str, expected: str) -> None:
        """NFKC, trimmed, inner whitespace of any kind collapsed to one space."""
        assert normalize_name(raw) == expected

    @pytest.mark.parametrize("dot", ["\u00b7", "\u2022", "\u2027", "\u2219", "\u22c5", "\u30fb", "\uff65"])
    def test_middle_dot_look_alikes_become_u00b7(self, dot: str) -> None:
        """The separator of minority and foreign names becomes U+00B7 whichever dot was typed."""
        assert normalize_name(f"阿依古丽{dot}买买提") == "阿依古丽\u00b7买买提"

    def test_private_use_characters_stay(self) -> None:
        """Private-use code points stay, since household registers encode rare hanzi there."""
        assert normalize_name("王\ue000明") == "王\ue000明"

    @pytest.mark.parametrize("raw", ["", "   ", "\u3000", "\u2028"])
    def test_empty_is_rejected(self, raw: str) -> None:
        """Names that are empty once trimmed are EMPTY."""
        assert name_reason(raw) == "EMPTY"

    def test_hundred_characters_pass(self) -> None:
        """A 100-character name is the longest accepted."""
        assert len(normalize_name("a" * 100)) == 100

    @pytest.mark.parametrize("raw", ["a" * 101, "a" * 5000, "\ufdfa" * 10])
    def test_too_long_is_rejected(self, raw: str) -> None:
        """Over 100 characters, before or after NFKC expansion, is TOO_LONG."""
        assert name_reason(raw) == "TOO_LONG"

    @pytest.mark.parametrize(
        "raw",
        [
            "a\x00b",
            "a\tb",
            "line\nbreak",
            "a\u200bb",
            "a\u200db",
            "\u202eevil",
            "a\u00adb",
            "a\ud800b",
            "\udfff",
        ],
    )
    def test_control_format_and_surrogates_are_rejected(self, raw: str) -> None:
        """Control characters, zero-width and bidi format marks and unpaired surrogates are BAD_CHARACTERS."""
        assert name_reason(raw) == "BAD_CHARACTERS"

    @given(st.text())
    def test_idempotent(self, raw: str) -> None:
        """Normalizing a normalized name changes nothing."""
        try:
            once = normalize_name(raw)
        except InvalidArgument:
            return
        assert normalize_name(once) == once

    @given(st.text())
    def test_result_meets_the_name_binding_contract(self, raw: str) -> None:
        """Every accepted name is NFKC, trimmed and collapsed, as the name binding requires."""
        try:
            name = normalize_name(raw)
        except InvalidArgument:
            return
        assert unicodedata.is_normalized("NFKC", name)
        assert " ".join(name.split()) == name
        assert 0 < len(name) <= 100


# Every usual way of writing one mainland mobile, +86 138 0000 0000.
MAINLAND_MOBILE_FORMS = [
    "13800000000",
    "138 0000 0000",
    "+86 138 0000 0000",
    "+8613800000000",
    "0086 138 0000 0000",
    "0086-13800000000",
    "86-138-0000-0000",
    "8613800000000",
    "(+86) 138.0000.0000",
    "\uff0b\uff18\uff16\uff11\uff13\uff18\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff10",
]
# Written with the right characters, yet neither a mainland mobile nor an E.164 number.
MALFORMED_PHONES = [
    "1380000000",
    "138000000000",
    "12800000000",
    "23800000000",
    "+86 010 1234 5678",
    "+86 1380000000",
    "0086 10 12345678",
    "+1234567890123456",
    "+1234567",
    "+0123456789",
    "+",
    "00",
    "010-12345678",
    "+44",
]


class TestNormalizePhone:
    @pytest.mark.parametrize("raw", MAINLAND_MOBILE_FORMS)
    def test_mainland_mobile_forms(self, raw: str) -> None:
        """Every usual way of writing a mainland mobile gives the same E.164 number."""
        assert normalize_phone(raw) == "+8613800000000"

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("+1 (415) 555-0100", "+14155550100"),
            ("+852 9123 4567", "+85291234567"),
            ("00852 9123 4567", "+85291234567"),
            ("+44 20 7946 0000", "+442079460000"),
        ],
    )
    def test_international_numbers(self, raw: str, expected: str) -> None:
        """Numbers written internationally keep their country code."""
        assert normalize_phone(raw) == expected

    @pytest.mark.parametrize("raw", ["+123456789012345", "+12345678"])
    def test_international_length_limits_pass(self, raw: str) -> None:
        """Eight and fifteen digits are both accepted."""
        assert normalize_phone(raw) == raw

    @pytest.mark.parametrize("raw", MALFORMED_PHONES)
    def test_malformed_numbers_are_rejected(self, raw: str) -> None:
        """Short, long, landline, non-mobile +86 and leading-zero country codes are BAD_FORMAT."""
        assert phone_reason(raw) == "BAD_FORMAT"

    @pytest.mark.parametrize(
        "raw", ["138\t0000 0000", "138-0000-000O", "+86 138 0000 000\u0660", "1+3800000000", "tel:138"]
    )
    def test_bad_characters_are_rejected(self, raw: str) -> None:
        """Letters, tabs, non-ASCII digits and stray plus signs are BAD_CHARACTERS."""
        assert phone_reason(raw) == "BAD_CHARACTERS"

    @pytest.mark.parametrize("raw", ["", "  ", "- ()"])
    def test_empty_is_rejected(self, raw: str) -> None:
        """A number without digits or plus sign is EMPTY."""
        assert phone_reason(raw) == "EMPTY"

    def test_too_long_is_rejected_before_any_work(self) -> None:
        """Input longer than 32 characters is TOO_LONG."""
        assert phone_reason("1" * 33) == "TOO_LONG"

    @given(st.text(alphabet="+0123456789 -()86", max_size=32))
    def test_idempotent(self, raw: str) -> None:
        """Normalizing an E.164 result gives it back unchanged."""
        try:
            once = normalize_phone(raw)
        except InvalidArgument:
            return
        assert normalize_phone(once) == once
        assert once.startswith("+")
        assert 8 <= len(once) - 1 <= 15

    @given(st.text())
    def test_arbitrary_text_only_raises_invalid_argument(self, raw: str) -> None:
        """Arbitrary text gives an E.164 number or InvalidArgument, nothing else."""
        try:
            normalize_phone(raw)
        except InvalidArgument:
            return


class TestNormalizeIdentifier:
    @pytest.mark.parametrize("raw", ["acct-42", "0f9c2b1e-8d5e-4c3a-9b0a-1e2f3a4b5c6d", "!~", "a" * 128])
    def test_printable_ascii_is_returned_unchanged(self, raw: str) -> None:
        """Printable ASCII without spaces, up to the bound, comes back as is."""
        assert normalize_identifier(raw, field="account_id") == raw

    def test_empty_is_rejected_naming_the_field(self) -> None:
        """An empty id is EMPTY on the named field."""
        with pytest.raises(InvalidArgument) as caught:
            normalize_identifier("", field="request_id")
        assert (caught.value.reason, caught.value.field) == ("EMPTY", "request_id")

    def test_too_long_is_rejected(self) -> None:
        """An id longer than max_length is TOO_LONG."""
        with pytest.raises(InvalidArgument) as caught:
            normalize_identifier("a" * 33, field="verification_id", max_length=32)
        assert (caught.value.reason, caught.value.field) == ("TOO_LONG", "verification_id")

    @pytest.mark.parametrize("raw", ["a b", "a\tb", "a\x00", "a\x7f", "caf\u00e9", "\uff41", " a", "a\n"])
    def test_spaces_control_and_non_ascii_are_rejected(self, raw: str) -> None:
        """Spaces, control characters, DEL and anything non-ASCII (no folding) are BAD_CHARACTERS."""
        with pytest.raises(InvalidArgument) as caught:
            normalize_identifier(raw, field="account_id")
        assert caught.value.reason == "BAD_CHARACTERS"

    @settings(database=None, max_examples=300)
    @given(st.text(max_size=20))
    def test_accepted_exactly_when_every_character_is_bang_to_tilde(self, raw: str) -> None:
        """The fast check accepts exactly the ids made of "!" through "~"."""
        expected = bool(raw) and all("!" <= char <= "~" for char in raw)
        try:
            normalize_identifier(raw, field="account_id")
        except InvalidArgument:
            accepted = False
        else:
            accepted = True
        assert accepted == expected

    def test_bound_below_one_is_a_programming_error(self) -> None:
        """A max_length below 1 raises ValueError, not InvalidArgument."""
        with pytest.raises(ValueError, match="max_length"):
            normalize_identifier("a", field="account_id", max_length=0)

    @given(st.text(max_size=200))
    def test_accepted_ids_are_printable_ascii(self, raw: str) -> None:
        """Whatever is accepted is 1 to 128 printable ASCII characters without spaces."""
        try:
            result = normalize_identifier(raw, field="account_id")
        except InvalidArgument:
            return
        assert result == raw
        assert 0 < len(result) <= 128
        assert all(33 <= ord(char) <= 126 for char in result)


class TestNormalizeIdentifiers:
    @settings(database=None, max_examples=300)
    @given(st.lists(st.text(max_size=12), max_size=6), st.integers(min_value=1, max_value=10))
    def test_a_batch_is_checked_as_each_id_alone(self, raws: list[str], max_length: int) -> None:
        """The batch check accepts, or refuses with the first bad id's reason and index, as one by one."""
        try:
            expected: list[str] | tuple[str, str] = [
                normalize_identifier(raw, field=f"account_ids[{index}]", max_length=max_length)
                for index, raw in enumerate(raws)
            ]
        except InvalidArgument as one_by_one:
            expected = (one_by_one.reason, one_by_one.field)
        try:
            got: list[str] | tuple[str, str] = normalize_identifiers(
                raws, field="account_ids", max_length=max_length
            )
        except InvalidArgument as batch:
            got = (batch.reason, batch.field)
        assert got == expected

    def test_an_empty_id_among_good_ones_is_found(self) -> None:
        """Joined, an empty id would vanish; its length gives it away, and its index is named."""
        with pytest.raises(InvalidArgument) as caught:
            normalize_identifiers(["a", "", "b"], field="account_ids")
        assert (caught.value.reason, caught.value.field) == ("EMPTY", "account_ids[1]")

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Tests of identity document validation: every reason code, adversarial edits and properties."""

from __future__ import annotations

import contextlib
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idverify.domain import documents
from idverify.domain.countries import ALPHA2_BY_ALPHA3, ALPHA2_BY_NUMERIC, ALPHA2_CODES, to_alpha2
from idverify.domain.documents import COUNTRY_FIELD, NUMBER_FIELD, Document, validate_document
from idverify.domain.errors import ChecksumMismatch, InvalidArgument, InvalidDocument
from idverify.domain.subjects import DocumentType, SubjectKind

TODAY = date(2025, 6, 15)
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# Region codes in force without interruption since before 1950 (python-stdnum's cn/loc data).
STABLE_REGIONS = ("110101", "110105", "310104", "330106", "420102")
PROVINCES = ("11", "31", "44", "51", "65")
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# Check characters are computed here from the standards' formulas, independently of the code
# under test, so that a wrong algorithm there cannot agree with itself.
def mod_11_2(body: str) -> str:
    """Append the ISO 7064 MOD 11-2 check character to 17 digits (GB 11643)."""
    total = sum(int(digit) * pow(2, 17 - position, 11) for position, digit in enumerate(body))
    check = (12 - total % 11) % 11
    return body + ("X" if check == 10 else str(check))


def mod_31(body: str) -> str:
    """Append the GB 32100 check character to 17 characters over the 31-character alphabet."""
    total = sum(USCC_ALPHABET.index(char) * pow(3, position, 31) for position, char in enumerate(body))
    return body + USCC_ALPHABET[(31 - total % 31) % 31]


def icao(body: str) -> str:
    """Append the ICAO 9303 7-3-1 check digit to 14 characters."""
    total = sum(
        (int(char) if char.isdigit() else ord(char) - 55) * (7, 3, 1)[position % 3]
        for position, char in enumerate(body)
    )
    return body + str(total % 10)


def ric(region: str = "110105", born: str = "19900307", sequence: str = "123") -> str:
    return mod_11_2(region + born + sequence)


def reason_of(document_type: DocumentType, number: str, country: str = "") -> str:
    with pytest.raises(InvalidDocument) as caught:
        validate_document(document_type, number, country, today=TODAY)
    return caught.value.reason


def birth_dates(first: date = date(1950, 1, 1)) -> st.SearchStrategy[date]:
    return st.dates(min_value=first, max_value=TODAY)


@st.composite
def ric_numbers(draw: st.DrawFn) -> tuple[str, date]:
    born = draw(birth_dates())
    region = draw(st.sampled_from(STABLE_REGIONS))
    return ric(region, born.strftime("%Y%m%d"), draw(digits(3))), born


@st.composite
def permit_numbers(draw: st.DrawFn) -> tuple[str, date]:
    born = draw(birth_dates(date(1920, 1, 1)))
    prefix = draw(st.sampled_from(("810000", "820000", "830000")))
    return mod_11_2(prefix + born.strftime("%Y%m%d") + draw(digits(3))), born


@st.composite
def fpr_2023_numbers(draw: st.DrawFn) -> tuple[str, date]:
    born = draw(birth_dates(date(1920, 1, 1)))
    nationality = draw(st.sampled_from(sorted(ALPHA2_BY_NUMERIC)))
    body = "9" + draw(st.sampled_from(PROVINCES)) + nationality + born.strftime("%Y%m%d")
    return mod_11_2(body + draw(digits(3))), born


@st.composite
def fpr_2004_numbers(draw: st.DrawFn) -> tuple[str, date]:
    # From 1927 on, a two-digit year names one century only (2027 onwards is after TODAY).
    born = draw(birth_dates(date(1927, 1, 1)))
    nationality = draw(st.sampled_from(sorted(ALPHA2_BY_ALPHA3)))
    authority = draw(st.sampled_from(PROVINCES)) + draw(digits(2))
    return icao(nationality + authority + born.strftime("%y%m%d") + draw(st.sampled_from("0123456789"))), born


@st.composite
def uscc_numbers(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from("123456789ANY")) + draw(st.sampled_from("123456789"))
    region = draw(st.sampled_from((*PROVINCES, "10"))) + draw(digits(4))
    organization = "".join(draw(st.lists(st.sampled_from(USCC_ALPHABET), min_size=9, max_size=9)))
    return mod_31(head + region + organization)


def digits(count: int) -> st.SearchStrategy[str]:
    # Not from_regex(r"\d"): that draws any Unicode digit, and NFKC keeps most of them non-ASCII.
    return st.integers(0, 10**count - 1).map(lambda value: f"{value:0{count}d}")


def substitute(number: str, position: int, replacement: str) -> str:
    return number[:position] + replacement + number[position + 1 :]


class TestNumberNormalization:
    def test_full_width_digits_spaces_and_hyphens_are_normalized(self) -> None:
        """Full-width digits, ideographic spaces and hyphens normalize to plain ASCII digits."""
        number = ric()
        full_width = "".join(chr(ord(char) + 0xFEE0) for char in number[:6]) + "\u3000" + number[6:10]
        raw = full_width + "-" + number[10:14] + " " + number[14:]
        assert validate_document(DocumentType.CN_RIC, raw, today=TODAY).number == number

    def test_lower_case_check_character_is_upper_cased(self) -> None:
        """A lower-case x check character is accepted and stored upper-case."""
        number = next(ric(sequence=f"{s:03d}") for s in range(1000) if ric(sequence=f"{s:03d}").endswith("X"))
        document = validate_document(DocumentType.CN_RIC, number.lower(), today=TODAY)
        assert document.number == number

    @pytest.mark.parametrize("raw", ["", "   ", "- -"])
    def test_empty_number_is_rejected(self, raw: str) -> None:
        """A number that is empty once separators are removed is EMPTY."""
        assert reason_of(DocumentType.CN_RIC, raw) == "EMPTY"

    def test_over_64_characters_is_rejected_before_any_work(self) -> None:
        """Input longer than 64 characters is TOO_LONG, whatever it holds."""
        assert reason_of(DocumentType.PASSPORT, "\x00" * 65, "US") == "TOO_LONG"

    def test_expansion_past_64_characters_is_rejected(self) -> None:
        """A short input that NFKC expands past 64 characters is TOO_LONG too."""
        assert reason_of(DocumentType.PASSPORT, "\u3392" * 30, "US") == "TOO_LONG"

    @pytest.mark.parametrize(
        "raw", ["1101051990\x0003071234", "11010519900307123é", "\u041512345678", "E1234.5678"]
    )
    def test_control_non_ascii_and_punctuation_are_rejected(self, raw: str) -> None:
        """Control characters, non-ASCII letters (Cyrillic look-alikes too) and punctuation are refused."""
        assert reason_of(DocumentType.PASSPORT, raw, "CN") == "BAD_CHARACTERS"

    def test_errors_name_the_number_field(self) -> None:
        """Number errors carry the document number field and the InvalidDocument type."""
        with pytest.raises(InvalidDocument) as caught:
            validate_document(DocumentType.CN_RIC, "", today=TODAY)
        assert caught.value.field == NUMBER_FIELD


class TestDocument:
    def test_repr_hides_the_number(self) -> None:
        """Printing a document shows its type and never the number or birth date."""
        number = ric()
        document = validate_document(DocumentType.CN_RIC, number, today=TODAY)
        for text in (repr(document), str(document)):
            assert number not in text
            assert "1990" not in text
            assert "cn_ric" in text

    def test_fields_of_a_resident_id(self) -> None:
        """A resident ID yields a person born on the encoded date, issued by CN."""
        document = validate_document(DocumentType.CN_RIC, ric(), today=TODAY)
        assert document == Document(DocumentType.CN_RIC, ric(), date(1990, 3, 7), "CN", SubjectKind.PERSON)


class TestResidentId:
    def test_valid_number_passes(self) -> None:
        """A number with a correct check digit, real birth date and live region passes."""
        assert validate_document(DocumentType.CN_RIC, ric(), today=TODAY).birth_date == date(1990, 3, 7)

    def test_leap_day_birth_passes(self) -> None:
        """29 February of a leap year is a real birth date."""
        assert validate_document(DocumentType.CN_RIC, ric(born="20000229"), today=TODAY).birth_date == date(
            2000, 2, 29
        )

    def test_flipped_bit_is_a_checksum_mismatch(self) -> None:
        """Flipping the lowest bit of one digit ("4" to "5") is caught by the check digit."""
        number = ric()
        flipped = substitute(number, 8, chr(ord(number[8]) ^ 1))
        with pytest.raises(ChecksumMismatch) as caught:
            validate_document(DocumentType.CN_RIC, flipped, today=TODAY)
        assert caught.value.reason == "CHECKSUM_MISMATCH"

    def test_swapped_adjacent_digits_are_a_checksum_mismatch(self) -> None:
        """Swapping two different adjacent digits is caught by the check digit."""
        number = ric()
        swapped = number[:14] + number[15] + number[14] + number[16:]
        assert swapped != number
        assert reason_of(DocumentType.CN_RIC, swapped) == "CHECKSUM_MISMATCH"

    def test_wrong_check_character_is_a_checksum_mismatch(self) -> None:
        """Any other final character than the computed one is a mismatch."""
        number = ric()
        other = "X" if number[-1] != "X" else "0"
        assert reason_of(DocumentType.CN_RIC, number[:-1] + other) == "CHECKSUM_MISMATCH"

    @pytest.mark.parametrize("length", [17, 16, 19])
    def test_truncated_or_extended_is_bad_length(self, length: int) -> None:
        """Numbers of 16, 17 or 19 characters are BAD_LENGTH."""
        assert reason_of(DocumentType.CN_RIC, (ric() + "1")[:length]) == "BAD_LENGTH"

    def test_first_generation_number_is_refused(self) -> None:
        """A 15-digit first-generation number is FIRST_GENERATION_NOT_ACCEPTED."""
        assert reason_of(DocumentType.CN_RIC, "110105900307123") == "FIRST_GENERATION_NOT_ACCEPTED"

    def test_x_inside_the_number_is_bad_format(self) -> None:
        """X is only allowed as the check character."""
        assert reason_of(DocumentType.CN_RIC, substitute(ric(), 5, "X")) == "BAD_FORMAT"

    @pytest.mark.parametrize("born", ["19900230", "19901301", "19000229", "19900000"])
    def test_impossible_birth_date_is_rejected(self, born: str) -> None:
        """30 February, month 13, 29 February 1900 and day 0 are BAD_BIRTH_DATE."""
        assert reason_of(DocumentType.CN_RIC, ric(born=born)) == "BAD_BIRTH_DATE"

    def test_implausibly_early_birth_date_is_rejected(self) -> None:
        """A birth before 1890 is BAD_BIRTH_DATE."""
        assert reason_of(DocumentType.CN_RIC, ric(born="18891231")) == "BAD_BIRTH_DATE"

    def test_birth_date_after_today_is_rejected(self) -> None:
        """A birth date after the validation day is BIRTH_DATE_IN_FUTURE."""
        tomorrow = (TODAY + timedelta(days=1)).strftime("%Y%m%d")
        assert reason_of(DocumentType.CN_RIC, ric(born=tomorrow)) == "BIRTH_DATE_IN_FUTURE"

    def test_birth_today_passes(self) -> None:
        """Someone born on the validation day is valid."""
        born = TODAY.strftime("%Y%m%d")
        assert validate_document(DocumentType.CN_RIC, ric(born=born), today=TODAY).birth_date == TODAY

    @pytest.mark.parametrize("region", ["110199", "999999", "000000", "730000"])
    def test_unknown_region_is_rejected(self, region: str) -> None:
        """Region codes that never existed are UNKNOWN_REGION."""
        assert reason_of(DocumentType.CN_RIC, ric(region=region)) == "UNKNOWN_REGION"

    def test_region_abolished_before_birth_is_rejected(self) -> None:
        """Chongwen district (110103) was merged away in 2010, so nobody born in 2015 carries it."""
        assert reason_of(DocumentType.CN_RIC, ric(region="110103", born="20150101")) == "UNKNOWN_REGION"

    def test_region_abolished_after_birth_passes(self) -> None:
        """Numbers keep the code they were issued with: Chongwen (110103) is fine for a 1990 birth."""
        assert validate_document(DocumentType.CN_RIC, ric(region="110103"), today=TODAY).number

    def test_a_region_read_once_answers_each_birth_year_for_itself(self) -> None:
        """The years a code was in force are kept per code, never one year's answer for all."""
        for _ in range(2):
            assert validate_document(DocumentType.CN_RIC, ric(region="110103"), today=TODAY).number
            assert reason_of(DocumentType.CN_RIC, ric(region="110103", born="20150101")) == "UNKNOWN_REGION"

    def test_a_caller_sending_every_region_code_keeps_the_memory_bounded(self) -> None:
        """Codes kept per code are bounded: a flood of made-up codes evicts, it does not grow."""
        for code in range(110000, 130000):
            with contextlib.suppress(InvalidDocument):  # most are made up; some exist
                validate_document(DocumentType.CN_RIC, ric(region=str(code)), today=TODAY)
        cached = documents._years_in_force.cache_info()
        assert cached.currsize <= cached.maxsize == 4096

    def test_region_created_after_birth_passes(self) -> None:
        """Fangshan district (110111, from 1986) is fine for a 1960 birth: the number came later."""
        number = ric(region="110111", born="19600101")
        assert validate_document(DocumentType.CN_RIC, number, today=TODAY).birth_date == date(1960, 1, 1)

    def test_region_created_after_today_is_rejected(self) -> None:
        """Baiyang (659012) exists from 2022 on, so it cannot appear on a number checked in 2021."""
        with pytest.raises(InvalidDocument) as caught:
            validate_document(
                DocumentType.CN_RIC, ric(region="659012", born="20000101"), today=date(2021, 1, 1)
            )
        assert caught.value.reason == "UNKNOWN_REGION"

    def test_region_renamed_in_place_passes_on_both_sides(self) -> None:
        """Tianjin 120110 (Dongjiao, then Dongli from 1992) is valid for births before and after."""
        for born in ("19800101", "20000101"):
            assert validate_document(DocumentType.CN_RIC, ric(region="120110", born=born), today=TODAY)

    @pytest.mark.parametrize("prefix", ["810000", "820000", "830000"])
    def test_residence_permit_number_is_the_wrong_type(self, prefix: str) -> None:
        """A Hong Kong, Macau or Taiwan permit number offered as a resident ID is WRONG_DOCUMENT_TYPE."""
        assert reason_of(DocumentType.CN_RIC, ric(region=prefix)) == "WRONG_DOCUMENT_TYPE"


class TestResidencePermit:
    @pytest.mark.parametrize("prefix", ["810000", "820000", "830000"])
    def test_valid_permits_pass(self, prefix: str) -> None:
        """Hong Kong, Macau and Taiwan permit numbers with a right check digit pass."""
        document = validate_document(DocumentType.CN_RESIDENCE_PERMIT, ric(region=prefix), today=TODAY)
        assert (document.issuing_country, document.birth_date) == ("CN", date(1990, 3, 7))

    def test_permit_born_before_the_handover_passes(self) -> None:
        """The 810000 prefix is not tied to 1997: older holders are valid."""
        number = ric(region="810000", born="19500101")
        assert validate_document(DocumentType.CN_RESIDENCE_PERMIT, number, today=TODAY)

    @pytest.mark.parametrize("prefix", ["110105", "840000", "810100"])
    def test_other_prefixes_are_unknown_regions(self, prefix: str) -> None:
        """Anything but the three permit prefixes is UNKNOWN_REGION."""
        assert reason_of(DocumentType.CN_RESIDENCE_PERMIT, ric(region=prefix)) == "UNKNOWN_REGION"

    def test_checksum_and_dates_follow_the_resident_id_rules(self) -> None:
        """A permit with a wrong check digit, Feb 30 or a future birth date is refused."""
        number = ric(region="830000")
        assert reason_of(DocumentType.CN_RESIDENCE_PERMIT, substitute(number, 3, "1")) == "CHECKSUM_MISMATCH"
        assert reason_of(DocumentType.CN_RESIDENCE_PERMIT, ric("830000", "20010230")) == "BAD_BIRTH_DATE"
        assert (
            reason_of(DocumentType.CN_RESIDENCE_PERMIT, ric("830000", "20991231")) == "BIRTH_DATE_IN_FUTURE"
        )


class TestForeignPermanentResident:
    def test_2023_form_passes(self) -> None:
        """9 + province + ISO numeric nationality + birth date + sequence + MOD 11-2 passes."""
        number = mod_11_2("9" + "11" + "398" + "19901231" + "002")
        document = validate_document(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number, today=TODAY)
        assert (document.birth_date, document.issuing_country) == (date(1990, 12, 31), "CN")

    def test_2023_form_must_start_with_nine(self) -> None:
        """An 18-digit number starting with another digit is BAD_FORMAT."""
        number = mod_11_2("1" + "11" + "398" + "19901231" + "002")
        assert reason_of(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number) == "BAD_FORMAT"

    def test_2023_form_unknown_province(self) -> None:
        """A province code that does not exist (99) is UNKNOWN_REGION."""
        number = mod_11_2("9" + "99" + "398" + "19901231" + "002")
        assert reason_of(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number) == "UNKNOWN_REGION"

    def test_2023_form_unknown_nationality(self) -> None:
        """A numeric code ISO 3166-1 never assigned (999) is UNKNOWN_NATIONALITY."""
        number = mod_11_2("9" + "11" + "999" + "19901231" + "002")
        assert reason_of(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number) == "UNKNOWN_NATIONALITY"

    def test_2023_form_dates(self) -> None:
        """Impossible and future birth dates are refused in the 2023 form."""
        bad = mod_11_2("9" + "11" + "398" + "19900230" + "002")
        future = mod_11_2("9" + "11" + "398" + "20300101" + "002")
        assert reason_of(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, bad) == "BAD_BIRTH_DATE"
        assert reason_of(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, future) == "BIRTH_DATE_IN_FUTURE"

    def test_2004_form_passes(self) -> None:
        """Alpha-3 nationality + authority + YYMMDD + sequence + 7-3-1 check digit passes."""
        number = icao("USA" + "1101" + "901231" + "5")
        document = validate_document(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number, today=TODAY)
        assert document.birth_date == date(1990, 12, 31)

    def test_2004_form_two_digit_year_prefers_this_century(self) -> None:
        """A two-digit year names this century when that date is not in the future."""
        number = icao("USA" + "1101" + "150601" + "5")
        document = validate_document(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number, today=TODAY)
        assert document.birth_date == date(2015, 6, 1)

    def test_2004_form_two_digit_year_falls_back_a_century(self) -> None:
        """A two-digit year whose 20xx date is in the future names the 1900s."""
        number = icao("USA" + "1101" + "250616" + "5")
        document = validate_document(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number, today=TODAY)
        assert document.birth_date == date(1925, 6, 16)

    def test_2004_form_impossible_date(self) -> None:
        """31 April does not exist in any century."""
        number = icao("USA" + "1101" + "900431" + "5")
        assert reason_of(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number) == "BAD_BIRTH_DATE"

    def test_2004_form_flipped_digit_is_a_checksum_mismatch(self) -> None:
        """Changing one digit of the 2004 form is caught by the check digit."""
        number = icao("USA" + "1101" + "901231" + "5")
        assert reason_of(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, substitute(number, 9, "9")) == (
            "CHECKSUM_MISMATCH"
        )

    def test_2004_form_unknown_nationality(self) -> None:
        """Letters that are not an ISO alpha-3 code are UNKNOWN_NATIONALITY."""
        number = icao("QQQ" + "1101" + "901231" + "5")
        assert reason_of(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number) == "UNKNOWN_NATIONALITY"

    def test_2004_form_unknown_province(self) -> None:
        """An authority code in no province is UNKNOWN_REGION."""
        number = icao("USA" + "9901" + "901231" + "5")
        assert reason_of(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number) == "UNKNOWN_REGION"

    @pytest.mark.parametrize("number", ["US11101901231501", "1SA110190123150", "USA11019012315X"])
    def test_2004_form_shape(self, number: str) -> None:
        """The 2004 form is exactly three letters then twelve digits."""
        assert reason_of(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number[:15]) == "BAD_FORMAT"

    def test_letter_slip_by_ten_is_invisible_to_the_check_digit(self) -> None:
        """Documented limit of 7-3-1: VEN and BEN share a check digit, so the slip passes."""
        venezuela = icao("VEN" + "1101" + "901231" + "5")
        benin = "B" + venezuela[1:]
        document = validate_document(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, benin, today=TODAY)
        assert document.number == benin

    @pytest.mark.parametrize("length", [14, 16, 17, 19])
    def test_other_lengths_are_bad_length(self, length: int) -> None:
        """Only 15 and 18 characters are permanent resident ID lengths."""
        assert reason_of(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, "9" * length) == "BAD_LENGTH"


class TestPassport:
    @pytest.mark.parametrize(
        ("country", "alpha2"), [("US", "US"), ("usa", "US"), ("\uff24\uff25\uff35", "DE"), (" gb ", "GB")]
    )
    def test_country_is_normalized_to_alpha2(self, country: str, alpha2: str) -> None:
        """Alpha-2 and alpha-3 codes, any case or width, become alpha-2."""
        document = validate_document(DocumentType.PASSPORT, "c1234567", country, today=TODAY)
        assert (document.issuing_country, document.number, document.birth_date) == (alpha2, "C1234567", None)

    def test_subject_is_a_person(self) -> None:
        """A passport identifies a person."""
        document = validate_document(DocumentType.PASSPORT, "C1234567", "FR", today=TODAY)
        assert document.subject_kind is SubjectKind.PERSON

    @pytest.mark.parametrize("country", ["", "  "])
    def test_missing_country_is_rejected(self, country: str) -> None:
        """A passport without issuing country is EMPTY on the country field."""
        with pytest.raises(InvalidDocument) as caught:
            validate_document(DocumentType.PASSPORT, "C1234567", country, today=TODAY)
        assert (caught.value.reason, caught.value.field) == ("EMPTY", COUNTRY_FIELD)

    @pytest.mark.parametrize("country", ["XK", "XKX", "D", "UK", "ZZ", "ß", "U S", "12", "A" * 40])
    def test_unassigned_country_is_rejected(self, country: str) -> None:
        """Codes outside ISO 3166-1 (user-assigned, ICAO-only, junk) are BAD_COUNTRY."""
        with pytest.raises(InvalidDocument) as caught:
            validate_document(DocumentType.PASSPORT, "C1234567", country, today=TODAY)
        assert (caught.value.reason, caught.value.field) == ("BAD_COUNTRY", COUNTRY_FIELD)

    @pytest.mark.parametrize("number", ["C123", "C" * 21])
    def test_length_bounds(self, number: str) -> None:
        """Passport numbers have 5 to 20 characters."""
        assert reason_of(DocumentType.PASSPORT, number, "US") == "BAD_LENGTH"

    @pytest.mark.parametrize("number", ["12345", "A" * 20])
    def test_length_limits_pass(self, number: str) -> None:
        """5 and 20 characters are both accepted."""
        assert validate_document(DocumentType.PASSPORT, number, "JP", today=TODAY).number == number

    @pytest.mark.parametrize("number", ["E12345678", "EA1234567", "EZ1234567", "G12345678"])
    def test_chinese_ordinary_passports_pass(self, number: str) -> None:
        """E + 8 digits, E + letter + 7 digits and G + 8 digits are Chinese ordinary passports."""
        assert validate_document(DocumentType.PASSPORT, number, "CHN", today=TODAY).issuing_country == "CN"

    @pytest.mark.parametrize(
        "number", ["E1234567", "E123456789", "EI1234567", "EO1234567", "GA1234567", "D12345678", "E1234567A"]
    )
    def test_other_chinese_passport_shapes_are_rejected(self, number: str) -> None:
        """Chinese passports of other shapes (and I or O as second letter) are BAD_FORMAT."""
        assert reason_of(DocumentType.PASSPORT, number, "CN") == "BAD_FORMAT"


class TestSocialCreditCode:
    def test_valid_code_passes(self) -> None:
        """An enterprise code with a right check character passes as an organization."""
        document = validate_document(DocumentType.CN_USCC, mod_31("91110108MA01ABCD2"), today=TODAY)
        assert (document.subject_kind, document.birth_date, document.issuing_country) == (
            SubjectKind.ORGANIZATION,
            None,
            "CN",
        )

    @pytest.mark.parametrize("head", ["A1", "A9", "N1", "N2", "N3", "N9", "Y1"])
    def test_departments_added_in_2016_pass(self, head: str) -> None:
        """Military (A), agriculture (N) and other (Y) departments are accepted."""
        code = mod_31(head + "110108" + "MA01ABCD2")
        assert validate_document(DocumentType.CN_USCC, code, today=TODAY).number == code

    def test_national_level_region_passes(self) -> None:
        """Organizations registered with a central authority carry region 100000."""
        assert validate_document(DocumentType.CN_USCC, mod_31("12100000MB0000001"), today=TODAY)

    @pytest.mark.parametrize("department", ["0", "B", "G", "X"])
    def test_unknown_department_is_rejected(self, department: str) -> None:
        """Departments outside the amended GB 32100 table are UNKNOWN_DEPARTMENT."""
        assert (
            reason_of(DocumentType.CN_USCC, mod_31(department + "1110108MA01ABCD2")) == "UNKNOWN_DEPARTMENT"
        )

    def test_letter_organization_type_is_bad_format(self) -> None:
        """The organization type is a digit."""
        assert reason_of(DocumentType.CN_USCC, mod_31("9A110108MA01ABCD2")) == "BAD_FORMAT"

    @pytest.mark.parametrize("region", ["990108", "11A108", "000000"])
    def test_unknown_region_is_rejected(self, region: str) -> None:
        """A region outside the provinces and the national level, or with letters, is UNKNOWN_REGION."""
        assert reason_of(DocumentType.CN_USCC, mod_31("91" + region + "MA01ABCD2")) == "UNKNOWN_REGION"

    @pytest.mark.parametrize("letter", ["I", "O", "S", "V", "Z"])
    def test_letters_outside_the_alphabet_are_rejected(self, letter: str) -> None:
        """I, O, S, V and Z never appear in a social credit code."""
        code = mod_31("91110108MA01ABCD2")
        assert reason_of(DocumentType.CN_USCC, substitute(code, 10, letter)) == "BAD_CHARACTERS"

    def test_flipped_and_swapped_characters_are_checksum_mismatches(self) -> None:
        """One changed character or two swapped neighbours are caught by the check character."""
        code = mod_31("91110108MA01ABCD2")
        assert reason_of(DocumentType.CN_USCC, substitute(code, 12, "B")) == "CHECKSUM_MISMATCH"
        assert (
            reason_of(DocumentType.CN_USCC, code[:9] + code[10] + code[9] + code[11:]) == "CHECKSUM_MISMATCH"
        )

    def test_truncated_code_is_bad_length(self) -> None:
        """A 17-character code is BAD_LENGTH."""
        assert reason_of(DocumentType.CN_USCC, mod_31("91110108MA01ABCD2")[:-1]) == "BAD_LENGTH"


class TestIssuingCountryOfChineseDocuments:
    @pytest.mark.parametrize("country", ["", "CN", "chn", "  "])
    def test_empty_or_china_is_accepted(self, country: str) -> None:
        """Chinese documents take an empty issuing country or China."""
        assert validate_document(DocumentType.CN_RIC, ric(), country, today=TODAY).issuing_country == "CN"

    @pytest.mark.parametrize("country", ["US", "HK", "XX"])
    def test_other_country_is_rejected(self, country: str) -> None:
        """A Chinese document claimed to come from elsewhere is BAD_COUNTRY on the country field."""
        with pytest.raises(InvalidDocument) as caught:
            validate_document(DocumentType.CN_USCC, mod_31("91110108MA01ABCD2"), country, today=TODAY)
        assert (caught.value.reason, caught.value.field) == ("BAD_COUNTRY", COUNTRY_FIELD)


# Every code the service accepted before its codes came from pycountry (a frozen copy).
PINNED_CODES: dict[str, list[str]] = json.loads(
    (Path(__file__).parents[2] / "fixtures" / "iso3166_pinned.json").read_text(encoding="utf-8")
)["codes"]


class TestIsoTable:
    def test_codes_are_the_pinned_ones(self) -> None:
        """Exactly the 249 pinned codes are accepted, in every form, so a pycountry upgrade changes none."""
        assert len(PINNED_CODES) == 249
        assert set(PINNED_CODES) == ALPHA2_CODES
        assert dict(ALPHA2_BY_ALPHA3) == {alpha3: alpha2 for alpha2, (alpha3, _) in PINNED_CODES.items()}
        assert dict(ALPHA2_BY_NUMERIC) == {numeric: alpha2 for alpha2, (_, numeric) in PINNED_CODES.items()}
        assert all(
            to_alpha2(alpha3) == to_alpha2(alpha2) == alpha2 for alpha2, (alpha3, _) in PINNED_CODES.items()
        )
        assert (to_alpha2("CHN"), to_alpha2("TW"), ALPHA2_BY_NUMERIC["156"]) == ("CN", "TW", "CN")

    @pytest.mark.parametrize("code", ["XK", "XXA", "D", "ZZ", "ZZZ", "chn"])
    def test_unassigned_codes_are_none(self, code: str) -> None:
        """User-assigned, ICAO-only, unassigned and lower-case codes name no country."""
        assert to_alpha2(code) is None


STRONG_CHECKSUMS = [
    (DocumentType.CN_RIC, ric_numbers().map(lambda pair: pair[0]), "0123456789"),
    (DocumentType.CN_RESIDENCE_PERMIT, permit_numbers().map(lambda pair: pair[0]), "0123456789"),
    (DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, fpr_2023_numbers().map(lambda pair: pair[0]), "0123456789"),
    (DocumentType.CN_USCC, uscc_numbers(), USCC_ALPHABET),
]


class TestProperties:
    @settings(deadline=None)
    @given(pair=ric_numbers())
    def test_generated_resident_ids_validate(self, pair: tuple[str, date]) -> None:
        """Every generated resident ID validates, keeps its number and yields its birth date."""
        number, born = pair
        document = validate_document(DocumentType.CN_RIC, number, today=TODAY)
        assert (document.number, document.birth_date) == (number, born)

    @settings(deadline=None)
    @given(pair=permit_numbers())
    def test_generated_permits_validate(self, pair: tuple[str, date]) -> None:
        """Every generated residence permit number validates with its birth date."""
        number, born = pair
        assert validate_document(DocumentType.CN_RESIDENCE_PERMIT, number, today=TODAY).birth_date == born

    @settings(deadline=None)
    @given(pair=st.one_of(fpr_2023_numbers(), fpr_2004_numbers()))
    def test_generated_permanent_resident_ids_validate(self, pair: tuple[str, date]) -> None:
        """Every generated permanent resident ID, either form, validates with its birth date."""
        number, born = pair
        assert (
            validate_document(DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, number, today=TODAY).birth_date
            == born
        )

    @settings(deadline=None)
    @given(code=uscc_numbers())
    def test_generated_social_credit_codes_validate(self, code: str) -> None:
        """Every generated social credit code validates unchanged."""
        assert validate_document(DocumentType.CN_USCC, code, today=TODAY).number == code

    @pytest.mark.parametrize(("document_type", "numbers", "alphabet"), STRONG_CHECKSUMS)
    @settings(deadline=None)
    @given(data=st.data())
    def test_single_substitution_is_always_rejected(
        self, document_type: DocumentType, numbers: st.SearchStrategy[str], alphabet: str, data: st.DataObject
    ) -> None:
        """Replacing any one character is refused, as CHECKSUM_MISMATCH when the shape still holds."""
        number = data.draw(numbers)
        position = data.draw(st.integers(0, len(number) - 1))
        replacement = data.draw(st.sampled_from(ALNUM).filter(lambda char: char != number[position]))
        changed = substitute(number, position, replacement)
        with pytest.raises(InvalidDocument) as caught:
            validate_document(document_type, changed, today=TODAY)
        same_shape = replacement in alphabet or (position == 17 and replacement == "X" and alphabet.isdigit())
        if same_shape:
            assert caught.value.reason == "CHECKSUM_MISMATCH"

    @settings(deadline=None)
    @given(pair=fpr_2004_numbers(), data=st.data())
    def test_single_digit_substitution_in_2004_form_is_a_mismatch(
        self, pair: tuple[str, date], data: st.DataObject
    ) -> None:
        """In the 2004 form every changed digit is caught, since 7, 3 and 1 are prime to 10."""
        number = pair[0]
        position = data.draw(st.integers(3, 14))
        replacement = data.draw(st.sampled_from("0123456789").filter(lambda char: char != number[position]))
        assert reason_of(
            DocumentType.CN_FOREIGN_PERMANENT_RESIDENT, substitute(number, position, replacement)
        ) == ("CHECKSUM_MISMATCH")

    @pytest.mark.parametrize("document_type", list(DocumentType))
    @settings(deadline=None)
    @given(raw=st.text(), country=st.text(max_size=8))
    def test_arbitrary_text_only_raises_invalid_argument(
        self, document_type: DocumentType, raw: str, country: str
    ) -> None:
        """Arbitrary text either validates or raises an InvalidArgument, never anything else."""
        try:
            document = validate_document(document_type, raw, country, today=TODAY)
        except InvalidArgument:
            return
        assert validate_document(document_type, document.number, country, today=TODAY) == document

    @settings(deadline=None)
    @given(pair=ric_numbers())
    def test_validating_the_normalized_number_is_idempotent(self, pair: tuple[str, date]) -> None:
        """Validating a document's own number gives the same document."""
        spaced = " ".join(pair[0][i : i + 4] for i in range(0, 18, 4)).lower()
        document = validate_document(DocumentType.CN_RIC, spaced, today=TODAY)
        assert validate_document(DocumentType.CN_RIC, document.number, today=TODAY) == document

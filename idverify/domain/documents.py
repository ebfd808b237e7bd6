# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Validation of identity document numbers: shape, check character, birth date and region, with no I/O.

Decisions worth knowing before changing this module:

* 15-digit first-generation resident ID numbers (GB 11643-1989) are rejected with
  ``FIRST_GENERATION_NOT_ACCEPTED``: those cards stopped being valid on 1 January 2013 and the
  number carries no check digit, so a typo could not be told from a real number.
* A resident ID region code must have been in force at some time between the birth year and
  today (python-stdnum's bundled ``cn/loc`` table, read once on first use). Numbers are assigned
  when the card is first issued, often years after birth, so requiring the code in the birth
  year itself would reject real people born before their county got its present code.
* Foreign permanent resident IDs: the 2023 form is ``9`` + issuing province (2) + ISO 3166-1
  numeric nationality (3) + birth date ``YYYYMMDD`` + sequence (3) + MOD 11-2 check, like a
  resident ID. The 2004/2017 form is ISO alpha-3 nationality (3) + issuing province and city (4)
  + birth date ``YYMMDD`` + sequence (1) + a check digit weighted 7-3-1 as in ICAO 9303. That
  check digit cannot see a letter replaced by one whose value differs by a multiple of ten
  (``VEN`` for ``BEN``); the nationality table catches most such slips but not all.
* Unified social credit codes: the amended department table of GB 32100-2015 (``1``-``9``,
  ``A``, ``N``, ``Y``) is enforced; the organization type only has to be a digit, so a new type
  added by a later amendment is not refused.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Final

from stdnum import numdb
from stdnum.cn import ric, uscc

from idverify.domain.countries import ALPHA2_BY_ALPHA3, ALPHA2_BY_NUMERIC, to_alpha2
from idverify.domain.errors import ChecksumMismatch, InvalidDocument
from idverify.domain.subjects import DocumentType, SubjectKind

if TYPE_CHECKING:
    from collections.abc import Callable

NUMBER_FIELD: Final = "subject.document_number"
COUNTRY_FIELD: Final = "subject.issuing_country"
MAX_RAW_LENGTH: Final = 64

# Nobody alive was born earlier; an older date is a typo in the century.
_EARLIEST_BIRTH: Final = date(1890, 1, 1)
_SEPARATORS: Final = str.maketrans("", "", " -")
_MAINLAND_PROVINCES: Final = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65",
})  # fmt: skip
_PERMIT_PREFIXES: Final = frozenset({"810000", "820000", "830000"})
# "10" is the national level, used by organizations registered with a central authority.
_USCC_REGION_PREFIXES: Final = _MAINLAND_PROVINCES | {"10"}
_USCC_ALPHABET: Final = frozenset("0123456789ABCDEFGHJKLMNPQRTUWXY")
_USCC_DEPARTMENTS: Final = frozenset("123456789ANY")
_CN_PASSPORT_LENGTH: Final = 9
_GB11643_LENGTH: Final = 18
_FIRST_GENERATION_LENGTH: Final = 15
_FPR_2004_LENGTH: Final = 15
_USCC_LENGTH: Final = 18
_MAX_COUNTRY_LENGTH: Final = 16
_PASSPORT_LENGTHS: Final = range(5, 21)
_ICAO_WEIGHTS: Final = (7, 3, 1)


@dataclass(frozen=True, slots=True)
class Document:
    """A validated, normalized identity document; lives in memory for one request only.

    Attributes:
        document_type: which kind of document it is.
        number: the number, upper-case ASCII without spaces or hyphens.
        birth_date: the birth date the number encodes, or None when it encodes none.
        issuing_country: ISO 3166-1 alpha-2 code of the issuer (``CN`` for Chinese documents).
        subject_kind: a person, or an organization for a social credit code.

    """

    document_type: DocumentType
    number: str
    birth_date: date | None
    issuing_country: str
    subject_kind: SubjectKind

    def __repr__(self) -> str:
        return f"Document(document_type={self.document_type.value}, <personal fields hidden>)"

    __str__ = __repr__


def validate_document(
    document_type: DocumentType, raw_number: str, issuing_country: str = "", *, today: date
) -> Document:
    """Normalize and validate a document number as its type requires.

    Args:
        document_type: the claimed document type.
        raw_number: the number as typed (full-width digits, spaces and hyphens are fine).
        issuing_country: ISO 3166-1 alpha-2 or alpha-3 code; required for passports, and for
            Chinese documents either empty or China.
        today: the date birth dates are checked against (Asia/Shanghai).

    Returns:
        The validated document, its number normalized.

    Raises:
        ChecksumMismatch: the check character does not match the rest of the number.
        InvalidDocument: anything else is wrong; ``reason`` says what and ``field`` where.

    """
    number = _normalize_number(raw_number)
    if document_type is DocumentType.PASSPORT:
        return _passport(number, issuing_country)
    if issuing_country.strip() and _country(issuing_country) != "CN":
        raise _invalid("BAD_COUNTRY", "a Chinese document must be issued by CN", field=COUNTRY_FIELD)
    birth_date = _CHINESE_VALIDATORS[document_type](number, today)
    kind = SubjectKind.ORGANIZATION if document_type is DocumentType.CN_USCC else SubjectKind.PERSON
    return Document(document_type, number, birth_date, "CN", kind)


def _invalid(reason: str, message: str, *, field: str = NUMBER_FIELD) -> InvalidDocument:
    return InvalidDocument(message, reason=reason, field=field)


def _checksum_mismatch() -> ChecksumMismatch:
    return ChecksumMismatch(
        "document number check character does not match", reason="CHECKSUM_MISMATCH", field=NUMBER_FIELD
    )


def _normalize_number(raw: str) -> str:
    # Bound the input before NFKC, whose cost grows with it.
    if len(raw) > MAX_RAW_LENGTH:
        raise _invalid("TOO_LONG", f"document number is longer than {MAX_RAW_LENGTH} characters")
    text = unicodedata.normalize("NFKC", raw).translate(_SEPARATORS)
    if not text:
        raise _invalid("EMPTY", "document number is empty")
    if len(text) > MAX_RAW_LENGTH:
        raise _invalid("TOO_LONG", f"document number is longer than {MAX_RAW_LENGTH} characters")
    # isascii() first: str.upper() of some non-ASCII letters changes the length ("ß" -> "SS").
    if not (text.isascii() and text.isalnum()):
        raise _invalid("BAD_CHARACTERS", "document number has characters other than letters and digits")
    return text.upper()


def _country(raw: str) -> str:
    code = unicodedata.normalize("NFKC", raw).strip() if len(raw) <= _MAX_COUNTRY_LENGTH else ""
    # isascii() before upper(): "ß".upper() is "SS", which would name South Sudan.
    alpha2 = to_alpha2(code.upper()) if code.isascii() else None
    if alpha2 is None:
        raise _invalid("BAD_COUNTRY", "issuing country is not an ISO 3166-1 code", field=COUNTRY_FIELD)
    return alpha2


def _passport(number: str, issuing_country: str) -> Document:
    if not issuing_country.strip():
        raise _invalid("EMPTY", "a passport needs its issuing country", field=COUNTRY_FIELD)
    country = _country(issuing_country)
    if len(number) not in _PASSPORT_LENGTHS:
        raise _invalid("BAD_LENGTH", "passport number must have 5 to 20 characters")
    if country == "CN" and not _is_cn_ordinary_passport(number):
        raise _invalid("BAD_FORMAT", "not a Chinese ordinary passport number")
    return Document(DocumentType.PASSPORT, number, None, country, SubjectKind.PERSON)


def _is_cn_ordinary_passport(number: str) -> bool:
    # E + 8 digits, E + letter (never I or O, they read as digits) + 7 digits, or G + 8 digits
    # for books issued before 2012.
    if len(number) != _CN_PASSPORT_LENGTH or not number[2:].isdigit():
        return False
    second = number[1]
    if number[0] == "G":
        return second.isdigit()
    return number[0] == "E" and (second.isdigit() or second not in "IO")


def _check_gb11643_shape(number: str) -> None:
    """Check length, characters and the ISO 7064 MOD 11-2 check character of an 18-digit number."""
    if len(number) != _GB11643_LENGTH:
        raise _invalid("BAD_LENGTH", "document number must have 18 characters")
    if not number[:17].isdigit() or number[17] not in "0123456789X":
        raise _invalid("BAD_FORMAT", "document number must be 17 digits and a digit or X")
    if ric.calc_check_digit(number) != number[17]:
        raise _checksum_mismatch()


def _birth_date(yyyymmdd: str, today: date) -> date:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        raise _invalid("BAD_BIRTH_DATE", "document number encodes an impossible birth date") from None
    if born > today:
        raise _invalid("BIRTH_DATE_IN_FUTURE", "document number encodes a birth date in the future")
    if born < _EARLIEST_BIRTH:
        raise _invalid("BAD_BIRTH_DATE", "document number encodes an implausibly early birth date")
    return born


def _two_digit_year_birth(yymmdd: str, today: date) -> date:
    # The later century wins when both are possible: a child must not be taken for an adult.
    for century in ("20", "19"):
        try:
            born = _birth_date(century + yymmdd, today)
        except InvalidDocument:
            continue
        return born
    raise _invalid("BAD_BIRTH_DATE", "document number encodes an impossible birth date")


def _region_in_force(code: str, birth_year: int, this_year: int) -> bool:
    """Tell whether a GB/T 2260 code was in force at some time from the birth year to this year."""
    return any(start <= this_year and end >= birth_year for start, end in _years_in_force(code))


# Far enough on either side of any birth year or today: a bound the table leaves open.
_OPEN_START, _OPEN_END = 0, 100_000


@functools.lru_cache(maxsize=4096)
def _years_in_force(code: str) -> tuple[tuple[int, int], ...]:
    """The (first, last) years a GB/T 2260 county code was in force; none if it never was one.

    Kept per code: reading python-stdnum's table walks its tree in Python (~35 µs), and every
    resident ID a start or a CheckIdentity sees asks for its code. The table is the package's
    own and does not change while the process runs; a caller sending many codes only evicts.
    """
    props: dict[str, str] = {}
    for _part, part_props in numdb.get("cn/loc").info(code):
        props.update(part_props)
    county = props.get("county")
    if county is None:
        return ()
    # Entries look like "东城区" (always) or "[1983-2010]崇文区" / "[-1991]郊区" / "[1992-]东丽区".
    spans: list[tuple[int, int]] = []
    for entry in county.split(","):
        if not entry.startswith("["):
            return ((_OPEN_START, _OPEN_END),)
        start, _, end = entry[1 : entry.index("]")].partition("-")
        spans.append((int(start) if start else _OPEN_START, int(end) if end else _OPEN_END))
    return tuple(spans)


def _resident_id(number: str, today: date) -> date:
    if len(number) == _FIRST_GENERATION_LENGTH and number.isdigit():
        raise _invalid("FIRST_GENERATION_NOT_ACCEPTED", "15-digit resident ID numbers are no longer valid")
    _check_gb11643_shape(number)
    if number[:6] in _PERMIT_PREFIXES:
        raise _invalid("WRONG_DOCUMENT_TYPE", "this is a residence permit number, not a resident ID")
    born = _birth_date(number[6:14], today)
    if not _region_in_force(number[:6], born.year, today.year):
        raise _invalid("UNKNOWN_REGION", "region code was not in force for this birth date")
    return born


def _residence_permit(number: str, today: date) -> date:
    _check_gb11643_shape(number)
    if number[:6] not in _PERMIT_PREFIXES:
        raise _invalid("UNKNOWN_REGION", "a residence permit number starts with 810000, 820000 or 830000")
    return _birth_date(number[6:14], today)


def _foreign_permanent_resident(number: str, today: date) -> date:
    if len(number) == _GB11643_LENGTH:
        _check_gb11643_shape(number)
        if number[0] != "9":
            raise _invalid("BAD_FORMAT", "an 18-digit permanent resident ID starts with 9")
        if number[1:3] not in _MAINLAND_PROVINCES:
            raise _invalid("UNKNOWN_REGION", "issuing province code is unknown")
        if number[3:6] not in ALPHA2_BY_NUMERIC:
            raise _invalid("UNKNOWN_NATIONALITY", "nationality is not an ISO 3166-1 numeric code")
        return _birth_date(number[6:14], today)
    if len(number) == _FPR_2004_LENGTH:
        if not (number[:3].isalpha() and number[3:].isdigit()):
            raise _invalid("BAD_FORMAT", "a 15-character permanent resident ID is 3 letters and 12 digits")
        if _icao_check_digit(number[:14]) != number[14]:
            raise _checksum_mismatch()
        if number[:3] not in ALPHA2_BY_ALPHA3:
            raise _invalid("UNKNOWN_NATIONALITY", "nationality is not an ISO 3166-1 alpha-3 code")
        if number[3:5] not in _MAINLAND_PROVINCES:
            raise _invalid("UNKNOWN_REGION", "issuing province code is unknown")
        return _two_digit_year_birth(number[7:13], today)
    raise _invalid("BAD_LENGTH", "a permanent resident ID has 15 or 18 characters")


def _icao_check_digit(text: str) -> str:
    """ICAO 9303 check digit: digits count as themselves, A-Z as 10-35, weights 7, 3, 1 repeating."""
    total = sum(
        (int(char) if char.isdigit() else ord(char) - ord("A") + 10) * _ICAO_WEIGHTS[position % 3]
        for position, char in enumerate(text)
    )
    return str(total % 10)


def _social_credit_code(number: str, _today: date) -> None:
    if len(number) != _USCC_LENGTH:
        raise _invalid("BAD_LENGTH", "a social credit code has 18 characters")
    if not _USCC_ALPHABET.issuperset(number):
        raise _invalid("BAD_CHARACTERS", "a social credit code never contains I, O, S, V or Z")
    # stdnum's validate() refuses departments A, N and Y (added in 2016) but its check
    # character function is correct for any code over the alphabet.
    if uscc.calc_check_digit(number) != number[17]:
        raise _checksum_mismatch()
    if number[0] not in _USCC_DEPARTMENTS:
        raise _invalid("UNKNOWN_DEPARTMENT", "registration department code is not in GB 32100")
    if number[1] not in "123456789":
        raise _invalid("BAD_FORMAT", "organization type code must be a digit from 1 to 9")
    if not number[2:8].isdigit() or number[2:4] not in _USCC_REGION_PREFIXES:
        raise _invalid("UNKNOWN_REGION", "registration region code is unknown")


_CHINESE_VALIDATORS: Final[dict[DocumentType, Callable[[str, date], date | None]]] = {
    DocumentType.CN_RIC: _resident_id,
    DocumentType.CN_RESIDENCE_PERMIT: _residence_permit,
    DocumentType.CN_FOREIGN_PERMANENT_RESIDENT: _foreign_permanent_resident,
    DocumentType.CN_USCC: _social_credit_code,
}

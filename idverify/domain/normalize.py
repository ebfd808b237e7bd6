# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Normalization of free-text request fields (names, phone numbers, opaque ids) before anything uses them.

Each function returns the one canonical form that hashing and comparison rely on, or raises
``InvalidArgument`` naming the field and a stable reason code; messages never echo the value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Final

from idverify.domain.errors import InvalidArgument

NAME_FIELD: Final = "subject.name"
PHONE_FIELD: Final = "subject.phone_number"
MAX_NAME_LENGTH: Final = 100
MAX_PHONE_LENGTH: Final = 32

# NFKC can expand a character to many (U+FDFA becomes 18), so the raw input gets a looser bound
# that still caps the work done before the real check.
_MAX_RAW_NAME_LENGTH: Final = 4 * MAX_NAME_LENGTH
# Cc control, Cf format (zero-width and bidi marks that make equal-looking names differ), Cs lone
# surrogates. Co private use stays: older household registers encode rare hanzi there.
_REJECTED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs"})
# Ethnic-minority and foreign names separate parts with U+00B7; keyboards produce look-alikes.
_MIDDLE_DOTS: Final = str.maketrans(dict.fromkeys("\u2022\u2027\u2219\u22c5\u30fb", "\u00b7"))
_PHONE_SEPARATORS: Final = str.maketrans("", "", " -().")
_MAINLAND_MOBILE: Final = re.compile(r"1[3-9]\d{9}")
_INTERNATIONAL: Final = re.compile(r"[1-9]\d{7,14}")
_CHINA_CODE: Final = "86"


def normalize_name(raw: str) -> str:
    """Return a person's or organization's name in canonical form.

    NFKC, look-alike middle dots mapped to U+00B7, whitespace trimmed and inner runs collapsed
    to one space.

    Args:
        raw: the name as received.

    Returns:
        The normalized name, at most 100 characters.

    Raises:
        InvalidArgument: ``EMPTY``, ``TOO_LONG``, or ``BAD_CHARACTERS`` (control, format or
            unpaired surrogate code points), with field ``subject.name``.

    """
    if len(raw) > _MAX_RAW_NAME_LENGTH:
        raise _name_error("TOO_LONG", f"name is longer than {MAX_NAME_LENGTH} characters")
    # Checked before NFKC as well as after: the input is refused even where NFKC would have
    # hidden the character, and NFKC of a compatibility character could yield one.
    text = unicodedata.normalize("NFKC", raw).translate(_MIDDLE_DOTS)
    if _has_rejected_character(raw) or _has_rejected_character(text):
        raise _name_error("BAD_CHARACTERS", "name has control, format or surrogate characters")
    text = " ".join(text.split())
    if not text:
        raise _name_error("EMPTY", "name is empty")
    if len(text) > MAX_NAME_LENGTH:
        raise _name_error("TOO_LONG", f"name is longer than {MAX_NAME_LENGTH} characters")
    return text


def normalize_phone(raw: str) -> str:
    """Return a phone number in E.164 form (``+8613800000000``).

    Accepted: mainland mobiles with or without ``+86``, ``0086`` or ``86``; any other number
    written internationally (``+`` or ``00``, then 8 to 15 digits with the country code).
    Spaces, hyphens, dots and parentheses are ignored; full-width digits are fine.

    Args:
        raw: the phone number as received.

    Returns:
        ``+`` followed by 8 to 15 digits.

    Raises:
        InvalidArgument: ``EMPTY``, ``TOO_LONG``, ``BAD_CHARACTERS`` or ``BAD_FORMAT``, with
            field ``subject.phone_number``.

    """
    if len(raw) > MAX_PHONE_LENGTH:
        raise _phone_error("TOO_LONG", f"phone number is longer than {MAX_PHONE_LENGTH} characters")
    text = unicodedata.normalize("NFKC", raw).translate(_PHONE_SEPARATORS)
    if not text:
        raise _phone_error("EMPTY", "phone number is empty")
    international = text.startswith("+")
    digits = text.removeprefix("+")
    if digits and not (digits.isascii() and digits.isdigit()):
        raise _phone_error("BAD_CHARACTERS", "phone number has characters other than digits and separators")
    if not international and digits.startswith("00"):
        international, digits = True, digits[2:]
    if not international and digits.startswith(_CHINA_CODE) and _MAINLAND_MOBILE.fullmatch(digits[2:]):
        international = True
    if not international:
        if _MAINLAND_MOBILE.fullmatch(digits):
            return f"+{_CHINA_CODE}{digits}"
        raise _phone_error("BAD_FORMAT", "not a mainland mobile number nor an international number")
    if digits.startswith(_CHINA_CODE) and not _MAINLAND_MOBILE.fullmatch(digits[2:]):
        # SMS codes go to mobiles; a +86 landline or a typo in a mobile must not pass.
        raise _phone_error("BAD_FORMAT", "a +86 number must be a mainland mobile number")
    if not _INTERNATIONAL.fullmatch(digits):
        raise _phone_error("BAD_FORMAT", "an international number has 8 to 15 digits and no leading 0")
    return f"+{digits}"


def normalize_identifier(raw: str, *, field: str, max_length: int = 128) -> str:
    """Check an opaque identifier (account, request or verification id) and return it unchanged.

    Opaque ids are compared byte for byte, so nothing is folded: they must already be printable
    ASCII without spaces.

    Args:
        raw: the identifier as received.
        field: the request field it came from, named in the error.
        max_length: the longest identifier accepted.

    Returns:
        ``raw`` itself.

    Raises:
        InvalidArgument: ``EMPTY``, ``TOO_LONG`` or ``BAD_CHARACTERS``, naming ``field``.
        ValueError: ``max_length`` is below 1 (a programming error, not a bad request).

    """
    if max_length < 1:
        raise ValueError("max_length must be at least 1")
    if not raw:
        raise InvalidArgument(f"{field} is empty", reason="EMPTY", field=field)
    if len(raw) > max_length:
        raise InvalidArgument(
            f"{field} is longer than {max_length} characters", reason="TOO_LONG", field=field
        )
    # isascii/isprintable run in C; with no space that is exactly "!".."~", on a hot path
    # (a batch of a thousand account ids checks each one).
    if not (raw.isascii() and raw.isprintable() and " " not in raw):
        raise InvalidArgument(
            f"{field} must be printable ASCII without spaces", reason="BAD_CHARACTERS", field=field
        )
    return raw


def normalize_identifiers(raws: Sequence[str], *, field: str, max_length: int = 128) -> list[str]:
    """:func:`normalize_identifier` of each, in order, checked in a few passes over all of them.

    A batch read checks up to a thousand ids per call. Joined, they are printable ASCII without
    spaces exactly when each one is, so the common case costs a handful of C-level passes; the
    first bad id is then found one by one, for an error naming its reason and its index
    (``account_ids[3]``), so that a caller need not search a thousand ids for it.

    Raises:
        InvalidArgument: as :func:`normalize_identifier`, for the first bad id, its field
            ``field[<index>]``.
    """
    if not raws:
        return []
    lengths = list(map(len, raws))
    joined = "".join(raws)
    if (
        min(lengths) >= 1
        and max(lengths) <= max_length
        and joined.isascii()
        and joined.isprintable()
        and " " not in joined
    ):
        return list(raws)
    return [
        normalize_identifier(raw, field=f"{field}[{index}]", max_length=max_length)
        for index, raw in enumerate(raws)
    ]


def _has_rejected_character(text: str) -> bool:
    return any(unicodedata.category(char) in _REJECTED_CATEGORIES for char in text)


def _name_error(reason: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, reason=reason, field=NAME_FIELD)


def _phone_error(reason: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, reason=reason, field=PHONE_FIELD)

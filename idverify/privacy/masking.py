"""Masked forms of phone and document numbers, the only forms that may reach storage, logs or callers.

Masking never raises: it runs while building responses and log lines, where a malformed value must
still come out masked rather than as an error that might carry it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["mask_document", "mask_phone"]

_MASK: Final = "****"
_PHONE_TAIL: Final = 4
# Below this many national digits, four visible digits would give away half the number or more.
_PHONE_MIN_FOR_TAIL: Final = 8
_DOCUMENT_MIN_FOR_ENDS: Final = 6

# ITU-T E.164 country codes are prefix-free: zones 1 and 7 are single digits, these are the
# two-digit codes (one character class per world zone), and every other code has three digits.
# That is all it takes to split off the code without a numbering-plan library.
_TWO_DIGIT_CODE: Final = re.compile(r"2[07]|3[0-469]|4[013-9]|5[1-8]|6[0-6]|8[1246]|9[0-58]")


def _split_country_code(digits: str) -> tuple[str, str]:
    if digits[:1] in {"1", "7"}:
        size = 1
    elif _TWO_DIGIT_CODE.fullmatch(digits[:2]):
        size = 2
    else:
        size = 3
    return digits[:size], digits[size:]


def mask_phone(e164: str) -> str:
    """Return a phone number masked for display.

    Mainland China mobiles (``+86`` and 11 digits starting with 1) keep the familiar local form,
    first three and last four: ``+8613800000000`` -> ``138****0000``. Every other number keeps its
    country code and last four digits behind a fixed mask that hides its length:
    ``+14155550123`` -> ``+1 ****0123``, ``+85261234567`` -> ``+852 ****4567``. Numbers with
    fewer than 8 national digits, and input that is not E.164, show no digits beyond the country code.

    Args:
        e164: the number in E.164 form (``+`` and digits); anything else is masked all the same.

    """
    if not e164:
        return ""
    if not (e164.startswith("+") and e164[1:].isascii() and e164[1:].isdecimal()):
        digits = "".join(c for c in e164 if c.isascii() and c.isdecimal())
        return _MASK + digits[-_PHONE_TAIL:] if len(digits) >= _PHONE_MIN_FOR_TAIL else _MASK
    country, national = _split_country_code(e164[1:])
    if not country:
        return _MASK
    if country == "86" and len(national) == 11 and national.startswith("1"):  # noqa: PLR2004 - mainland mobiles
        return f"{national[:3]}{_MASK}{national[-_PHONE_TAIL:]}"
    tail = national[-_PHONE_TAIL:] if len(national) >= _PHONE_MIN_FOR_TAIL else ""
    return f"+{country} {_MASK}{tail}"


def mask_document(number: str) -> str:
    """Return a document number with all but its first and last characters replaced by ``*``.

    ``110101199003077777`` -> ``1****************7``. The length stays visible (it tells document
    types apart for support staff); numbers shorter than 6 characters are masked entirely so that no
    more than a third of one ever shows.

    Args:
        number: the document number, normalized or not.

    """
    if len(number) < _DOCUMENT_MIN_FOR_ENDS:
        return "*" * len(number)
    return number[0] + "*" * (len(number) - 2) + number[-1]

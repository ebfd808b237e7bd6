# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Tencent Cloud FaceID (2018-03-01) result and error codes, mapped to verdicts.

From the API reference of each action (the ``Result`` field of IdCardVerification,
PhoneVerification and BankCard4EVerification, which also says which codes are billed) and
FaceID's error code list, as Tencent's own SDK carries them (``faceid/v20180301/models.py`` and
``errorcodes.py`` of tencentcloud-sdk-python). A code missing from these tables is never taken
for a match: the step answers UNAVAILABLE (VENDOR_ERROR).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from idverify.vendors.verdicts import CodeMeaning, Transient, Unavailable, Verdict, VerdictKind

__all__ = [
    "BANK_CARD_RESULTS",
    "ID_CARD_RESULTS",
    "PHONE_DETAILS",
    "PHONE_RESULTS",
    "error_outcome",
]

_M, _X, _N, _I = VerdictKind.MATCH, VerdictKind.MISMATCH, VerdictKind.NO_RECORD, VerdictKind.INVALID_INPUT
_BUSY: Final = Transient("VENDOR_BUSY")
_SOURCE_DOWN: Final = Transient("VENDOR_SOURCE_UNAVAILABLE")
_DAILY: Final = Verdict(VerdictKind.DAILY_LIMIT, "VENDOR_DAILY_LIMIT")

# IdCardVerification: 0 and -1 are billed, the rest are not.
ID_CARD_RESULTS: Final[Mapping[str, CodeMeaning]] = {
    "0": Verdict(_M, billed=True),
    "-1": Verdict(_X, "AUTHORITY_MISMATCH", billed=True),
    "-2": Verdict(_I, "INVALID_DOCUMENT"),
    "-3": Verdict(_I, "INVALID_NAME"),
    "-4": _SOURCE_DOWN,  # the ID database's service failed
    "-5": Verdict(_N, "NO_RECORD"),
    "-6": _SOURCE_DOWN,  # the authority's system is being upgraded
    "-7": _DAILY,
}

# PhoneVerification: 0 and -4 are billed, the rest are not.
PHONE_RESULTS: Final[Mapping[str, CodeMeaning]] = {
    "0": Verdict(_M, billed=True),
    "-4": Verdict(_X, "CARRIER_MISMATCH", billed=True),
    "-6": Verdict(_I, "INVALID_PHONE"),
    "-7": Verdict(_I, "INVALID_DOCUMENT"),
    "-8": Verdict(_I, "INVALID_NAME"),
    "-9": Verdict(_N, "NO_RECORD"),
    "-11": _BUSY,
    "-12": _DAILY,
    "-13": Verdict(VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),  # number range not supported
}

# PhoneVerification in detailed mode (VerifyMode 1) says which factor disagrees on -4.
PHONE_DETAILS: Final[Mapping[str, str]] = {
    "PhoneIdCardMismatch": "CARRIER_ID_MISMATCH",
    "PhoneNameMismatch": "CARRIER_NAME_MISMATCH",
    "PhoneNameIdCardMismatch": "CARRIER_NAME_ID_MISMATCH",
    "NameIdCardMismatch": "AUTHORITY_MISMATCH",
    "OtherMismatch": "CARRIER_MISMATCH",
}

_CARD_REFUSED: Final = Verdict(VerdictKind.REJECTED, "BANK_CARD_REJECTED", billed=True)

# BankCard4EVerification: 0, -1, -6 to -17 and -21 are billed; -2 to -5 and -18 to -20 are not.
BANK_CARD_RESULTS: Final[Mapping[str, CodeMeaning]] = {
    "0": Verdict(_M, billed=True),
    "-1": Verdict(_X, "BANK_CARD_MISMATCH", billed=True),
    "-2": Verdict(_I, "INVALID_NAME"),
    "-3": Verdict(_I, "INVALID_DOCUMENT"),
    "-4": Verdict(_I, "INVALID_BANK_CARD"),
    "-5": Verdict(_I, "INVALID_PHONE"),
    "-6": Verdict(_X, "BANK_CARD_MISMATCH", billed=True),  # cardholder details wrong
    **{str(code): _CARD_REFUSED for code in range(-17, -6)},  # lost, expired, restricted ...
    "-18": _BUSY,
    "-19": _DAILY,
    "-20": Verdict(VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),  # document type not supported
    "-21": _CARD_REFUSED,
}

# Error codes (Response.Error.Code) that still say something about the claim.
_ERROR_VERDICTS: Final[Mapping[str, CodeMeaning]] = {
    "FailedOperation.IdentityAuthLimitExceeded": _DAILY,
    "FailedOperation.IdNameMisMatch": Verdict(_X, "AUTHORITY_MISMATCH"),
    "FailedOperation.IdNoExistSystem": Verdict(_N, "NO_RECORD"),
    "FailedOperation.IdFormatError": Verdict(_I, "INVALID_DOCUMENT"),
    "FailedOperation.NameFormatError": Verdict(_I, "INVALID_NAME"),
    "InvalidParameterValue.BizTokenExpired": Verdict(_X, "CHALLENGE_EXPIRED"),
    "InvalidParameterValue.BizTokenIllegal": Verdict(_X, "CHALLENGE_INVALID"),
    "FailedOperation.CompareLibServiceUnavailable": _SOURCE_DOWN,
    "FailedOperation.RequestLimitExceeded": _BUSY,
    "RequestLimitExceeded": _BUSY,
}
# Families by prefix, most specific first.
_ERROR_FAMILIES: Final[tuple[tuple[str, CodeMeaning], ...]] = (
    ("AuthFailure", Unavailable("VENDOR_AUTH_FAILED")),
    ("UnauthorizedOperation", Unavailable("VENDOR_ACCOUNT_ERROR")),
    ("InternalError", Transient("VENDOR_ERROR")),
    ("FailedOperation.UnKnown", Transient("VENDOR_ERROR")),
    ("RequestLimitExceeded", _BUSY),
)


def error_outcome(code: str) -> CodeMeaning:
    """What an API error code (``Response.Error.Code``) means for the call."""
    if code in _ERROR_VERDICTS:
        return _ERROR_VERDICTS[code]
    for prefix, outcome in _ERROR_FAMILIES:
        if code == prefix or code.startswith(prefix + "."):
            return outcome
    return Unavailable("VENDOR_ERROR")

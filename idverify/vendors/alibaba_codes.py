# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Alibaba Cloud ID Verification (Cloudauth 2019-03-07) codes, mapped to verdicts.

From the API references of Id2MetaVerify, Mobile3MetaDetailVerify and BankMetaVerify
(``ResultObject.BizCode`` 1 and 2 are billed, 3 is not; ``SubCode`` details), the information
verification error codes (https://help.aliyun.com/en/id-verification/information-verification/developer-reference/error-code-info-check)
and the face verification codes of InitFaceVerify and DescribeFaceVerify
(https://help.aliyun.com/zh/id-verification/financial-grade-id-verification/error-code).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from idverify.vendors.verdicts import CodeMeaning, Transient, Unavailable, Verdict, VerdictKind

__all__ = [
    "BANK_SUBCODES",
    "CARRIER_SUBCODES",
    "FACE_CODES",
    "FACE_SUBCODES",
    "INFO_CODES",
    "gateway_outcome",
]

_X, _N, _I = VerdictKind.MISMATCH, VerdictKind.NO_RECORD, VerdictKind.INVALID_INPUT
_DAILY: Final = Verdict(VerdictKind.DAILY_LIMIT, "VENDOR_DAILY_LIMIT")
_ACCOUNT: Final = Unavailable("VENDOR_ACCOUNT_ERROR")

# Information checks (Id2MetaVerify, Mobile3MetaDetailVerify, BankMetaVerify): Code other than 200.
INFO_CODES: Final[Mapping[str, CodeMeaning]] = {
    "400": Verdict(_I, "INVALID_INPUT"),  # a parameter is empty
    "401": Verdict(_I, "INVALID_INPUT"),  # a parameter does not meet the requirements
    # The authority's source is down, or a console security policy refused the call.
    "402": Unavailable("VENDOR_SOURCE_UNAVAILABLE"),
    "403": _DAILY,  # too many repeated calls for the same data
    "405": Verdict(VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),  # number range not supported
    "410": _ACCOUNT,
    "411": _ACCOUNT,
    "412": _ACCOUNT,
    "500": Transient("VENDOR_ERROR"),
}

# Mobile3MetaDetailVerify SubCode when BizCode is 2 (inconsistent).
CARRIER_SUBCODES: Final[Mapping[str, str]] = {
    "201": "CARRIER_NAME_ID_MISMATCH",
    "202": "CARRIER_ID_MISMATCH",
    "203": "CARRIER_NAME_MISMATCH",
    "204": "CARRIER_MISMATCH",
}

# BankMetaVerify SubCode: 201 the cardholder details disagree; 202-216 the card cannot be
# used (billed); 301-306 cannot verify (not billed).
BANK_SUBCODES: Final[Mapping[str, Verdict]] = {
    "201": Verdict(_X, "BANK_CARD_MISMATCH", billed=True),
    **{
        str(code): Verdict(VerdictKind.REJECTED, "BANK_CARD_REJECTED", billed=True)
        for code in range(202, 217)
    },
    "301": Verdict(VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),
    "302": Verdict(VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),
    "303": Verdict(VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),
    "304": Verdict(_I, "INVALID_BANK_CARD"),
    "305": Verdict(VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),
    "306": _DAILY,
}

# InitFaceVerify / DescribeFaceVerify: Code other than 200.
FACE_CODES: Final[Mapping[str, CodeMeaning]] = {
    "400": Verdict(_I, "INVALID_INPUT"),
    "401": Verdict(_I, "INVALID_INPUT"),
    "402": Unavailable("VENDOR_CONFIG_ERROR"),  # application configuration missing
    "403": Verdict(VerdictKind.PENDING),  # DescribeFaceVerify: verification not finished
    "404": Unavailable("VENDOR_CONFIG_ERROR"),  # scene not configured
    "406": Verdict(_X, "CHALLENGE_INVALID"),
    "410": _ACCOUNT,
    "411": _ACCOUNT,
    "412": _ACCOUNT,
    "414": Verdict(_I, "DEVICE_UNSUPPORTED"),
    "415": Verdict(_I, "DEVICE_UNSUPPORTED"),
    "416": Verdict(_I, "DEVICE_UNSUPPORTED"),
    # The identity's comparison source cannot be used: this vendor cannot check this person.
    "417": Verdict(VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED"),
    "418": _DAILY,
    "424": Verdict(VerdictKind.PENDING),  # no result yet: not started, abandoned or in progress
    "427": Verdict(_X, "LIVENESS_REFUSED"),  # the vendor's risk policy refused this identity
    "500": Transient("VENDOR_ERROR"),
}

# DescribeFaceVerify ResultObject.SubCode when Passed is F.
FACE_SUBCODES: Final[Mapping[str, Verdict]] = {
    "201": Verdict(_X, "AUTHORITY_MISMATCH", billed=True),
    "202": Verdict(_N, "NO_RECORD", billed=True),
    "203": Verdict(_N, "NO_RECORD", billed=True),  # no usable photo on record
    "204": Verdict(_X, "FACE_MISMATCH", billed=True),
    "205": Verdict(_X, "LIVENESS_FAILED", billed=True),
}


def gateway_outcome(code: str) -> CodeMeaning:
    """What an OpenAPI gateway error code (``SignatureDoesNotMatch``, ``Throttling.User``) means."""
    if code.startswith(("InvalidAccessKeyId", "SignatureDoesNotMatch", "IncompleteSignature")) or code in {
        "SignatureNonceUsed",
        "InvalidTimeStamp.Expired",
    }:
        return Unavailable("VENDOR_AUTH_FAILED")
    if code.startswith("Throttling"):
        return Transient("VENDOR_BUSY")
    if code in {"ServiceUnavailable", "InternalError"}:
        return Transient("VENDOR_ERROR")
    if code.startswith("Forbidden"):
        return _ACCOUNT
    return Unavailable("VENDOR_ERROR")

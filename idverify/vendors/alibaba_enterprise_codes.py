# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Alibaba Cloud enterprise element check (Cloudauth 2022-11-25) codes, mapped to verdicts.

From the API references of EntElementVerify and EntElementVerifyV2 ("企业要素验证",
https://help.aliyun.com/zh/id-verification/enterprise-identity-authentication/developer-reference/enterprise-element-verification
and .../enterprise-factor-validation-v2):

* ``Code``: ``Success`` for an answered call; ``MissingParameter`` (HTTP 400),
  ``InvalidParameter`` (401), ``Forbidden.AccountAccessDenied`` and
  ``Forbidden.RAMUserAccessDenied`` (403) otherwise, besides the OpenAPI gateway's own codes
  (signature, throttling), which :func:`~idverify.vendors.alibaba_codes.gateway_outcome` reads.
* ``Result.BizCode``: ``1`` consistent, ``2`` inconsistent, ``3`` not found.
* ``Result.ReasonDetail``: the inconsistent elements, comma-separated: ``EntNameFlag``,
  ``LicenseNoFlag``, ``LegalPersonNameFlag``, ``LegalPersonCertNoFlag``.
* ``Result.ReasonCode`` (EntElementVerify only, no longer sent to customers who started after
  2023-06-15): ``100`` consistent, ``201`` person and enterprise inconsistent, ``202``
  enterprise name and code inconsistent, ``301`` no such enterprise, ``302`` the legal
  representative is not in the registry.
* ``Result.Status``, the business status: ``1`` in operation (开业/在营), ``2`` relocated (迁出),
  ``3`` deregistered (注销), ``4`` revoked (吊销), ``5`` cancelled (撤销), ``6`` suspended (停业),
  ``0`` other.
* ``Result.OpenTime``: the business term, ``yyyy-MM-dd/yyyy-MM-dd`` (not used: a term that has
  ended shows in the status).

What the references leave open, and what this module assumes (docs/VENDORS.md says the same):
whether BizCode 3 is billed (assumed not, like Id2MetaVerify's 3); which flag wins when
several elements disagree (the organization's own code, then its name, then the legal
representative's name, then their ID number: the reason names the first, the vendor code keeps
them all); and a status of ``2`` relocated or ``0`` other, which do not say the organization
operates, so they fail as ``ORG_NOT_ACTIVE`` like a deregistered one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from idverify.vendors.verdicts import CodeMeaning, Unavailable, Verdict, VerdictKind

__all__ = [
    "ENT_CODES",
    "ENT_REASON_CODES",
    "ENT_REASON_FLAGS",
    "NOT_OPERATING_STATUSES",
    "OPERATING_STATUS",
    "SUCCESS",
]

SUCCESS: Final = "Success"

# Code other than Success (the OpenAPI gateway's own codes are read by gateway_outcome).
ENT_CODES: Final[Mapping[str, CodeMeaning]] = {
    "MissingParameter": Verdict(VerdictKind.INVALID_INPUT, "INVALID_INPUT"),
    "InvalidParameter": Verdict(VerdictKind.INVALID_INPUT, "INVALID_INPUT"),
    "Forbidden.AccountAccessDenied": Unavailable("VENDOR_ACCOUNT_ERROR"),  # not activated, or in arrears
    "Forbidden.RAMUserAccessDenied": Unavailable("VENDOR_ACCOUNT_ERROR"),  # the RAM user lacks the policy
}

OPERATING_STATUS: Final = "1"
# The documented statuses other than "in operation": the match is of an organization that does
# not operate (what each means is in the module docstring).
NOT_OPERATING_STATUSES: Final = frozenset({"0", "2", "3", "4", "5", "6"})

# ReasonDetail flags, in the order a reason is chosen when several elements disagree.
ENT_REASON_FLAGS: Final[Mapping[str, str]] = {
    "LicenseNoFlag": "ORG_CODE_MISMATCH",
    "EntNameFlag": "ORG_NAME_MISMATCH",
    "LegalPersonNameFlag": "LEGAL_REP_NAME_MISMATCH",
    "LegalPersonCertNoFlag": "LEGAL_REP_ID_MISMATCH",
}

# EntElementVerify's ReasonCode, read only when ReasonDetail names no flag.
ENT_REASON_CODES: Final[Mapping[str, Verdict]] = {
    "201": Verdict(VerdictKind.MISMATCH, "LEGAL_REP_MISMATCH", billed=True),
    "202": Verdict(VerdictKind.MISMATCH, "ORG_MISMATCH", billed=True),
    "301": Verdict(VerdictKind.NO_RECORD, "ORG_NOT_FOUND"),
    "302": Verdict(VerdictKind.NO_RECORD, "LEGAL_REP_NOT_FOUND"),
}

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``bank_card_4factor`` verifier: checks a bank card against its holder's identity at the bank.

A vendor (FaceID's BankCard4EVerification, Alibaba's BankMetaVerify BANK_CARD_4_META) asks the
bank whether card number, name, ID number and the card's registered mobile number belong
together. The card number lives in memory for the call only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from idverify.vendors.api import Check
from idverify.vendors.steps import ClaimStep

if TYPE_CHECKING:
    from collections.abc import Mapping

    from idverify.verifiers.base import VerifierDeps

__all__ = ["BankCard4FactorVerifier"]


class BankCard4FactorVerifier(ClaimStep):
    """Name + ID number + mobile number + card number against the issuing bank, through ``vendor``.

    Its step answers PASS on a match; FAIL with ``BANK_CARD_MISMATCH``, ``BANK_CARD_REJECTED``
    (lost, expired, restricted ...), an ``INVALID_*`` reason, ``BANK_CARD_REQUIRED``,
    ``PHONE_REQUIRED`` or ``PHONE_NOT_SUPPORTED``; UNAVAILABLE with a ``VENDOR_*`` reason.

    Raises:
        ConfigError: ``vendor`` is missing or not configured, or another option is given.

    """

    def __init__(self, options: Mapping[str, Any], deps: VerifierDeps) -> None:
        super().__init__("bank_card_4factor", options, deps, check=Check.BANK_CARD)

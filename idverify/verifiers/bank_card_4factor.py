# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``bank_card_4factor`` verifier: checks a bank card against its holder's identity at the bank.

A vendor (FaceID's BankCard4EVerification, Alibaba's BankMetaVerify BANK_CARD_4_META) asks the
bank whether card number, name, ID number and the card's registered mobile number belong
together. The card number lives in memory for the call only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from idverify.vendors.api import Check, Claim
from idverify.vendors.steps import VendorStep

if TYPE_CHECKING:
    from collections.abc import Mapping

    from idverify.verifiers.base import StepContext, StepResult, VerifierDeps

__all__ = ["BankCard4FactorVerifier"]


class BankCard4FactorVerifier(VendorStep):
    """Name + ID number + mobile number + card number against the issuing bank, through ``vendor``.

    Raises:
        ConfigError: ``vendor`` is missing or not configured, or another option is given.

    """

    def __init__(self, options: Mapping[str, Any], deps: VerifierDeps) -> None:
        super().__init__(
            "bank_card_4factor",
            options,
            deps,
            check=Check.BANK_CARD,
            required_fields=frozenset(
                {"name", "document_type", "document_number", "phone_number", "bank_card_number"}
            ),
        )

    async def check(self, context: StepContext) -> StepResult:
        """Ask the vendor whether the four factors belong together.

        Args:
            context: the verification's subject.

        Returns:
            PASS on a match; FAIL with ``BANK_CARD_MISMATCH``, ``BANK_CARD_REJECTED`` (lost,
            expired, restricted ...), an ``INVALID_*`` reason, ``BANK_CARD_REQUIRED``,
            ``PHONE_REQUIRED`` or ``PHONE_NOT_SUPPORTED``; UNAVAILABLE with a ``VENDOR_*``
            reason.

        """
        claim = self.claim(context, phone=True, card=True)
        if not isinstance(claim, Claim):
            return claim
        return await self.ask(lambda: self.vendor.check_bank_card(claim))

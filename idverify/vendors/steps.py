# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""What the vendor-backed verifiers share: options, the vendor lease, the claim, the outcome.

Each verifier module (``authority``, ``carrier_3factor``, ``bank_card_4factor``,
``face_liveness``, ``authority_http``) says which check it runs and which fields it needs;
this module turns a step context into the minimal :class:`~idverify.vendors.api.Claim` and a
vendor answer into a step result, the same way for all of them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from idverify.domain.errors import ConfigError
from idverify.vendors.api import Check, Claim, IdentityVendor
from idverify.vendors.registry import VendorLease, lease_vendor
from idverify.vendors.verdicts import VendorUnavailable, Verdict, VerdictKind, step_result
from idverify.verifiers.base import StepContext, StepResult, VerifierDeps

__all__ = ["ClaimStep", "VendorStep", "bank_card_digits", "mainland_mobile"]

_MAINLAND_MOBILE = re.compile(r"^\+861\d{10}$")
_CARD = re.compile(r"^\d{12,19}$")
_CARD_SEPARATORS: Final = str.maketrans("", "", " -")


def mainland_mobile(e164: str) -> str | None:
    """The 11-digit national form of a mainland China mobile number, or None for any other number."""
    return e164[3:] if _MAINLAND_MOBILE.match(e164) else None


def bank_card_digits(raw: str) -> str | None:
    """A card number as 12-19 digits (spaces and hyphens dropped), or None."""
    digits = raw.translate(_CARD_SEPARATORS)
    return digits if _CARD.match(digits) and digits.isascii() else None


def _mobile_of(e164: str) -> str | StepResult:
    if not e164:
        return StepResult.failed("PHONE_REQUIRED")
    national = mainland_mobile(e164)
    return national if national is not None else StepResult.failed("PHONE_NOT_SUPPORTED")


def _card_of(raw: str) -> str | StepResult:
    if not raw.strip():
        return StepResult.failed("BANK_CARD_REQUIRED")
    digits = bank_card_digits(raw)
    return digits if digits is not None else StepResult.failed("INVALID_BANK_CARD")


class VendorStep:
    """The common part of a vendor-backed verifier.

    Args:
        name: the verifier's registry name.
        options: its options table; ``vendor`` names a ``[vendors.<name>]`` table.
        deps: the verifier dependencies holding the vendor registry.
        check: the check it runs.
        required_fields: the subject fields it reads.
        known_options: options besides ``vendor`` that the subclass reads itself.
        lease: a ready lease (for a verifier that builds its own vendor, ``authority_http``).

    Raises:
        ConfigError: an option is unknown, ``vendor`` is missing, or the vendor is not configured.

    """

    biometric: bool = False

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        deps: VerifierDeps,
        *,
        check: Check,
        required_fields: frozenset[str],
        known_options: frozenset[str] = frozenset(),
        lease: VendorLease | None = None,
    ) -> None:
        self.name: str = name
        self.required_fields: frozenset[str] = required_fields
        self._check = check
        if lease is None:
            unknown = sorted(set(options) - known_options - {"vendor"})
            if unknown:
                raise ConfigError(f"verifiers.{name}: unknown options {unknown}; known: vendor")
            vendor = options.get("vendor")
            if not isinstance(vendor, str) or not vendor:
                raise ConfigError(f'verifiers.{name}: set vendor = "<name of a [vendors.*] table>"')
            lease = lease_vendor(deps, vendor, verifier=name)
        self._lease = lease
        self.vendor: IdentityVendor = lease.vendor
        # Steps of one provider fail together: the fallbacks offered leave them all out.
        self.provider: str = lease.vendor.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vendor={self.provider!r})"

    def claim(self, context: StepContext, *, phone: bool = False, card: bool = False) -> Claim | StepResult:
        """The claim to send, or the FAIL result that makes sending pointless.

        Args:
            context: the step's context.
            phone: the check needs the mobile number.
            card: the check needs the bank card number.

        Returns:
            The claim, or FAIL with ``NAME_REQUIRED``, ``DOCUMENT_TYPE_UNSUPPORTED``,
            ``PHONE_REQUIRED``, ``PHONE_NOT_SUPPORTED`` (vendors check mainland mobiles only),
            ``BANK_CARD_REQUIRED`` or ``INVALID_BANK_CARD``.

        """
        subject = context.subject
        if not subject.name.strip():
            return StepResult.failed("NAME_REQUIRED")
        document_type = subject.document_type
        if document_type is None or not self.vendor.supports(self._check, document_type):
            # Not NOT_APPLICABLE: skipping the authority check would let the method pass on a
            # checksum alone. The caller gets the fallback methods instead.
            return StepResult.failed("DOCUMENT_TYPE_UNSUPPORTED")
        mobile = _mobile_of(subject.phone_number) if phone else ""
        if isinstance(mobile, StepResult):
            return mobile
        card_number = _card_of(subject.bank_card_number) if card else ""
        if isinstance(card_number, StepResult):
            return card_number
        return Claim(subject.name, document_type, subject.document_number, mobile, card_number)

    async def ask(self, call: Callable[[], Awaitable[Verdict]]) -> StepResult:
        """Run one vendor call and turn its answer into a step result.

        Args:
            call: the adapter call.

        Returns:
            The verdict's step result, UNAVAILABLE with the failure's reason when no verdict
            came, and UNAVAILABLE (``VENDOR_ERROR``) for a PENDING answer to a non-liveness check.

        """
        try:
            verdict = await call()
        except VendorUnavailable as exc:
            return StepResult.unavailable(exc.reason, exc.vendor_code)
        return self.settle(verdict)

    def settle(self, verdict: Verdict) -> StepResult:
        """The step result of a verdict; PENDING means something only to a liveness check."""
        if verdict.kind is VerdictKind.PENDING and self._check is not Check.LIVENESS:
            return StepResult.unavailable("VENDOR_ERROR", verdict.vendor_code)
        return step_result(verdict)

    async def aclose(self) -> None:
        """Release the vendor (the last verifier to do so closes its connections)."""
        await self._lease.release()


@dataclass(frozen=True, slots=True)
class _ClaimCheck:
    """What one claim check reads from the subject."""

    fields: frozenset[str]
    phone: bool
    card: bool


_NAME_ID_FIELDS: Final = frozenset({"name", "document_type", "document_number"})
_CLAIM_CHECKS: Final[Mapping[Check, _ClaimCheck]] = {
    Check.NAME_ID: _ClaimCheck(_NAME_ID_FIELDS, phone=False, card=False),
    Check.CARRIER: _ClaimCheck(_NAME_ID_FIELDS | {"phone_number"}, phone=True, card=False),
    Check.BANK_CARD: _ClaimCheck(
        _NAME_ID_FIELDS | {"phone_number", "bank_card_number"}, phone=True, card=True
    ),
}


class ClaimStep(VendorStep):
    """A verifier that sends the subject's claim to one vendor check and takes its verdict.

    ``authority``, ``carrier_3factor`` and ``bank_card_4factor`` differ only in the check (and
    so in the fields the claim carries); their step results are in their class docstrings.

    Args:
        name: the verifier's registry name.
        options: its options table (``vendor`` only).
        deps: the verifier dependencies holding the vendor registry.
        check: ``NAME_ID``, ``CARRIER`` or ``BANK_CARD``.
        lease: a ready lease (``authority_http`` builds its own vendor).

    Raises:
        ConfigError: ``vendor`` is missing or not configured, or another option is given.

    """

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        deps: VerifierDeps,
        *,
        check: Check,
        lease: VendorLease | None = None,
    ) -> None:
        self._claim_check = _CLAIM_CHECKS[check]
        super().__init__(
            name, options, deps, check=check, required_fields=self._claim_check.fields, lease=lease
        )

    async def check(self, context: StepContext) -> StepResult:
        """Ask the vendor whether the claim's factors belong together (see the class docstring)."""
        claim = self.claim(context, phone=self._claim_check.phone, card=self._claim_check.card)
        if not isinstance(claim, Claim):
            return claim
        return await self.ask(lambda: self._vendor_check(claim))

    def _vendor_check(self, claim: Claim) -> Awaitable[Verdict]:
        # Spelled out, not a table of calls: scripts/gen_reason_codes.py follows these calls to
        # the vendors' codes.
        if self._check is Check.CARRIER:
            return self.vendor.check_carrier(claim)
        if self._check is Check.BANK_CARD:
            return self.vendor.check_bank_card(claim)
        return self.vendor.check_name_id(claim)

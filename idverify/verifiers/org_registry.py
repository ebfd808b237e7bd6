# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``org_registry`` verifier: an organization (and its legal representative) against the registry.

A code's check character proves only that it is well-formed (``document``); this step asks the
enterprise registry, through Alibaba Cloud's enterprise element check or an operator's gateway
(``org_elements``), whether the code belongs to an organization of that name, led by that legal
representative, and whether it still operates. It passes only on a match of an operating
organization.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, cast

from idverify.domain.errors import ConfigError
from idverify.domain.subjects import DocumentType, SubjectKind
from idverify.vendors.api import Check, OrganizationVendor, OrgClaim, OrgMode
from idverify.vendors.steps import VendorStep
from idverify.verifiers.base import StepResult

if TYPE_CHECKING:
    from collections.abc import Mapping

    from idverify.verifiers.base import StepContext, VerifierDeps

__all__ = ["DEFAULT_MODE", "OrgRegistryVerifier"]

DEFAULT_MODE: Final = OrgMode.ENT_3META
_ORGANIZATION_FIELDS: Final = frozenset({"name", "document_type", "document_number"})
_FIELDS_OF_MODE: Final[Mapping[OrgMode, frozenset[str]]] = {
    OrgMode.ENT_2META: _ORGANIZATION_FIELDS,
    OrgMode.ENT_3META: _ORGANIZATION_FIELDS | {"legal_representative_name"},
    OrgMode.ENT_4META: _ORGANIZATION_FIELDS
    | {
        "legal_representative_name",
        "legal_representative_document_type",
        "legal_representative_document_number",
    },
}


class OrgRegistryVerifier(VendorStep):
    """The enterprise registry check through ``vendor``, in ``mode``.

    Options: ``vendor`` (a ``[vendors.<name>]`` table of kind ``alibaba`` or ``http``) and
    ``mode`` (``ENT_2META``, ``ENT_3META`` (default) or ``ENT_4META``).

    Raises:
        ConfigError: ``vendor`` is missing, not configured or offers no enterprise check
            (Tencent FaceID), ``mode`` is not one of the three, or another option is given.

    """

    def __init__(self, options: Mapping[str, Any], deps: VerifierDeps) -> None:
        raw_mode = options.get("mode", DEFAULT_MODE.value)
        try:
            self.mode = OrgMode(raw_mode)
        except ValueError:
            raise ConfigError(
                f"verifiers.org_registry.mode: expected one of {[mode.value for mode in OrgMode]}"
            ) from None
        super().__init__(
            "org_registry",
            options,
            deps,
            check=Check.ORGANIZATION,
            required_fields=_FIELDS_OF_MODE[self.mode],
            known_options=frozenset({"mode"}),
        )
        if not callable(getattr(self.vendor, "check_organization", None)):
            raise ConfigError(
                f"verifiers.org_registry: vendor {self.provider!r} has no enterprise registry check; "
                'use a vendor of kind "alibaba" or "http"'
            )
        self._registry = cast("OrganizationVendor", self.vendor)

    def __repr__(self) -> str:
        return f"OrgRegistryVerifier(vendor={self.provider!r}, mode={self.mode.value})"

    async def check(self, context: StepContext) -> StepResult:
        """Ask the registry about the organization of ``context.subject``.

        Args:
            context: the verification's subject (an organization with its USCC).

        Returns:
            PASS on a match of an operating organization; FAIL with ``ORG_NOT_ACTIVE``
            (deregistered, revoked, relocated, suspended ...), ``ORG_NAME_MISMATCH``,
            ``ORG_CODE_MISMATCH``, ``LEGAL_REP_NAME_MISMATCH``, ``LEGAL_REP_ID_MISMATCH``,
            ``LEGAL_REP_MISMATCH``, ``ORG_MISMATCH``, ``ORG_NOT_FOUND``, ``LEGAL_REP_NOT_FOUND``,
            ``INVALID_INPUT``, ``NAME_REQUIRED``, ``LEGAL_REP_REQUIRED``,
            ``LEGAL_REP_DOCUMENT_REQUIRED`` or ``DOCUMENT_TYPE_UNSUPPORTED``; UNAVAILABLE with a
            ``VENDOR_*`` reason when the registry gave no verdict.

        """
        claim = self._claim(context)
        if isinstance(claim, StepResult):
            return claim
        return await self.ask(lambda: self._registry.check_organization(claim))

    def _claim(self, context: StepContext) -> OrgClaim | StepResult:
        subject = context.subject
        if not subject.name.strip():
            return StepResult.failed("NAME_REQUIRED")
        document_type = subject.document_type
        if (
            subject.kind is not SubjectKind.ORGANIZATION
            or document_type is not DocumentType.CN_USCC
            or not self._registry.supports(Check.ORGANIZATION, document_type)
        ):
            # Not NOT_APPLICABLE: skipping the registry would let the method pass on a checksum.
            return StepResult.failed("DOCUMENT_TYPE_UNSUPPORTED")
        rep_name, rep_type, rep_number = "", None, ""
        if self.mode is not OrgMode.ENT_2META:
            rep_name = subject.legal_representative_name
            if not rep_name.strip():
                return StepResult.failed("LEGAL_REP_REQUIRED")
        if self.mode is OrgMode.ENT_4META:
            rep_type, rep_number = (
                subject.legal_representative_document_type,
                subject.legal_representative_document_number,
            )
            if rep_type is None or not rep_number.strip():
                return StepResult.failed("LEGAL_REP_DOCUMENT_REQUIRED")
            if not self._registry.supports(Check.ORGANIZATION, rep_type):
                return StepResult.failed("DOCUMENT_TYPE_UNSUPPORTED")
        return OrgClaim(
            reference=context.verification_id,
            mode=self.mode,
            name=subject.name,
            code=subject.document_number,
            legal_representative_name=rep_name,
            legal_representative_document_type=rep_type,
            legal_representative_document_number=rep_number,
            registered_address=subject.registered_address,
        )

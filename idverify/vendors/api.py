# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The interface every vendor adapter offers to the vendor-backed verifiers.

A verifier builds a :class:`Claim` holding only the fields its check needs, and an adapter
(Tencent Cloud, Alibaba Cloud, an operator's HTTP gateway) sends exactly those to its vendor.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from idverify.domain.subjects import DocumentType
from idverify.vendors.verdicts import Verdict

__all__ = [
    "Check",
    "Claim",
    "IdentityVendor",
    "LivenessRequest",
    "LivenessSession",
    "OrgClaim",
    "OrgMode",
    "OrganizationVendor",
    "ProbeReport",
]


class Check(Enum):
    """The checks a vendor may offer."""

    NAME_ID = "name_id"
    CARRIER = "carrier"
    BANK_CARD = "bank_card"
    LIVENESS = "liveness"
    ORGANIZATION = "organization"


class OrgMode(Enum):
    """Which elements an enterprise registry check compares (Alibaba's InfoVerifyType values)."""

    # Name + unified social credit code.
    ENT_2META = "ENT_2META"
    # + the legal representative's (or person in charge's) name.
    ENT_3META = "ENT_3META"
    # + the legal representative's ID number.
    ENT_4META = "ENT_4META"


@dataclass(frozen=True, slots=True)
class Claim:
    """The personal data one check sends, in memory for one call only.

    Attributes:
        name: normalized name.
        document_type: the document's type.
        document_number: normalized number.
        phone: mainland mobile number, 11 digits without the country code (carrier and bank card
            checks only).
        bank_card: card number, digits only (bank card check only).
    """

    name: str
    document_type: DocumentType
    document_number: str
    phone: str = ""
    bank_card: str = ""

    def __repr__(self) -> str:
        return f"Claim(document_type={self.document_type.value}, <personal fields hidden>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class OrgClaim:
    """What an enterprise registry check sends, in memory for one call only.

    Attributes:
        reference: our verification id (Alibaba's MerchantBizId; never an account id).
        mode: the elements compared.
        name: the organization's normalized name.
        code: its unified social credit code, normalized.
        legal_representative_name: normalized; empty in ENT_2META.
        legal_representative_document_type: the representative's document type (ENT_4META).
        legal_representative_document_number: normalized; empty below ENT_4META.
        registered_address: normalized, optional (only a gateway receives it).
    """

    reference: str
    mode: OrgMode
    name: str
    code: str
    legal_representative_name: str = ""
    legal_representative_document_type: DocumentType | None = None
    legal_representative_document_number: str = ""
    registered_address: str = ""

    def __repr__(self) -> str:
        return f"OrgClaim(mode={self.mode.value}, <personal fields hidden>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class LivenessRequest:
    """What starting a vendor-run liveness flow needs besides the claim.

    Attributes:
        reference: our verification id, handed to the vendor to tie its session to ours.
        return_url: where the vendor's page sends the user back (empty: the vendor's default).
        meta_info: the vendor client SDK's environment string (Alibaba's MetaInfo).
        callback_url: where the vendor pushes that the user finished (empty: no callback).
        callback_token: the token the vendor echoes in that callback (idverify.callbacks.links).
    """

    reference: str
    return_url: str = ""
    meta_info: str = ""
    callback_url: str = ""
    callback_token: str = ""

    def __repr__(self) -> str:
        return f"LivenessRequest(reference={self.reference!r}, <client fields hidden>)"


@dataclass(frozen=True, slots=True)
class LivenessSession:
    """A started liveness flow: the page the user opens, and the token its result is fetched by."""

    url: str
    token: str

    def __repr__(self) -> str:
        return "LivenessSession(<hidden>)"


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What ``idverify vendors check`` found out about one vendor.

    Attributes:
        ok: credentials accepted and the endpoint reachable.
        detail: one line for the operator (no secrets, no personal data).
        vendor_code: the vendor's answer code, when it gave one.
    """

    ok: bool
    detail: str
    vendor_code: str = ""


class IdentityVendor(Protocol):
    """A vendor adapter.

    Attributes:
        name: the configured vendor name (``tencent``), also the verifiers' provider.
    """

    name: str

    def supports(self, check: Check, document_type: DocumentType) -> bool:
        """Whether the vendor offers ``check`` for documents of this type."""
        ...

    async def check_name_id(self, claim: Claim) -> Verdict:
        """Name + document number against the authority's records.

        Raises:
            VendorUnavailable: when no verdict could be had.
        """
        ...

    async def check_carrier(self, claim: Claim) -> Verdict:
        """Name + document number + mobile number against the carrier's subscriber records.

        Raises:
            VendorUnavailable: when no verdict could be had.
        """
        ...

    async def check_bank_card(self, claim: Claim) -> Verdict:
        """Name + document number + mobile number + card number against the issuing bank.

        Raises:
            VendorUnavailable: when no verdict could be had.
        """
        ...

    async def start_liveness(self, claim: Claim, request: LivenessRequest) -> LivenessSession | Verdict:
        """Start the vendor's liveness flow for the claimed identity.

        Returns:
            The session, or a verdict when the vendor refuses to start one for this claim.

        Raises:
            VendorUnavailable: when no answer could be had.
        """
        ...

    async def liveness_result(self, token: str, reference: str) -> Verdict:
        """Fetch a liveness flow's result by token (PENDING while the user is not done).

        Raises:
            VendorUnavailable: when no answer could be had.
        """
        ...

    async def probe(self) -> ProbeReport:
        """Make one harmless authenticated call that confirms credentials and reachability."""
        ...

    def dry_run(self) -> str:
        """Sign a harmless request without sending it and describe it (no secret, no signature key)."""
        ...

    async def aclose(self) -> None:
        """Close pooled connections."""
        ...


class OrganizationVendor(Protocol):
    """A vendor adapter that also offers the enterprise registry check.

    Attributes:
        name: the configured vendor name.
    """

    name: str

    def supports(self, check: Check, document_type: DocumentType) -> bool:
        """Whether the vendor offers ``check`` for documents of this type."""
        ...

    async def check_organization(self, claim: OrgClaim) -> Verdict:
        """Name, code (and legal representative) against the enterprise registry.

        Returns:
            MATCH only for a match of an operating organization; REJECTED (``ORG_NOT_ACTIVE``)
            for a match of one deregistered, revoked, relocated or otherwise not operating.

        Raises:
            VendorUnavailable: when no verdict could be had.
        """
        ...

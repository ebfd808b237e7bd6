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

__all__ = ["Check", "Claim", "IdentityVendor", "LivenessRequest", "LivenessSession", "ProbeReport"]


class Check(Enum):
    """The checks a vendor may offer."""

    NAME_ID = "name_id"
    CARRIER = "carrier"
    BANK_CARD = "bank_card"
    LIVENESS = "liveness"


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
class LivenessRequest:
    """What starting a vendor-run liveness flow needs besides the claim.

    Attributes:
        reference: our verification id, handed to the vendor to tie its session to ours.
        return_url: where the vendor's page sends the user back (empty: the vendor's default).
        meta_info: the vendor client SDK's environment string (Alibaba's MetaInfo).
    """

    reference: str
    return_url: str = ""
    meta_info: str = ""


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

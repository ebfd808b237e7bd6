"""Where a verification's identity record lives, as the verification flow asks it.

A start looks its identity up (one argon2id per readable pepper) and a stored verification is
pointed on when key rotation moved its identity: ``flows.identity_lookup`` and
``flows.identity_mover`` do both. :class:`Identities` is what this flow needs of them, so that
its use-case tests can stand in for them; :class:`LookupIdentities` is them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from idverify.domain.documents import Document
from idverify.flows.identity_lookup import IdentityLookup, IdentityProbe, ResolvedIdentity
from idverify.flows.identity_mover import IdentityMover
from idverify.flows.verification.record import VerificationRecord
from idverify.privacy.identity_index import IndexValue

__all__ = ["Identities", "LookupIdentities"]


class Identities(Protocol):
    """Finds a presented identity's record, and points a stored verification at where it lives now."""

    def forward_ms(self, session_ttl_seconds: int) -> int:
        """How long a forwarding record outlives a pepper move."""
        ...

    async def indexes(self, tenant: str, document: Document) -> tuple[IndexValue, ...]:
        """The document's index under every readable pepper, current first."""
        ...

    def probe(self, tenant: str, indexes: tuple[IndexValue, ...]) -> IdentityProbe:
        """The keys the identity's record may be under."""
        ...

    def settle(
        self, tenant: str, probe: IdentityProbe, name: str, stored_bindings: Sequence[bytes | str | None]
    ) -> ResolvedIdentity | None:
        """The identity from the probe's reads; None when its record must move first."""
        ...

    async def resolve(
        self, tenant: str, document: Document, name: str, *, forward_ms: int, indexes: tuple[IndexValue, ...]
    ) -> ResolvedIdentity:
        """Looks the identity up, moving its record to the current pepper and key if the name matches."""
        ...

    async def refresh_verification(
        self, tenant: str, verification_id: str, record: VerificationRecord
    ) -> bool:
        """Points the verification's identity reference at where it lives now; True when it changed."""
        ...


@dataclass(frozen=True, slots=True)
class LookupIdentities:
    """:class:`Identities` over ``IdentityLookup`` and ``IdentityMover``."""

    lookup: IdentityLookup
    mover: IdentityMover

    def forward_ms(self, session_ttl_seconds: int) -> int:
        """As ``IdentityLookup.forward_ms``."""
        return self.lookup.forward_ms(session_ttl_seconds)

    async def indexes(self, tenant: str, document: Document) -> tuple[IndexValue, ...]:
        """As ``IdentityLookup.indexes``."""
        return await self.lookup.indexes(tenant, document)

    def probe(self, tenant: str, indexes: tuple[IndexValue, ...]) -> IdentityProbe:
        """As ``IdentityLookup.probe``."""
        return self.lookup.probe(tenant, indexes)

    def settle(
        self, tenant: str, probe: IdentityProbe, name: str, stored_bindings: Sequence[bytes | str | None]
    ) -> ResolvedIdentity | None:
        """As ``IdentityLookup.settle``."""
        return self.lookup.settle(tenant, probe, name, stored_bindings)

    async def resolve(
        self, tenant: str, document: Document, name: str, *, forward_ms: int, indexes: tuple[IndexValue, ...]
    ) -> ResolvedIdentity:
        """As ``IdentityLookup.resolve``."""
        return await self.lookup.resolve(tenant, document, name, forward_ms=forward_ms, indexes=indexes)

    async def refresh_verification(
        self, tenant: str, verification_id: str, record: VerificationRecord
    ) -> bool:
        """As ``IdentityMover.refresh_verification``, on the record's reference and name bindings."""
        references = {
            "identity": record.identity,
            "name_binding": record.name_binding,
            "name_binding_seen": record.name_binding_seen,
        }
        return await self.mover.refresh_verification(tenant, verification_id, references)

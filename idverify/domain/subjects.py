"""Domain types of the subject being verified, independent of protobuf and storage."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class SubjectKind(Enum):
    """A person or an organization."""

    PERSON = "person"
    ORGANIZATION = "organization"


class DocumentType(Enum):
    """Identity documents idverify can validate."""

    CN_RIC = "cn_ric"
    CN_RESIDENCE_PERMIT = "cn_residence_permit"
    CN_FOREIGN_PERMANENT_RESIDENT = "cn_foreign_permanent_resident"
    PASSPORT = "passport"
    CN_USCC = "cn_uscc"


class AgeBand(Enum):
    """Age facts on a given day; the birth date itself is only ever stored sealed."""

    UNKNOWN = "unknown"
    UNDER_14 = "under_14"
    FROM_14_TO_17 = "14_to_17"
    ADULT = "adult"


class AssuranceLevel(Enum):
    """Confidence a method gives in the claimed identity (eIDAS-style levels)."""

    LOW = "low"
    SUBSTANTIAL = "substantial"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """1, 2, 3 from low to high: levels compare by rank, never by name."""
        return _ASSURANCE_RANKS[self]

    def at_least(self, other: AssuranceLevel) -> bool:
        """True when this level is ``other`` or above."""
        return self.rank >= other.rank


_ASSURANCE_RANKS = {AssuranceLevel.LOW: 1, AssuranceLevel.SUBSTANTIAL: 2, AssuranceLevel.HIGH: 3}


@dataclass(frozen=True, slots=True)
class Subject:
    """What a caller claims, as received: lives in memory for one request only.

    ``repr`` is disabled on the personal fields so that a stray log of the object leaks nothing.
    """

    kind: SubjectKind
    name: str
    document_type: DocumentType | None
    document_number: str
    phone_number: str = ""
    bank_card_number: str = ""
    issuing_country: str = ""
    # Declared, YYYY-MM-DD as received (validated by idverify.domain.birth_dates).
    birth_date: str = ""
    # Organizations: the legal representative as the registry records them, and (optional) the
    # registered address; validated by idverify.domain.organizations.
    legal_representative_name: str = ""
    legal_representative_document_type: DocumentType | None = None
    legal_representative_document_number: str = ""
    registered_address: str = ""

    def __repr__(self) -> str:
        doc = self.document_type.value if self.document_type else "none"
        return f"Subject(kind={self.kind.value}, document_type={doc}, <personal fields hidden>)"

    __str__ = __repr__

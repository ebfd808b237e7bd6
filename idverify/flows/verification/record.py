"""A verification's record: what a start stores about it, and what the scripts add as it goes on.

The store keeps it as a hash of text fields that its scripts read and write
(``store.verification_fields`` turns one into the other); the flow sees only this. Personal data
never appears in it: the account and phone are pseudonyms, the rest sealed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from idverify.domain.birth_dates import AgeSource
from idverify.domain.subjects import AgeBand, AssuranceLevel, SubjectKind
from idverify.verifiers.base import Outcome

__all__ = ["Status", "StepOutcome", "VerificationRecord"]


class Status(Enum):
    """Where a verification stands; the flow and the scripts write no other."""

    PENDING = "PENDING"
    CHALLENGE_SENT = "CHALLENGE_SENT"
    NEEDS_GUARDIAN_CONSENT = "NEEDS_GUARDIAN_CONSENT"
    VERIFIED = "VERIFIED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """One verifier step's outcome as the start ran it (the scripts audit each)."""

    verifier: str
    outcome: Outcome
    reason: str
    vendor_code: str = ""


@dataclass(frozen=True, slots=True)
class VerificationRecord:
    """A verification as stored: pseudonyms, sealed values and where it stands, nothing personal."""

    status: Status = Status.PENDING
    reason: str = ""
    next_step: str = ""
    method: str = ""
    assurance: AssuranceLevel = AssuranceLevel.LOW
    kind: SubjectKind = SubjectKind.PERSON
    acct: str = ""  # the account's pseudonym
    acct_audit: str = ""  # the account's pseudonym in audit entries
    # The account id its events name (idverify/events/accounts.py), for as long as it lives.
    event_account: str = ""
    acct_sealed: str = ""  # the account id, sealed to this verification
    name_tag: str = ""  # the (document, name) pair's claim tag
    establishes: bool = False  # a verified binding establishes the identity's name claim
    # The keyed hashes of an organization's name forms: the index of verified names takes them in
    # the step that establishes its claim (its binding's commit, store/lua/bind_commit.lua); ""
    # for others.
    org_names: str = ""
    purposes: tuple[str, ...] = ()  # the consent purposes the method needs, sorted
    masked_phone: str = ""
    otp_ps: str = ""  # the account + phone's pseudonym: its wrong codes' counter ("" without a phone)
    # The phone's deployment-wide pseudonym, sealed to this verification: it counts wrong codes
    # across tenants, and in the clear it would join tenants' records.
    phone_ps_sealed: str = ""
    attempts_left: int = 0
    fallbacks: tuple[str, ...] = ()  # the methods offered when this one is rejected
    # The attempts a code send found left, until its step records the challenge; a step that
    # fails after the send leaves it in the record as it was.
    attempts_left_now: int | None = None
    # A challenge the steps sent: the step that judges its answer (no challenge: ""), the code's
    # digest and salt (hex; "" for a vendor-run one, whose page and token are sealed instead).
    step_verifier: str = ""
    digest: str = ""
    salt: str = ""
    challenge_sealed: str = ""
    challenge_ttl_ms: int = 0
    max_attempts: int = 0
    # The identity record found for the document, with the name's binding and pepper.
    identity: str = ""
    name_binding: str = ""
    name_binding_seen: str = ""
    pepper: str = ""
    # The band of the start day serves only servers of an older version: one finishing this
    # verification, and 0.1.0 reading the account it is copied to (bind_account in _prelude.lua).
    # This release computes the band from the sealed date when read.
    age_band: AgeBand = AgeBand.UNKNOWN
    minor: bool = False
    age_source: AgeSource = AgeSource.NONE
    birth_sealed: str = ""
    steps: tuple[StepOutcome, ...] = ()
    # Written by the ``start`` script when it stores the verification, never by the flow.
    id: str = ""
    created_ms: int = 0
    expires_ms: int = 0
    challenge_expires_ms: int = 0  # a challenge's answers are late after this

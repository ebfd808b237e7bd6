"""The verification use case's port: what it asks of the store, in typed values.

``store.verifications.RedisVerificationStore`` implements it (keys, pipelines, the scripts and
their replies, the retry when key rotation moved an identity, error translation) and
``testing.memory_verifications.MemoryVerificationStore`` in memory; both answer
``tests/unit/usecases/test_verification_contract.py`` alike. A verification's record is a
:class:`~idverify.flows.verification.record.VerificationRecord` (the stores alone know its
fields as stored); what the store answers about it is a :class:`Written`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from idverify.domain.errors import RateLimited
from idverify.flows.consent import AdmitReply, ConsentAdmission, ConsentRecord
from idverify.flows.verification.record import VerificationRecord

__all__ = [
    "GUARDIAN_FIELDS",
    "Admission",
    "AdmissionAnswer",
    "AnswerCount",
    "ChallengeAnswer",
    "ClaimsCheck",
    "CodeSend",
    "GuardianGrant",
    "Held",
    "NewVerification",
    "Point",
    "Readmission",
    "RequestRef",
    "Reservation",
    "SendCount",
    "SendVerdict",
    "StartRead",
    "VerificationStore",
    "WindowCount",
    "WriteOutcome",
    "Written",
]

# What a guardian's qualification is judged on, read from the guardian's account; the consent's
# write goes on only while the account holds them as judged (else GUARDIAN_CHANGED).
GUARDIAN_FIELDS = ("identity", "age_source", "birth_sealed", "age_band")

# Called before each attempt of a write that may bind an identity, with whether the last one
# found the identity moved (key rotation): the verification's record to write with, pointed at
# where its identity lives now.
Point = Callable[[bool], Awaitable[VerificationRecord]]


class WriteOutcome(Enum):
    """How a write to a verification went."""

    DONE = "done"  # written; ``record`` is the verification as it is now
    NOT_FOUND = "not_found"  # no such verification (or it expired away)
    STATE = "state"  # not in the state the write needs (another answer came first)
    EXISTS = "exists"  # a start whose request id already started ``detail``
    RELEASED = "released"  # a start whose caller gave up and released its request id
    GUARDIAN_REFUSED = "guardian_refused"  # the guardian does not qualify: ``detail`` says why
    GUARDIAN_CHANGED = "guardian_changed"  # the guardian's account changed since it was read
    STALE = "stale"  # an answer's ``expect`` no longer holds: nothing was counted or written


@dataclass(frozen=True, slots=True)
class Written:
    """A write's outcome, with the verification's record or the detail the outcome names."""

    outcome: WriteOutcome
    record: VerificationRecord | None = None  # DONE and STATE
    detail: str = ""


class Reservation(Enum):
    """What a start's reservation of its request id found."""

    RESERVED = "reserved"  # ours now
    HELD = "held"  # another attempt holds it, or its verification exists
    RELEASED = "released"  # this attempt gave up before its reservation arrived


@dataclass(frozen=True, slots=True)
class RequestRef:
    """A caller's request id as the store keeps it: under its account (docs/ARCHITECTURE.md §2).

    ``pseudonym`` is keyed over the account's pseudonym and the request id, so the same request
    id under another account is another key, and the key belongs to the account, whose bucket
    it is to live in. ``legacy_pseudonym`` is the request id's alone, the key 0.1.0 and builds
    before this form wrote: read where the account's is absent, never written, until such
    records expired (their session's TTL; "Upgrades").
    """

    account_pseudonym: str
    pseudonym: str
    legacy_pseudonym: str


@dataclass(frozen=True, slots=True)
class Held:
    """The verification id a request id holds, and whether under its legacy key.

    A legacy holder may be another account's (that form named no account): it answers only a
    retry of the account its verification belongs to.
    """

    verification_id: str
    legacy: bool = False


@dataclass(frozen=True, slots=True)
class StartRead:
    """What a start reads before its admission: the request id's holder and the consent record."""

    holder: Held | None
    consent: ConsentRecord
    # The name's refused claims as read with them, where the admission's check runs apart from
    # its reservation (step by step, a Cluster: another bucket); None where it was not read.
    claim_refusals: int | None = None


@dataclass(frozen=True, slots=True)
class ClaimsCheck:
    """The refused claims counted per (document, name): a start is refused at ``limit``."""

    name_tag: str
    limit: int
    request: Mapping[str, str]
    # The refused claims the start's reads found (StartRead.claim_refusals): below ``limit``, a
    # store whose check is a round trip of its own may skip it; None: check them.
    refusals_read: int | None = None


@dataclass(frozen=True, slots=True)
class WindowCount:
    """One start counted against the identity's hourly window (a ``limit`` of 0: not counted)."""

    identity_pseudonym: str
    limit: int
    window_seconds: int
    request: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Admission:
    """A start's reservation, claims, consents and identity window, made in one step in that order.

    Each goes on only when the one before said yes.
    """

    tenant: str
    request: RequestRef
    verification_id: str
    reservation_ms: int
    claims: ClaimsCheck
    consent: ConsentAdmission
    window: WindowCount | None


@dataclass(frozen=True, slots=True)
class AdmissionAnswer:
    """What an admission's parts answered; those after a refusal did not run (None, False)."""

    reservation: Reservation
    holder: str = ""  # the verification id holding the request id (HELD)
    claims_refusal: RateLimited | None = None
    consent: AdmitReply | None = None
    window_counted: bool = False
    window_refusal: RateLimited | None = None


@dataclass(frozen=True, slots=True)
class Readmission:
    """The consents judged again on a changed record, and the window, made in one step."""

    consent: AdmitReply
    window_counted: bool = False
    window_refusal: RateLimited | None = None


@dataclass(frozen=True, slots=True)
class CodeSend:
    """A code about to be sent, counted under its keyed names before it goes out."""

    tenant: str
    account_phone: str  # the tenant's pseudonym of account + phone (its wrong-code counter)
    tenant_phone: str  # the tenant's pseudonym of the phone
    phone: str  # the deployment-wide pseudonym of the phone
    principal: str
    max_attempts: int
    request: Mapping[str, str]
    # The identity records whose name bindings may be read in the same step (where one step can).
    identity_keys: Sequence[str] | None = None
    account_pseudonym: str = ""  # whose bucket holds the wrong-code counter (bucketed tenants)


class SendVerdict(Enum):
    """Whether a code may be sent, by its counts."""

    OK = "OK"
    OTP_LOCKED = "OTP_LOCKED"  # the account + phone used up its wrong codes
    PHONE_LOCKED = "PHONE_LOCKED"  # the phone is locked by wrong codes from any tenant


@dataclass(frozen=True, slots=True)
class SendCount:
    """A code send's verdict and the account + phone's wrong codes so far.

    ``bindings`` holds the identity records' name bindings when they were read with it.
    """

    verdict: SendVerdict
    failures: int
    bindings: list[bytes | None] | None = None


@dataclass(frozen=True, slots=True)
class AnswerCount:
    """An answer counted for its phone across tenants before it is judged (a wrong one counts)."""

    phone_pseudonym: str
    wrong: bool
    lock_pseudonym: str  # the account + phone, whose refusals are audited once a window
    request: Mapping[str, str]
    account_pseudonym: str = ""  # whose bucket holds the lock's audited mark (bucketed tenants)


@dataclass(frozen=True, slots=True)
class ChallengeAnswer:
    """An answer to a verification's challenge: a code's digest, or a vendor's verdict."""

    tenant: str
    verification_id: str
    digest: str  # hex; "" for a vendor's verdict
    binding_limit: int
    failure_window_ms: int
    request_json: str
    verdict: str = ""  # "pass" or "fail" for a vendor-run challenge
    verdict_reason: str = ""  # a failing verdict's reason, as the vendor's step named it
    vendor_code: str = ""
    count: AnswerCount | None = None
    # The record as a worker remembers it (ChallengeMemo), when the answer was judged from that
    # memory instead of a read: the answer is counted and judged only while the stored record
    # still reads back as this one, checked in the same atomic step.
    expect: VerificationRecord | None = None


@dataclass(frozen=True, slots=True)
class NewVerification:
    """A start's verification to store, and the binding its mode asks for, in one step.

    ``mode`` is ``challenge``, ``bind``, ``guardian`` or ``rejected``; ``record`` what to store
    (the :data:`Point` given with it may answer it pointed at another identity).
    """

    tenant: str
    # The request id's key under the account (``RequestRef.pseudonym``): the account's own.
    request_pseudonym: str
    verification_id: str
    account_pseudonym: str
    record: VerificationRecord
    ttl_ms: int
    binding_limit: int
    request_json: str
    mode: str


@dataclass(frozen=True, slots=True)
class GuardianGrant:
    """A guardian's consent for a minor's verification, judged on the guardian's account as read."""

    tenant: str
    verification_id: str
    account_pseudonym: str
    guardian_pseudonym: str
    binding_limit: int
    request_json: str
    text_version: str
    relationship: str
    guardian_fields: Mapping[str, str]  # GUARDIAN_FIELDS as the flow read and judged them
    refusal: str  # why the guardian may not consent today ("" if it may)


class VerificationStore(Protocol):
    """Verifications and the requests that start them; every method may raise StoreUnavailable."""

    async def read_start(self, tenant: str, request: RequestRef, name_tag: str) -> StartRead:
        """What the request id holds (None: free) and its account's consents: one step.

        The legacy key is read with the account's, and answered only where the account's is absent.
        And the refused claims of ``name_tag``, where the store checks them apart (``claim_refusals``).
        """
        ...

    async def admit(self, admission: Admission) -> AdmissionAnswer:
        """Reserves the request id and admits the start; refusals come back, not raised."""
        ...

    async def readmit(
        self, tenant: str, consent: ConsentAdmission, window: WindowCount | None
    ) -> Readmission:
        """Admits the consents judged again, then counts the window if they were admitted."""
        ...

    async def count_window(self, tenant: str, window: WindowCount) -> None:
        """Counts the window alone.

        Raises:
            RateLimited: the window is over its limit.
        """
        ...

    async def release(
        self, tenant: str, request: RequestRef, verification_id: str, reservation_ms: int
    ) -> None:
        """Frees the request id this attempt reserved, unless its verification was stored after all.

        The attempt's own writes arriving later find it released and take nothing.
        """
        ...

    async def holder(self, tenant: str, request: RequestRef) -> Held | None:
        """What a request id holds, under the account's key or else the legacy one; None when free."""
        ...

    async def confirm(self, tenant: str, request: RequestRef) -> None:
        """Waits until what the request id points at is on enough replicas (where writes wait)."""
        ...

    async def count_send(self, send: CodeSend) -> SendCount:
        """Counts a code about to be sent; send it only on ``SendVerdict.OK``.

        Raises:
            RateLimited: a send window is full.
            StoreUnavailable: a count could not be made; nothing may be sent.
        """
        ...

    async def commit(self, start: NewVerification, point: Point) -> Written:
        """Stores a new verification (DONE, EXISTS or RELEASED), binding where its mode says.

        Raises:
            StoreUnavailable: also when the identity kept moving (``CONTENDED``).
        """
        ...

    async def record(self, tenant: str, verification_id: str) -> VerificationRecord | None:
        """The verification's record; None when there is none."""
        ...

    async def read(
        self, tenant: str, verification_id: str, request_json: str, read_spec: Sequence[str] | None
    ) -> Written:
        """The verification (DONE or NOT_FOUND), a challenge past its time expired first.

        ``read_spec`` records the read of its account (None: nothing recorded).
        """
        ...

    async def submit(self, answer: ChallengeAnswer, point: Point) -> Written:
        """Judges an answer (DONE, NOT_FOUND or STATE), binding when it is right.

        ``point`` answers the verification as read, or read anew where its identity moved. An
        answer with ``expect`` is STALE, with nothing counted or written, when the stored record
        no longer reads back as ``expect`` (or is gone).

        Raises:
            RateLimited: ``PHONE_LOCKED``, the answer's phone is locked (nothing was judged).
            StoreUnavailable: also when the answer could not be counted, or the identity kept moving.
        """
        ...

    async def account_fields(
        self, tenant: str, account_pseudonym: str, names: Sequence[str]
    ) -> dict[str, str]:
        """The account's fields of ``names`` that are set."""
        ...

    async def grant_guardian(self, grant: GuardianGrant, point: Point) -> Written:
        """Completes a minor's verification with a guardian's consent, binding it (``point`` as for submit).

        DONE, NOT_FOUND, STATE, GUARDIAN_REFUSED or GUARDIAN_CHANGED (the guardian's account no
        longer holds ``grant.guardian_fields``, when the store reads it again before it writes).
        """
        ...

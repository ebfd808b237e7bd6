"""The verifier plugin API: what a verifier declares, receives and answers.

Built-in verifiers and third-party packages implement :class:`Verifier` (and
:class:`ChallengeVerifier` for steps that send something to the user) and register a factory
under the entry-point group ``idverify.verifiers``. A factory is called as
``factory(options, deps)`` with the verifier's options table from the TOML config and the
narrow :class:`VerifierDeps`; it returns the verifier.

Verifiers never touch the store or gRPC: they see validated domain values and return a
:class:`StepResult`. Counting attempts and comparing answers happen atomically in the store,
which is why a challenge verifier hands back digests instead of judging answers itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from idverify.domain.documents import Document
    from idverify.domain.subjects import Subject

ENTRY_POINT_GROUP = "idverify.verifiers"


class Outcome(Enum):
    """What one step concluded."""

    PASS = "pass"  # noqa: S105 - an outcome name, not a password
    FAIL = "fail"
    CHALLENGE = "challenge"
    UNAVAILABLE = "unavailable"
    # "Not mine" is not "failed": the step does not apply to this subject and is skipped.
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True, slots=True)
class Challenge:
    """Something sent to the user that they must answer (an SMS code), or a vendor-run check.

    Attributes:
        expected_digest: what :meth:`ChallengeVerifier.digest_answer` must return for the right
            answer; the store compares it in constant time, atomically with the attempt count.
        salt: per-challenge random salt that went into ``expected_digest``.
        masked_destination: where it went, masked (``138****0000``).
        ttl_seconds: how long the answer is accepted.
        max_attempts: wrong answers allowed before the challenge dies.
        url: for a vendor-judged challenge (:class:`JudgedChallengeVerifier`), the vendor page
            the user completes it on; empty otherwise.
        token: for a vendor-judged challenge, the vendor's session token: the caller's client
            SDK needs it, and the verdict is fetched by it. Stored sealed, never in the clear.
    """

    expected_digest: bytes
    salt: bytes
    masked_destination: str
    ttl_seconds: int
    max_attempts: int
    url: str = ""
    token: str = ""


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step's outcome with a stable reason code (empty on PASS).

    ``vendor_code`` is the answering vendor's own result or error code (``-1``,
    ``FailedOperation.IdNameMisMatch``), kept in the audit entry of the step; never personal data.
    ``birth_date`` is the birth date an authority returned with a passed check, if it did: the
    verification takes it (source ``authority``) when the document carries none, and refuses a
    document or declared date that contradicts it. It is never logged or stored in the clear.
    """

    outcome: Outcome
    reason: str = ""
    challenge: Challenge | None = None
    vendor_code: str = ""
    birth_date: date | None = field(default=None, repr=False)

    @classmethod
    def passed(cls, vendor_code: str = "", *, birth_date: date | None = None) -> StepResult:
        """A step that succeeded (with the birth date its authority returned, if any)."""
        return cls(Outcome.PASS, vendor_code=vendor_code, birth_date=birth_date)

    @classmethod
    def failed(cls, reason: str, vendor_code: str = "") -> StepResult:
        """A step that found the claim false or invalid."""
        return cls(Outcome.FAIL, reason, vendor_code=vendor_code)

    @classmethod
    def unavailable(cls, reason: str, vendor_code: str = "") -> StepResult:
        """A step that could not decide (vendor down, circuit open)."""
        return cls(Outcome.UNAVAILABLE, reason, vendor_code=vendor_code)

    @classmethod
    def not_applicable(cls, reason: str = "NOT_APPLICABLE") -> StepResult:
        """A step that does not apply to this subject."""
        return cls(Outcome.NOT_APPLICABLE, reason)


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step sees: the validated subject of one verification, in memory only.

    Attributes:
        tenant: the caller's tenant.
        verification_id: binds challenges to their own verification.
        subject: the claim as received (normalized).
        document: the validated document, or None when the method has no document step yet.
        today: the verification date in Asia/Shanghai.
        return_url: where a vendor-run challenge sends the user back (empty: vendor default).
        meta_info: the vendor client SDK's environment string, passed through untouched.
    """

    tenant: str
    verification_id: str
    subject: Subject
    document: Document | None
    today: date
    return_url: str = ""
    meta_info: str = ""


class Keyed(Protocol):
    """Keyed hashing bound to one tenant and purpose (HMAC-SHA256 under an HKDF subkey)."""

    def mac(self, tenant: str, purpose: str, data: bytes) -> bytes:
        """Returns HMAC-SHA256 of ``data`` under the tenant's subkey for ``purpose``."""
        ...


class SmsSender(Protocol):
    """Delivers a one-time code to a phone number (E.164)."""

    async def send_code(self, phone_e164: str, code: str, *, tenant: str, verification_id: str) -> None:
        """Sends ``code`` or raises :class:`SendFailed`."""
        ...


class SendFailed(Exception):
    """The SMS gateway refused or could not be reached."""


@dataclass(frozen=True, slots=True)
class VerifierDeps:
    """The few services a verifier may use (STYLE 4: narrow dependencies)."""

    keyed: Keyed
    sms_sender: SmsSender
    extras: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Verifier(Protocol):
    """A verification step.

    Attributes:
        name: registry name, as used in method configuration.
        biometric: True when the step processes biometric data (needs biometric consent).
        required_fields: Subject fields the step reads (``name``, ``document_number``, ...).

    Two optional members are honoured when present: ``provider`` (str), naming the outside
    service the step depends on, so that when it is UNAVAILABLE the fallback methods offered
    leave out every step of the same provider; and ``async aclose()``, called once at shutdown.
    """

    name: str
    biometric: bool
    required_fields: frozenset[str]

    async def check(self, context: StepContext) -> StepResult:
        """Runs the step; never raises for a bad claim (returns FAIL with a reason)."""
        ...


@runtime_checkable
class ChallengeVerifier(Verifier, Protocol):
    """A step that sends a challenge and later judges the user's answer by digest."""

    def digest_answer(self, tenant: str, verification_id: str, challenge_salt: bytes, answer: str) -> bytes:
        """Returns the digest the store compares with :attr:`Challenge.expected_digest`."""
        ...


@runtime_checkable
class JudgedChallengeVerifier(Verifier, Protocol):
    """A step whose challenge a vendor runs and judges (face liveness on the vendor's page).

    ``check()`` starts the vendor's flow and returns CHALLENGE with :attr:`Challenge.url` and
    :attr:`Challenge.token`; once the user is done, ``judge()`` asks the vendor for the verdict
    by token. The store still records the attempt and the binding atomically, given the verdict.
    """

    async def judge(self, tenant: str, verification_id: str, token: str) -> StepResult:
        """Returns PASS, FAIL(reason), UNAVAILABLE(reason), or CHALLENGE while still pending."""
        ...


class VerifierFactory(Protocol):
    """What an ``idverify.verifiers`` entry point loads."""

    def __call__(self, options: Mapping[str, Any], deps: VerifierDeps) -> Verifier:
        """Builds a verifier from its config options."""
        ...

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""What a vendor concluded about a claim, in our words, and how a step reports it.

Each adapter maps its vendor's result codes onto :class:`Verdict` (keeping the vendor's own
code for the audit); :func:`step_result` is the one place that turns verdicts into step
outcomes, so every vendor answers the same way for the same situation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from idverify.verifiers.base import Outcome, StepResult

__all__ = [
    "CodeMeaning",
    "RetryableAnswer",
    "Transient",
    "Unavailable",
    "VendorUnavailable",
    "Verdict",
    "VerdictKind",
    "settle",
    "step_result",
]


class VerdictKind(Enum):
    """The kinds of answer a vendor gives about a claim."""

    MATCH = "match"
    # The authority holds the record and it disagrees with the claim.
    MISMATCH = "mismatch"
    NO_RECORD = "no_record"
    # The vendor refused a field as malformed (after our own checks let it through).
    INVALID_INPUT = "invalid_input"
    # A bank card that exists but cannot be verified or used (lost, expired, restricted).
    REJECTED = "rejected"
    # This identity was checked too often today; the vendor will not answer until tomorrow.
    DAILY_LIMIT = "daily_limit"
    # The vendor cannot check this claim at all (a number range, a card, a document type).
    UNSUPPORTED = "unsupported"
    # A vendor-run challenge the user has not finished yet.
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One vendor answer.

    Attributes:
        kind: what it means.
        reason: our stable reason code for a step that does not pass (``AUTHORITY_MISMATCH``).
        vendor_code: the vendor's own code (``-1``, ``201``, ``FailedOperation.IdNameMisMatch``).
        billed: whether the vendor charges for this answer.
    """

    kind: VerdictKind
    reason: str = ""
    vendor_code: str = ""
    billed: bool = False


class VendorUnavailable(Exception):
    """The vendor could not give a verdict: unreachable, timed out, refused our credentials, busy.

    Attributes:
        reason: stable reason code for the step (``VENDOR_UNAVAILABLE``, ``VENDOR_TIMEOUT`` ...).
        vendor_code: the vendor's error code, or a marker of ours (``CIRCUIT_OPEN``, ``HTTP_503``).
    """

    def __init__(self, reason: str, vendor_code: str = "") -> None:
        super().__init__(f"{reason} ({vendor_code})" if vendor_code else reason)
        self.reason = reason
        self.vendor_code = vendor_code


class RetryableAnswer(Exception):
    """The vendor said "try again" and did not bill the call: the transport retries with backoff."""

    def __init__(self, reason: str, vendor_code: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.vendor_code = vendor_code


@dataclass(frozen=True, slots=True)
class Transient:
    """A code table entry: a non-billed answer meaning "try again later"."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A code table entry: no verdict, and retrying at once will not give one."""

    reason: str


CodeMeaning = Verdict | Transient | Unavailable


def settle(outcome: CodeMeaning, code: str) -> Verdict:
    """The verdict of a code table entry, with the vendor's code.

    Raises:
        RetryableAnswer: for a :class:`Transient` entry.
        VendorUnavailable: for an :class:`Unavailable` entry.

    """
    if isinstance(outcome, Transient):
        raise RetryableAnswer(outcome.reason, code)
    if isinstance(outcome, Unavailable):
        raise VendorUnavailable(outcome.reason, code)
    return Verdict(outcome.kind, outcome.reason, code, outcome.billed)


_FAILING = {VerdictKind.MISMATCH, VerdictKind.NO_RECORD, VerdictKind.INVALID_INPUT, VerdictKind.REJECTED}


def step_result(verdict: Verdict) -> StepResult:
    """The step outcome for a verdict.

    MATCH passes; a claim the authority contradicts or cannot find fails; a vendor that cannot
    decide today (daily limit, unsupported number) makes the step UNAVAILABLE, so that the
    fallbacks offered leave that vendor out; PENDING keeps a vendor-run challenge waiting.

    Args:
        verdict: the adapter's verdict.

    Returns:
        The step result, carrying the vendor's code.

    """
    if verdict.kind is VerdictKind.MATCH:
        return StepResult.passed(verdict.vendor_code)
    if verdict.kind in _FAILING:
        return StepResult.failed(verdict.reason or verdict.kind.value.upper(), verdict.vendor_code)
    if verdict.kind is VerdictKind.PENDING:
        return StepResult(Outcome.CHALLENGE, "CHALLENGE_PENDING", vendor_code=verdict.vendor_code)
    return StepResult.unavailable(verdict.reason or f"VENDOR_{verdict.kind.name}", verdict.vendor_code)

"""The audit entry: its event types and its canonical bytes, which are the Merkle tree's leaves.

The Lua prelude's ``audit()`` writes every entry (``idverify/store/lua/_prelude.lua`` says how a
script appends one). An entry is one line of UTF-8 JSON with its fields always in this order,
so the same event has one encoding and the stored bytes are hashed as they are, never re-encoded:

``{"v":1,"seq":N,"time_ms":T,"type":S,"verification_id":S,"account":S,"method":S,"outcome":S,
"reason":S,"steps":[{"verifier":S,"outcome":S,"reason":S},...],"principal":S,"request_id":S,
"trace_id":S,"attributes":{K:S,...}}``

- ``seq``: the entry's index in its tenant's log (0-based); ``time_ms``: Redis server time,
  never before the previous entry's, so a time range is a range of indices.
- ``account``: the account's *audit* pseudonym (HMAC under the tenant's ``audit`` subkey),
  never the account id; empty when the event concerns no account.
- ``attributes``: event-specific strings, keys sorted (``client_id``, ``role``, ``purpose``...).

Nothing in an entry is personal data: no name, document, phone, card number, IP address or
raw account id. The tests scan exported logs for the test identities to keep it so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from idverify.domain.errors import FailedPrecondition

__all__ = [
    "ENTRY_VERSION",
    "AuditEvent",
    "EntryDamaged",
    "EntryFormatError",
    "EventType",
    "StepOutcome",
    "parse_entry",
]

ENTRY_VERSION = 1


class EventType(StrEnum):
    """Every event type the service records; the value is what an entry's ``type`` holds."""

    VERIFICATION_STARTED = "verification.started"
    VERIFICATION_STEP = "verification.step"
    CHALLENGE_SENT = "challenge.sent"
    CHALLENGE_FAILED = "challenge.failed"
    CHALLENGE_PASSED = "challenge.passed"
    VERIFICATION_NEEDS_GUARDIAN = "verification.needs_guardian"
    VERIFICATION_VERIFIED = "verification.verified"
    VERIFICATION_REJECTED = "verification.rejected"
    VERIFICATION_EXPIRED = "verification.expired"
    ACCOUNT_BOUND = "account.bound"
    ACCOUNT_UPDATED = "account.updated"
    BINDING_REFUSED = "binding.refused"
    BINDING_SUPERSEDED = "binding.superseded"
    CLAIM_ESTABLISHED = "claim.established"
    CONSENT_GRANTED = "consent.granted"
    CONSENT_WITHDRAWN = "consent.withdrawn"
    LOGIN_IP_RECORDED = "login_ip.recorded"
    ACCOUNT_CANCELLED = "account.cancelled"
    ACCOUNT_ERASED = "account.erased"
    ACCOUNT_EXPORTED = "account.exported"
    IDENTITY_ERASED = "identity.erased"
    CLIENT_CREATED = "client.created"
    CLIENT_REVOKED = "client.revoked"
    CONSOLE_SIGNED_IN = "console.signed_in"
    CONSOLE_SIGNED_OUT = "console.signed_out"
    RATE_LIMIT_HIT = "rate_limit.hit"
    AUDIT_KEY_ROTATED = "audit.key_rotated"
    AUDIT_ROLLBACK_ACKNOWLEDGED = "audit.rollback_acknowledged"
    IDENTITY_CHECKED = "identity.checked"
    # One principal's reads of one minute: calls and reads per RPC, distinct accounts, digest.
    READS_SUMMARIZED = "reads.summarized"
    TENANT_REMOVAL_SCHEDULED = "tenant.removal_scheduled"
    TENANT_REMOVAL_CANCELLED = "tenant.removal_cancelled"
    TENANT_REMOVED = "tenant.removed"
    INCIDENT_REPORTED = "incident.reported"
    NAMES_APPROVED = "names.approved"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_UPDATED = "webhook.updated"
    WEBHOOK_DELETED = "webhook.deleted"
    WEBHOOK_REPLAYED = "webhook.replayed"
    WEBHOOK_FAILING = "webhook.failing"


class EntryFormatError(ValueError):
    """Bytes that are not an audit entry of a known version."""


class EntryDamaged(FailedPrecondition, EntryFormatError):
    """A stored entry of a tenant's log does not decode, is missing, or names another number.

    The store was altered (planted, or restored from a damaged copy): a read that reaches the
    entry answers this, naming its number (the error's ``index`` metadata), rather than an
    internal error, so that a caller can read on after it and an operator can look. Still an
    ``EntryFormatError``, so that what skipped or reported those goes on doing so.
    """

    default_reason = "AUDIT_ENTRY_DAMAGED"

    def __init__(self, index: int, why: str) -> None:
        super().__init__(f"audit entry {index} cannot be read: {why}; the store was altered")
        self.index = index
        self.metadata["index"] = str(index)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """One verifier step's result, as an entry records it."""

    verifier: str
    outcome: str
    reason: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """A decoded audit entry.

    Attributes:
        index: the entry's position in the log (its ``seq``).
        time_ms: when it was appended, in milliseconds since the Unix epoch.
        type: the event type (an ``EventType`` value for the built-in events).
        verification_id: the verification concerned, or empty.
        account: the account's audit pseudonym, or empty.
        method: the verification method, or empty.
        outcome: the event's outcome word (``started``, ``pass``, ``verified``...).
        reason: the stable reason code, or empty.
        steps: verifier step results, for ``verification.step``.
        principal: who made the call (``tenant/role/client id``).
        request_id: the caller's request id, if it sent one.
        trace_id: the W3C trace id of the call, if it came with one.
        attributes: event-specific values.
    """

    index: int
    time_ms: int
    type: str
    verification_id: str = ""
    account: str = ""
    method: str = ""
    outcome: str = ""
    reason: str = ""
    steps: tuple[StepOutcome, ...] = ()
    principal: str = ""
    request_id: str = ""
    trace_id: str = ""
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


_TEXT_FIELDS = ("type", "verification_id", "account", "method", "outcome", "reason")
_REQUEST_FIELDS = ("principal", "request_id", "trace_id")
_FIELD_ORDER = ("v", "seq", "time_ms", *_TEXT_FIELDS, "steps", *_REQUEST_FIELDS, "attributes")


def parse_entry(leaf: bytes) -> AuditEvent:
    """Decode an entry's bytes.

    Args:
        leaf: the entry exactly as stored (the Merkle leaf).

    Raises:
        EntryFormatError: the bytes are not UTF-8 JSON with the fields, order and version above.
    """
    try:
        # Decoded strictly first: json.loads of bytes lets a surrogate's bytes through
        # ('surrogatepass'), and the text it makes cannot be sent (protobuf, JSON) or shown.
        document = json.loads(leaf.decode("utf-8"), object_pairs_hook=_ordered)
    except (UnicodeDecodeError, json.JSONDecodeError, _DuplicateKeyError) as error:
        raise EntryFormatError(f"not a JSON audit entry: {error}") from None
    if not isinstance(document, list) or tuple(name for name, _ in document) != _FIELD_ORDER:
        raise EntryFormatError("audit entry fields are missing, extra or out of order")
    values = dict(document)
    if values["v"] != ENTRY_VERSION:
        raise EntryFormatError(f"audit entry version {values['v']!r} is not {ENTRY_VERSION}")
    for name in ("seq", "time_ms"):
        if type(values[name]) is not int or values[name] < 0:
            raise EntryFormatError(f"{name} must be a non-negative integer")
    for name in (*_TEXT_FIELDS, *_REQUEST_FIELDS):
        if not isinstance(values[name], str):
            raise EntryFormatError(f"{name} must be a string")
    return AuditEvent(
        index=values["seq"],
        time_ms=values["time_ms"],
        steps=_steps(values["steps"]),
        attributes=MappingProxyType(_attributes(values["attributes"])),
        **{name: values[name] for name in (*_TEXT_FIELDS, *_REQUEST_FIELDS)},
    )


class _DuplicateKeyError(ValueError):
    pass


def _ordered(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Keeps objects as ordered pairs, so that field order and duplicates can be checked."""
    if len({name for name, _ in pairs}) != len(pairs):
        raise _DuplicateKeyError("duplicate field")
    return pairs


def _steps(value: Any) -> tuple[StepOutcome, ...]:
    if not isinstance(value, list):
        raise EntryFormatError("steps must be a list")
    steps = []
    for item in value:
        if not isinstance(item, list) or tuple(name for name, _ in item) != ("verifier", "outcome", "reason"):
            raise EntryFormatError("a step is {verifier, outcome, reason}")
        fields = dict(item)
        if not all(isinstance(text, str) for text in fields.values()):
            raise EntryFormatError("step fields must be strings")
        steps.append(StepOutcome(**fields))
    return tuple(steps)


def _attributes(value: Any) -> dict[str, str]:
    if not isinstance(value, list) or not all(isinstance(text, str) for _, text in value):
        raise EntryFormatError("attributes must map names to strings")
    names = [name for name, _ in value]
    if names != sorted(names):
        raise EntryFormatError("attribute names must be sorted")
    return dict(value)

"""The exception tree of idverify: one root, specific leaves with stable reason codes.

Every leaf names the gRPC status it maps to; the one mapping to a rich gRPC status lives in
``idverify.services.interceptor.status_for``. Messages never contain personal data: they name
the field and the reason, not the value.
"""

from __future__ import annotations

from enum import Enum


class StatusKind(Enum):
    """The gRPC status family a domain error belongs to (kept free of grpc imports)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


class IdverifyError(Exception):
    """Root of all idverify errors; never raised itself.

    Attributes:
        reason: stable machine-readable reason code (``CHECKSUM_MISMATCH``).
        status: the gRPC status family it maps to.
        field: the request field at fault, dotted (``subject.document_number``), or empty.
        metadata: extra codes for the caller (``fallback_method_ids``), sent in the ErrorInfo.
    """

    status: StatusKind = StatusKind.FAILED_PRECONDITION
    default_reason: str = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.field = field
        # Machine-readable facts for the caller (the ErrorInfo's metadata): codes, never data.
        self.metadata: dict[str, str] = {}


class InvalidArgument(IdverifyError):
    """A request field is missing, malformed or out of bounds."""

    status = StatusKind.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class InvalidDocument(InvalidArgument):
    """A document number is malformed (length, characters, region, birth date)."""

    default_reason = "INVALID_DOCUMENT"


class ChecksumMismatch(InvalidDocument):
    """A document number's check character is wrong."""

    default_reason = "CHECKSUM_MISMATCH"


class NotFound(IdverifyError):
    """The named verification, account or client does not exist (or has expired)."""

    status = StatusKind.NOT_FOUND
    default_reason = "NOT_FOUND"


class FailedPrecondition(IdverifyError):
    """The request is well-formed but the current state does not allow it."""

    status = StatusKind.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class ConsentRequired(FailedPrecondition):
    """A purpose the method needs has not been consented to."""

    default_reason = "CONSENT_REQUIRED"


class BindingLimitReached(FailedPrecondition):
    """The identity already binds the maximum number of accounts in this tenant."""

    default_reason = "BINDING_LIMIT_REACHED"


class RateLimited(IdverifyError):
    """A rate limit was hit; ``retry_after`` says when to try again."""

    status = StatusKind.RESOURCE_EXHAUSTED
    default_reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class Unauthenticated(IdverifyError):
    """No credentials, or credentials that do not name a live client."""

    status = StatusKind.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class OutOfRange(IdverifyError):
    """A position past the current end (an audit index or tree size not reached yet).

    Unlike InvalidArgument, the same request may succeed later, once the log has grown.
    """

    status = StatusKind.OUT_OF_RANGE
    default_reason = "OUT_OF_RANGE"


class StreamEnded(IdverifyError):
    """A stream reached its maximum lifetime; its metadata says where to resume."""

    status = StatusKind.DEADLINE_EXCEEDED


class PermissionDenied(IdverifyError):
    """The caller's role does not allow this call, or it names another tenant."""

    status = StatusKind.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class StoreUnavailable(IdverifyError):
    """Redis (or another backing service) cannot be reached right now."""

    status = StatusKind.UNAVAILABLE
    default_reason = "STORE_UNAVAILABLE"


class StoreRefusesWrites(StoreUnavailable):
    """Redis answers and serves reads but refuses writes for now; ``retry_after`` says when to try again.

    The refused step stored nothing: Redis refuses a script at its first write, and a script
    that has written runs to its end.
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreFull(StoreRefusesWrites):
    """Redis is at its memory limit and refuses writes (``maxmemory`` with ``noeviction``)."""

    default_reason = "STORE_FULL"


class StoreCannotPersist(StoreRefusesWrites):
    """Redis cannot write its append-only or RDB file (a full or failing disk): MISCONF to writes.

    Only with ``appendfsync everysec``, or after a failed RDB save: with ``always`` Redis exits
    instead (plain StoreUnavailable). It takes writes again by itself once its file can be written.
    """

    default_reason = "STORE_CANNOT_PERSIST"


class ConfigError(Exception):
    """The configuration is invalid; raised at start-up only, never during a call."""

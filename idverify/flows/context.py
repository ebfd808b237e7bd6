"""What every flow needs: its dependencies, and the non-personal facts of the current request.

The store is not among the dependencies: a use case reaches it through its own port, and the
server hands the Redis client and scripts to each port's implementation in ``store/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date

from idverify.config import Settings
from idverify.domain.age import today_in_shanghai
from idverify.observability.telemetry import current_span_context
from idverify.privacy.identity_index import IdentityIndexer
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.security.rate_limits import WindowLimiter
from idverify.verifiers.base import ChallengeVerifier, JudgedChallengeVerifier, Verifier


@dataclass(frozen=True, slots=True)
class FlowDeps:
    """The services flows share, built once at start-up."""

    settings: Settings
    keyring: Keyring
    sealer: Sealer
    indexer: IdentityIndexer
    verifiers: Mapping[str, Verifier]
    window_limiter: WindowLimiter
    # The calendar day ages are computed on (Asia/Shanghai); tests move it across birthdays.
    today: Callable[[], date] = today_in_shanghai
    # What the verifiers are, sorted once here rather than on every call: an isinstance check
    # against a runtime-checkable Protocol looks up each of its members (~16 µs a check, eight
    # a signup).
    biometric_steps: frozenset[str] = field(init=False)
    """Names of the configured verifiers that are biometric."""
    fields_of_step: Mapping[str, frozenset[str]] = field(init=False)
    """Required subject fields per verifier name."""
    challenge_verifiers: Mapping[str, ChallengeVerifier] = field(init=False)
    """The verifiers whose answer the store judges by digest (one-time codes), by name."""
    judged_verifiers: Mapping[str, JudgedChallengeVerifier] = field(init=False)
    """The verifiers whose challenge a vendor runs and judges, by name."""

    def __post_init__(self) -> None:
        verifiers = self.verifiers.items()
        object.__setattr__(self, "biometric_steps", frozenset(name for name, v in verifiers if v.biometric))
        object.__setattr__(self, "fields_of_step", {name: v.required_fields for name, v in verifiers})
        object.__setattr__(
            self, "challenge_verifiers", {n: v for n, v in verifiers if isinstance(v, ChallengeVerifier)}
        )
        object.__setattr__(
            self, "judged_verifiers", {n: v for n, v in verifiers if isinstance(v, JudgedChallengeVerifier)}
        )


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Who asked and how to correlate it: what an audit entry may carry besides the change."""

    principal: str
    request_id: str = ""
    trace_id: str = ""

    @classmethod
    def internal(cls) -> RequestInfo:
        """For reads the service makes on its own behalf."""
        return cls(principal="idverify")

    def audit_fields(self) -> dict[str, str]:
        """The request's fields for an audit entry, and the span making the change for its event.

        ``span`` never enters the entry (the prelude's AUDIT_NOT_ATTRIBUTES): an event's outbox
        record keeps it, for the delivery span's link.
        """
        return {
            "principal": self.principal,
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "span": current_span_context(),
        }


call_deadline: ContextVar[float | None] = ContextVar("idverify_call_deadline", default=None)
"""When the current call must have answered, on the event loop's clock: the server's limit of the
call or the caller's own deadline, whichever is sooner (set by the interceptor; None outside a call)."""


def seconds_left(otherwise: float) -> float:
    """The current call's time left (:data:`call_deadline`), or ``otherwise`` outside a call."""
    deadline = call_deadline.get()
    if deadline is None:
        return otherwise
    return max(deadline - asyncio.get_running_loop().time(), 0.0)

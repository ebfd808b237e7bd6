"""What every flow needs: its dependencies, and the non-personal facts of the current request.

The store is not among the dependencies: a use case reaches it through its own port, and the
server hands the Redis client and scripts to each port's implementation in ``store/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

from idverify.config import Settings
from idverify.domain.age import today_in_shanghai
from idverify.observability.telemetry import current_span_context
from idverify.privacy.identity_index import IdentityIndexer
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.security.rate_limits import WindowLimiter
from idverify.verifiers.base import Verifier


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

    @property
    def biometric_steps(self) -> frozenset[str]:
        """Names of the configured verifiers that are biometric."""
        return frozenset(name for name, v in self.verifiers.items() if v.biometric)

    @property
    def fields_of_step(self) -> Mapping[str, frozenset[str]]:
        """Required subject fields per verifier name."""
        return {name: v.required_fields for name, v in self.verifiers.items()}


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

"""An in-memory ``IdentityCheckStore``: CheckIdentity's bindings and counters without Redis.

It keeps what ``identity_check.lua`` keeps (a count of wrong claims per account and per caller,
each window ending ``window_ms`` after its first mismatch) and the audit entries as typed rows.
``tests/unit/usecases/test_identity_check_store.py`` holds it to the Redis implementation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from idverify.flows.identity_check import BoundIdentity, CheckLimited, CheckStep, CheckTally
from idverify.testing.unreachable import refuse_if_down

__all__ = ["CheckedEntry", "MemoryIdentityChecks"]

_LIMITS = ("CHECK_LIMIT_REACHED", "PRINCIPAL_CHECK_LIMIT_REACHED")


@dataclass(frozen=True, slots=True)
class CheckedEntry:
    """One ``identity.checked`` audit entry."""

    tenant: str
    outcome: str  # match, mismatch or refused
    reason: str  # a refusal's reason, else ""
    fields: Mapping[str, str]


@dataclass(slots=True)
class _Window:
    count: int
    ends_ms: int


@dataclass
class MemoryIdentityChecks:
    """Bindings set by the test (``bind``), counters and audit entries kept as the script keeps them.

    ``clock_ms`` is the store's clock (wall time by default); ``down`` makes every call raise
    StoreUnavailable, as an unreachable Redis would.
    """

    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    down: bool = False
    bindings: dict[tuple[str, str], BoundIdentity] = field(default_factory=dict)
    entries: list[CheckedEntry] = field(default_factory=list)
    _windows: dict[tuple[str, str, str], _Window] = field(default_factory=dict)

    def bind(self, tenant: str, account: str, bound: BoundIdentity) -> None:
        """Binds an account (by pseudonym) as a verification would."""
        self.bindings[(tenant, account)] = bound

    def mismatches(self, tenant: str, scope: str, pseudonym: str) -> int:
        """Wrong claims in the live window of an account (``acct``) or a caller (``principal``)."""
        window = self._live(tenant, scope, pseudonym)
        return window.count if window else 0

    def _reach(self) -> None:
        refuse_if_down(self.down)

    def _live(self, tenant: str, scope: str, pseudonym: str) -> _Window | None:
        window = self._windows.get((tenant, scope, pseudonym))
        if window is not None and window.ends_ms <= self.clock_ms():
            del self._windows[(tenant, scope, pseudonym)]
            return None
        return window

    async def bound_identity(self, tenant: str, account: str) -> BoundIdentity | None:
        """The binding set by :meth:`bind`, if any."""
        self._reach()
        return self.bindings.get((tenant, account))

    async def tally(self, tally: CheckTally, step: CheckStep) -> CheckLimited | None:
        """As ``identity_check.lua``: the limits judged first, then a mismatch counted, then the entry."""
        self._reach()
        now = self.clock_ms()
        scopes = (
            ("acct", tally.account, tally.per_account),
            ("principal", tally.principal, tally.per_principal),
        )
        refused: str | None = None
        wait = 0
        for (scope, pseudonym, limit), reason in zip(scopes, _LIMITS, strict=True):
            window = self._live(tally.tenant, scope, pseudonym)
            if (window.count if window else 0) >= limit:
                refused = refused or reason
                # A limit of 0 is reached with no window: the script answers a whole one.
                wait = max(wait, window.ends_ms - now if window else tally.window_ms)
        if refused is not None:
            self.entries.append(CheckedEntry(tally.tenant, "refused", refused, dict(tally.audit)))
            return CheckLimited(reached=refused, retry_after_ms=wait)
        if step is CheckStep.ADMIT:
            return None
        if step is CheckStep.MISMATCH:
            for scope, pseudonym, _ in scopes:
                window = self._live(tally.tenant, scope, pseudonym)
                if window is None:
                    window = self._windows[(tally.tenant, scope, pseudonym)] = _Window(
                        0, now + tally.window_ms
                    )
                window.count += 1
        self.entries.append(CheckedEntry(tally.tenant, step.value, "", dict(tally.audit)))
        return None

"""An in-memory ``flows.consent.ConsentStore``: accounts' consent records as plain values.

Each account has its states by purpose, a revision that every change moves on, whether the record
is lasting (consents given with a start expire with it until the start binds the account) and the
verifications admitted under it; ``cancel`` marks an account cancelled, and the store's clock is a
number the test moves. ``stale_reads`` stands for another request changing the record between the
read and the write: the next that many admissions answer "changed" (after a grant elsewhere moved
the revision on) and withdrawals "try again". It keeps no verification records, so a withdrawal
ends none. ``tests/unit/usecases/test_consent_contract.py`` holds it and
``store.consents.RedisConsentStore`` to the same assertions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from idverify.domain.consent import ConsentState
from idverify.flows.consent import (
    AdmitOutcome,
    AdmitReply,
    ConsentAdmission,
    ConsentGrant,
    ConsentRecord,
    ConsentWithdrawal,
)
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryConsentStore"]


@dataclass(slots=True)
class _Account:
    states: dict[str, ConsentState] = field(default_factory=dict)
    revision: int = 0
    lasting: bool = False
    cancelled: bool = False
    admitted: list[str] = field(default_factory=list)  # verification ids, in order


class MemoryConsentStore:
    """Consent records of every tenant, in memory; ``audit`` lists ``(tenant, type, outcome, purpose)``."""

    def __init__(self, now_ms: int = 1_760_000_000_000) -> None:
        self.now = now_ms
        self.audit: list[tuple[str, str, str, str]] = []
        self.stale_reads = 0
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self._accounts: dict[tuple[str, str], _Account] = {}

    def _reach(self) -> None:
        refuse_if_down(self.down)

    def _account(self, tenant: str, account_ps: str) -> _Account:
        self._reach()
        return self._accounts.setdefault((tenant, account_ps), _Account())

    def _stale(self) -> bool:
        if self.stale_reads:
            self.stale_reads -= 1
            return True
        return False

    def cancel(self, tenant: str, account_ps: str) -> None:
        """Marks the account cancelled, as ``cancel_account.lua`` does."""
        self._account(tenant, account_ps).cancelled = True

    def lasting(self, tenant: str, account_ps: str) -> bool:
        """Whether the account's record is kept until changed (not expiring with a start)."""
        return self._account(tenant, account_ps).lasting

    def admitted(self, tenant: str, account_ps: str) -> list[str]:
        """The verifications admitted under the account's record, in order."""
        return list(self._account(tenant, account_ps).admitted)

    def _record(self, account: _Account) -> ConsentRecord:
        return ConsentRecord(
            dict(account.states), str(account.revision) if account.revision else "", account.cancelled
        )

    def _granted(self, tenant: str, account: _Account, purpose: str, version: str, *, audit: bool) -> None:
        account.states[purpose] = ConsentState(purpose, version, self.now, 0)
        if audit:
            self.audit.append((tenant, "consent.granted", "granted", purpose))

    async def now_ms(self) -> int:
        """The test's clock."""
        self._reach()
        return self.now

    async def read(self, tenant: str, account_ps: str) -> ConsentRecord:
        """The account's record."""
        return self._record(self._account(tenant, account_ps))

    async def grant(self, tenant: str, grant: ConsentGrant) -> ConsentState | None:
        """Grants as ``consent_grant.lua`` does."""
        account = self._account(tenant, grant.account_pseudonym)
        if account.cancelled:
            return None
        self._granted(tenant, account, grant.purpose, grant.text_version, audit=grant.audit)
        account.revision += 1
        account.lasting = True
        return account.states[grant.purpose]

    async def withdraw(self, tenant: str, withdrawal: ConsentWithdrawal) -> ConsentState | None:
        """Withdraws as ``consent_withdraw.lua`` does; None while ``stale_reads`` lasts."""
        account = self._account(tenant, withdrawal.account_pseudonym)
        if self._stale():
            return None
        before = account.states.get(withdrawal.purpose, ConsentState(withdrawal.purpose))
        account.states[withdrawal.purpose] = replace(before, withdrawn_ms=self.now)
        account.revision += 1
        account.lasting = True
        outcome = "withdrawn" if before.granted_ms else "refused"
        self.audit.append((tenant, "consent.withdrawn", outcome, withdrawal.purpose))
        return account.states[withdrawal.purpose]

    async def keep(self, tenant: str, account_ps: str) -> None:
        """Makes the record lasting."""
        account = self._account(tenant, account_ps)
        account.lasting = account.lasting or bool(account.states)

    async def admit(self, tenant: str, admission: ConsentAdmission) -> AdmitReply:
        """Admits as ``consent_start.lua`` does; "changed" while ``stale_reads`` lasts."""
        account = self._account(tenant, admission.account_pseudonym)
        if account.cancelled:
            return AdmitReply(AdmitOutcome.CANCELLED)
        if self._stale():
            account.revision += 1  # another request's change
        if (str(account.revision) if account.revision else "") != admission.revision:
            return AdmitReply(AdmitOutcome.CHANGED, replace(self._record(account), cancelled=False))
        for purpose, version in admission.grants:
            self._granted(tenant, account, purpose, version, audit=True)
        if admission.grants:
            account.revision += 1
        account.admitted.append(admission.verification_id)
        return AdmitReply(AdmitOutcome.ADMITTED)

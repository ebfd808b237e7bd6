"""Counts every code sent and every wrong code, per tenant and across tenants, before it happens.

A code send is counted twice, each in one atomic script: in the tenant's hash slot (the
account+phone lock-out, the tenant's per-phone window, the send budgets of the principal and
of the tenant) and in the phone's own slot (its lock and its windows shared by all tenants,
keyed by a deployment-wide pseudonym). The code goes out only after both answered yes: a step
that fails raises, and nothing is sent (fail closed). Wrong codes are counted per phone across
tenants in the phone's slot before the tenant's step judges them. Where one server holds every
slot (not Cluster), each pair runs as one chain (``Scripts.run_chain``): one round trip, the
second script only after the first said yes.

The counts are made through :class:`CodeSendStore`, the port declared here, in typed values;
this module decides what they mean (a lock, a full window's reason, the refusals audited).
``store.code_sends`` implements it over Redis (the counters' keys, ``send_budget.lua``,
``phone_send.lua``, ``phone_guess.lua`` and their replies) and gives the verification flow the
same counts folded into its chains (``CodeSendChains``), so that a signup keeps its round trips.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from idverify.domain.errors import RateLimited
from idverify.observability import telemetry

__all__ = [
    "AnswerCount",
    "CodeSendCounter",
    "CodeSendStore",
    "Count",
    "PhoneCount",
    "SendCounts",
    "SendLimits",
    "SendPseudonyms",
    "SendToCount",
    "TenantCount",
]

# The refusal reason of each of the tenant step's windows.
_WINDOW_REASONS = {
    "phone": "PHONE_RATE_LIMITED",
    "principal_sends_minute": "PRINCIPAL_SEND_BUDGET_EXCEEDED",
    "principal_sends_day": "PRINCIPAL_SEND_BUDGET_EXCEEDED",
    "tenant_sends_minute": "TENANT_SEND_BUDGET_EXCEEDED",
    "tenant_sends_day": "TENANT_SEND_BUDGET_EXCEEDED",
}


@dataclass(frozen=True, slots=True)
class SendLimits:
    """The windows a code send is counted against; 0 turns one off."""

    per_phone_per_hour: int
    per_phone_all_tenants_per_hour: int
    per_phone_all_tenants_per_day: int
    per_principal_per_minute: int
    per_principal_per_day: int
    per_tenant_per_minute: int
    per_tenant_per_day: int
    # Wrong codes for a phone, from every tenant, that lock it for failure_window_ms.
    phone_failure_limit: int
    failure_window_ms: int


@dataclass(frozen=True, slots=True)
class SendPseudonyms:
    """The keyed names a send is counted under: none of them holds anything but counters."""

    account_phone: str  # the tenant's pseudonym of account + phone (its wrong-code counter)
    tenant_phone: str  # the tenant's pseudonym of the phone (its per-phone window)
    phone: str  # the deployment-wide pseudonym of the phone (shared counters)
    # The account's pseudonym, whose bucket holds the wrong-code counter once a tenant's keys are
    # bucketed (docs/ARCHITECTURE.md, "Buckets: the plan" §2); "" where none is known.
    account: str = ""


@dataclass(frozen=True, slots=True)
class SendToCount:
    """A code about to be sent, as it is counted."""

    tenant: str
    names: SendPseudonyms
    principal: str  # the caller, whose send budget it spends
    max_attempts: int  # wrong codes that lock the account and phone
    request: Mapping[str, str]  # the audit fields of the call behind it


class Count(Enum):
    """What a counting step answered."""

    OK = "ok"  # counted
    LOCKED = "locked"  # refused uncounted: locked by wrong codes
    LIMITED = "limited"  # refused: a window is full


@dataclass(frozen=True, slots=True)
class TenantCount:
    """The count in the tenant's slot."""

    outcome: Count
    failures: int = 0  # the account and phone's wrong codes so far (OK, LOCKED)
    window: str = ""  # the full window (LIMITED): phone, principal_sends_minute, ... tenant_sends_day
    ttl_ms: int = 0  # the full window's time left (LIMITED)


@dataclass(frozen=True, slots=True)
class PhoneCount:
    """The count in the phone's own slot, shared by every tenant."""

    outcome: Count
    ttl_ms: int = 0  # LIMITED: the full window's time left


@dataclass(frozen=True, slots=True)
class SendCounts:
    """A send's two counts; the phone's is made only after the tenant's answered OK."""

    tenant: TenantCount
    phone: PhoneCount | None = None


@dataclass(frozen=True, slots=True)
class AnswerCount:
    """An answer's count for its phone across tenants: whether the phone is locked, and for how long."""

    locked: bool
    ttl_ms: int = 0


class CodeSendStore(Protocol):
    """The counters of code sends and wrong codes, under the limits it was made with.

    Every method may raise StoreUnavailable (reason ``NOT_COUNTED`` for a count Redis refused):
    then nothing may be sent or judged.
    """

    async def count_send(self, send: SendToCount) -> SendCounts:
        """Counts the send in the tenant's slot, then, only after an OK there, in the phone's."""
        ...

    async def audit_phone_limited(self, send: SendToCount, ttl_ms: int) -> None:
        """Audits in the tenant's log that the phone's shared windows refused the send.

        Once a window (``ttl_ms``, at least a second) per tenant and phone.
        """
        ...

    async def count_answer(self, phone_pseudonym: str, *, wrong: bool) -> AnswerCount | None:
        """Counts a wrong code for its phone across tenants, or checks the lock for a right one.

        None when nothing is counted: the phone lock is off, or there is no phone.
        """
        ...

    async def audit_phone_locked(
        self, tenant: str, lock_pseudonym: str, ttl_ms: int, request: Mapping[str, str], *, account: str = ""
    ) -> None:
        """Audits in the tenant's log that an answer met a locked phone.

        Once a window (``ttl_ms``, at least a second) per ``lock_pseudonym`` (the account and phone).
        ``account``: the account's pseudonym, whose bucket holds the mark in a bucketed tenant.
        """
        ...


class CodeSendCounter:
    """The two counts before a code send, and the per-phone count of wrong codes, judged."""

    def __init__(self, store: CodeSendStore) -> None:
        self._store = store

    async def count_send(self, send: SendToCount) -> tuple[str, int]:
        """Counts one code about to be sent; send it only when this returns ``("OK", failures)``.

        Returns:
            ``("OK", wrong codes so far for the account and phone)``, or ``("OTP_LOCKED", n)``
            when the account and phone used up their wrong codes, or ``("PHONE_LOCKED", 0)``
            when the phone is locked by wrong codes from anyone: the verification is refused.

        Raises:
            RateLimited: a window is full (``PHONE_RATE_LIMITED``, ``PRINCIPAL_SEND_BUDGET_EXCEEDED``
                or ``TENANT_SEND_BUDGET_EXCEEDED``).
            StoreUnavailable: a count could not be made; nothing may be sent.
        """
        return await self.judge_send(send, await self._store.count_send(send))

    async def judge_send(self, send: SendToCount, counts: SendCounts) -> tuple[str, int]:
        """What :meth:`count_send` answers for counts made (in a chain of the caller's, say).

        Raises:
            RateLimited: as :meth:`count_send`.
            StoreUnavailable: the refusal's audit could not be written.
        """
        tenant = counts.tenant
        if tenant.outcome is Count.LOCKED:
            return "OTP_LOCKED", tenant.failures
        if tenant.outcome is Count.LIMITED:
            raise _limited(tenant.window, _WINDOW_REASONS[tenant.window], tenant.ttl_ms)
        phone = counts.phone
        assert phone is not None  # noqa: S101 - counted after every OK of the tenant's
        if phone.outcome is Count.LOCKED:
            return "PHONE_LOCKED", 0
        if phone.outcome is Count.LIMITED:
            # Audited in the refused tenant's log, once a window.
            await self._store.audit_phone_limited(send, max(phone.ttl_ms, 1000))
            # The same reason as the tenant's own window: a caller learns nothing of other tenants.
            raise _limited("phone_all_tenants", "PHONE_RATE_LIMITED", phone.ttl_ms)
        return "OK", tenant.failures

    async def count_answer(
        self,
        tenant: str,
        phone_pseudonym: str,
        *,
        wrong: bool,
        lock_pseudonym: str,
        request: Mapping[str, str],
        account: str = "",
    ) -> None:
        """Counts a wrong code for its phone across tenants, or checks the phone's lock for a right one.

        Every code meets the lock alike, so a locked phone is no oracle of the right code. A
        refusal is audited in the tenant's log once a window per ``lock_pseudonym`` (the
        account and phone), so that answers hammering a locked phone cannot flood the log.

        Raises:
            RateLimited: reason ``PHONE_LOCKED`` while the phone is locked (nothing was judged).
            StoreUnavailable: the count could not be made; the code must not be judged.
        """
        count = await self._store.count_answer(phone_pseudonym, wrong=wrong)
        if count is not None:
            await self.judge_answer(
                count, tenant=tenant, lock_pseudonym=lock_pseudonym, request=request, account=account
            )

    async def judge_answer(
        self,
        count: AnswerCount,
        *,
        tenant: str,
        lock_pseudonym: str,
        request: Mapping[str, str],
        account: str = "",
    ) -> None:
        """Refuses the answer whose count found its phone locked (``account``: the lock mark's bucket).

        Raises:
            RateLimited: as :meth:`count_answer`.
            StoreUnavailable: as :meth:`count_answer`.
        """
        if count.locked:
            await self._store.audit_phone_locked(
                tenant, lock_pseudonym, max(count.ttl_ms, 1000), request, account=account
            )
            raise _limited("phone_locked", "PHONE_LOCKED", count.ttl_ms)


def _limited(window: str, reason: str, ttl_ms: int) -> RateLimited:
    telemetry.Instruments.add(telemetry.instruments.rate_limit_hits, limit=window)
    return RateLimited(f"limit {window} reached", retry_after=max(ttl_ms, 0) / 1000, reason=reason)

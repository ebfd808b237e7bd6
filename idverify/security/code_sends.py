"""Counts every code sent and every wrong code, per tenant and across tenants, before it happens.

A code send is counted twice, each in one atomic script: in the tenant's hash slot (the
account+phone lock-out, the tenant's per-phone window, the send budgets of the principal and
of the tenant) and in the phone's own slot (its lock and its windows shared by all tenants,
keyed by a deployment-wide pseudonym). The code goes out only after both answered yes: a step
that fails raises, and nothing is sent (fail closed). Wrong codes are counted per phone across
tenants in the phone's slot before the tenant's step judges them. Where one server holds every
slot (not Cluster), each pair runs as one chain (``Scripts.run_chain``): one round trip, the
second script only after the first said yes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from idverify.domain.errors import RateLimited, StoreUnavailable
from idverify.observability import telemetry
from idverify.store.connection import refusals_as
from idverify.store.keys import PhoneKeys, TenantKeys
from idverify.store.scripts import ChainStep, Scripts

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


class CodeSendCounter:
    """The two counting steps before a code send, and the per-phone count of wrong codes."""

    def __init__(self, scripts: Scripts, limits: SendLimits) -> None:
        self._scripts = scripts
        self._limits = limits

    async def count_send(
        self,
        keys: TenantKeys,
        names: SendPseudonyms,
        *,
        principal: str,
        max_attempts: int,
        request: dict[str, str],
        before: ChainStep | None = None,
    ) -> tuple[str, int, Any]:
        """Counts one code about to be sent; send it only when this returns ``("OK", failures, _)``.

        ``before`` is a step (a read) that runs ahead of the counts in the same script, on one
        server only (its reply is the third element; None when it did not run).

        Returns:
            ``("OK", wrong codes so far for the account and phone, _)``, or ``("OTP_LOCKED", n, _)``
            when the account and phone used up their wrong codes, or ``("PHONE_LOCKED", 0, _)``
            when the phone is locked by wrong codes from anyone: the verification is refused.

        Raises:
            RateLimited: a window is full (``PHONE_RATE_LIMITED``, ``PRINCIPAL_SEND_BUDGET_EXCEEDED``
                or ``TENANT_SEND_BUDGET_EXCEEDED``).
            StoreUnavailable: a count could not be made; nothing may be sent.
        """
        limits = self._limits
        phone = PhoneKeys(names.phone)
        tenant_step = ChainStep(
            "send_budget",
            [
                keys.otp_failures(names.account_phone),
                keys.rate_limit("phone", names.tenant_phone),
                keys.rate_limit("sends-principal-minute", principal),
                keys.rate_limit("sends-principal-day", principal),
                keys.rate_limit("sends-tenant", "minute"),
                keys.rate_limit("sends-tenant", "day"),
                keys.audit_log(),
            ],
            [
                max_attempts,
                limits.per_phone_per_hour,
                limits.per_principal_per_minute,
                limits.per_principal_per_day,
                limits.per_tenant_per_minute,
                limits.per_tenant_per_day,
                json.dumps(request),
            ],
            proceed_on=("OK",),
        )
        phone_step = ChainStep(
            "phone_send",
            [phone.otp_failures(), phone.sends_this_hour(), phone.sends_this_day()],
            [
                limits.phone_failure_limit,
                limits.per_phone_all_tenants_per_hour,
                limits.per_phone_all_tenants_per_day,
            ],
        )
        shared: Any = None
        before_reply: Any = None
        if self._scripts.one_node:
            # One server holds the phone's slot too: both counts in one round trip, the phone's
            # only after the tenant's said yes, as below.
            first = [before] if before is not None else []
            async with counted_or_unavailable():
                replies = await self._scripts.run_chain([*first, tenant_step, phone_step])
            if first:
                before_reply, replies = replies[0], replies[1:]
            answer = replies[0]
            if len(replies) > 1:
                shared = replies[1]
        else:
            answer = await self._scripts.run(tenant_step.name, tenant_step.keys, tenant_step.args)
        if answer[0] == b"LOCKED":
            return "OTP_LOCKED", int(answer[1]), before_reply
        if answer[0] == b"LIMITED":
            window = answer[1].decode()
            raise _limited(window, _WINDOW_REASONS[window], int(answer[2]))
        failures = int(answer[1])
        if shared is None:
            async with counted_or_unavailable():
                shared = await self._scripts.run(phone_step.name, phone_step.keys, phone_step.args)
        if shared[0] == b"LOCKED":
            return "PHONE_LOCKED", 0, before_reply
        if shared[0] == b"LIMITED":
            ttl_ms = int(shared[1])
            # Audited in the refused tenant's log, once a window (a limit of 0 audits the first).
            await self._scripts.run(
                "rate_limit",
                [keys.rate_limit("phone_all_tenants_audited", names.tenant_phone), keys.audit_log()],
                [0, max(ttl_ms, 1000), json.dumps({**request, "limit": "phone_all_tenants"})],
            )
            # The same reason as the tenant's own window: a caller learns nothing of other tenants.
            raise _limited("phone_all_tenants", "PHONE_RATE_LIMITED", ttl_ms)
        return "OK", failures, before_reply

    async def count_answer(
        self,
        phone_pseudonym: str,
        *,
        wrong: bool,
        keys: TenantKeys,
        lock_pseudonym: str,
        request: dict[str, str],
    ) -> None:
        """Counts a wrong code for its phone across tenants, or checks the phone's lock for a right one.

        Every code meets the lock alike, so a locked phone is no oracle of the right code. A
        refusal is audited in the tenant's log once a window per ``lock_pseudonym`` (the
        account and phone), so that answers hammering a locked phone cannot flood the log.

        Raises:
            RateLimited: reason ``PHONE_LOCKED`` while the phone is locked (nothing was judged).
            StoreUnavailable: the count could not be made; the code must not be judged.
        """
        step = self.answer_step(phone_pseudonym, wrong=wrong)
        if step is None:
            return
        async with counted_or_unavailable():
            answer = await self._scripts.run(step.name, step.keys, step.args)
        await self.judge_answer_count(answer, keys=keys, lock_pseudonym=lock_pseudonym, request=request)

    def answer_step(self, phone_pseudonym: str, *, wrong: bool) -> ChainStep | None:
        """The count of :meth:`count_answer` as a step a chain may run first (None: nothing to count).

        The chain's next step (the tenant's judgement) may follow only an ``OK``.
        """
        limits = self._limits
        if limits.phone_failure_limit <= 0 or not phone_pseudonym:
            return None
        return ChainStep(
            "phone_guess",
            [PhoneKeys(phone_pseudonym).otp_failures()],
            ["count" if wrong else "check", limits.phone_failure_limit, limits.failure_window_ms],
            proceed_on=("OK",),
        )

    async def judge_answer_count(
        self, answer: Any, *, keys: TenantKeys, lock_pseudonym: str, request: dict[str, str]
    ) -> None:
        """Refuses the answer whose count (:meth:`answer_step`) found its phone locked.

        Raises:
            RateLimited: as :meth:`count_answer`.
            StoreUnavailable: as :meth:`count_answer`.
        """
        if answer[0] == b"LOCKED":
            ttl_ms = int(answer[1])
            async with counted_or_unavailable():
                await self._scripts.run(
                    "rate_limit",
                    [keys.rate_limit("phone_locked_audited", lock_pseudonym), keys.audit_log()],
                    [0, max(ttl_ms, 1000), json.dumps({**request, "limit": "phone_locked"})],
                )
            raise _limited("phone_locked", "PHONE_LOCKED", ttl_ms)


def _limited(window: str, reason: str, ttl_ms: int) -> RateLimited:
    telemetry.Instruments.add(telemetry.instruments.rate_limit_hits, limit=window)
    return RateLimited(f"limit {window} reached", retry_after=max(ttl_ms, 0) / 1000, reason=reason)


@asynccontextmanager
async def counted_or_unavailable() -> AsyncIterator[None]:
    """A count Redis refused (out of memory, a damaged key) is a count not made: fail closed."""
    async with refusals_as(
        lambda: StoreUnavailable("the code could not be counted; nothing was sent", reason="NOT_COUNTED")
    ):
        yield


__all__ = ["CodeSendCounter", "SendLimits", "SendPseudonyms", "counted_or_unavailable"]

"""The counters of code sends and wrong codes in Redis, for ``security.code_sends``.

``security.code_sends`` decides what a count means (a lock, a full window's reason, which
refusals are audited); this adapter keeps the counters (the tenant's in its slot, the phone's
shared ones in the phone's own slot, ``PhoneKeys``), runs ``send_budget.lua``, ``phone_send.lua``,
``phone_guess.lua`` and ``rate_limit.lua`` (a refusal audited once a window) and decodes their
replies once. A count Redis refused (out of memory, a damaged key) is a count not made:
``counted_or_unavailable`` turns it into StoreUnavailable (``NOT_COUNTED``), and nothing is sent.

The verification flow folds these counts into its own chains of scripts (a send's counts after
the identity's read, an answer's count before its judgement): :class:`CodeSendChains` is that
flow's counter, with the steps and replies those chains need, so that a signup keeps its round
trips.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from idverify.domain.errors import StoreUnavailable
from idverify.security.code_sends import (
    AnswerCount,
    CodeSendCounter,
    Count,
    PhoneCount,
    SendCounts,
    SendLimits,
    SendPseudonyms,
    SendToCount,
    TenantCount,
)
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import refusals_as
from idverify.store.counter_steps import give_back
from idverify.store.keys import PhoneKeys, TenantKeys
from idverify.store.scripts import ChainStep, Scripts

__all__ = ["CodeSendChains", "RedisCodeSends", "counted_or_unavailable"]


@asynccontextmanager
async def counted_or_unavailable() -> AsyncIterator[None]:
    """A count Redis refused (out of memory, a damaged key) is a count not made: fail closed."""
    async with refusals_as(
        lambda: StoreUnavailable("the code could not be counted; nothing was sent", reason="NOT_COUNTED")
    ):
        yield


class RedisCodeSends:
    """``security.code_sends.CodeSendStore`` over the scripts of one Redis deployment."""

    def __init__(
        self,
        scripts: Scripts,
        limits: SendLimits,
        *,
        steps: StepRunner | None = None,
        keys: Callable[[str], TenantKeys] = TenantKeys,
    ) -> None:
        self._scripts = scripts
        self._limits = limits
        self._runner = steps or StepRunner(scripts)
        self._keys = keys

    def _tenant_step(self, send: SendToCount) -> ChainStep:
        limits, names, keys = self._limits, send.names, self._keys(send.tenant)
        return ChainStep(
            "send_budget",
            [
                keys.otp_failures(names.account_phone, names.account or None),
                keys.rate_limit("phone", names.tenant_phone),
                keys.rate_limit("sends-principal-minute", send.principal),
                keys.rate_limit("sends-principal-day", send.principal),
                keys.rate_limit("sends-tenant", "minute"),
                keys.rate_limit("sends-tenant", "day"),
                keys.audit_log(),
            ],
            [
                send.max_attempts,
                limits.per_phone_per_hour,
                limits.per_principal_per_minute,
                limits.per_principal_per_day,
                limits.per_tenant_per_minute,
                limits.per_tenant_per_day,
                json.dumps(dict(send.request)),
            ],
            proceed_on=("OK",),
        )

    def _phone_window_step(self, send: SendToCount) -> ChainStep:
        """The counter's half of ``send_budget``: the tenant's window for the phone."""
        keys = self._keys(send.tenant)
        window = keys.rate_limit("phone", send.names.tenant_phone)
        return ChainStep(
            "send_phone_window",
            [window, keys.audit_entries(window)],
            [self._limits.per_phone_per_hour, json.dumps(dict(send.request))],
        )

    def _budgets(self, send: SendToCount) -> list[tuple[str, int]]:
        """The tenant's slot's windows (principal's and tenant's budgets) and their limits, in order."""
        limits, keys = self._limits, self._keys(send.tenant)
        return [
            (keys.rate_limit("sends-principal-minute", send.principal), limits.per_principal_per_minute),
            (keys.rate_limit("sends-principal-day", send.principal), limits.per_principal_per_day),
            (keys.rate_limit("sends-tenant", "minute"), limits.per_tenant_per_minute),
            (keys.rate_limit("sends-tenant", "day"), limits.per_tenant_per_day),
        ]

    def _budgets_step(self, send: SendToCount) -> ChainStep:
        """The tenant's half of ``send_budget``: the principal's and the tenant's send budgets."""
        budgets = self._budgets(send)
        return ChainStep(
            "send_windows",
            [*(key for key, _ in budgets), self._keys(send.tenant).audit_log()],
            [*(limit for _, limit in budgets), json.dumps(dict(send.request))],
        )

    async def _count_in_two_slots(self, send: SendToCount) -> Any:
        """``send_budget``'s two steps at once (a Cluster), the lock-out read with them in the account's slot.

        A refusal by one step, or a locked account and phone, gives back what the others counted.
        Answers as ``send_budget.lua`` does: the lock-out first, then the phone's window, then the
        budgets, whichever refused. A call refused by both steps leaves both refusals counted.
        """
        phone_step, budgets_step = self._phone_window_step(send), self._budgets_step(send)
        keys = self._keys(send.tenant)
        async with counted_or_unavailable():
            failures, (phone, budgets) = await asyncio.gather(
                self._scripts.command(
                    "GET", keys.otp_failures(send.names.account_phone, send.names.account or None)
                ),
                self._runner.run_at_once("send_budget", [phone_step, budgets_step]),
            )
        fails = int(failures or 0)
        locked = fails >= send.max_attempts
        # Each slot's give-back is its own round trip: both at once, when both are owed.
        # An OK names each window's end (0: off), which the give-back checks it still is.
        owed: list[list[tuple[str, int]]] = []
        if budgets[0] == b"OK" and (locked or phone[0] != b"OK"):
            windows = zip(self._budgets(send), budgets[1:], strict=True)
            owed.append([(key, int(end)) for (key, limit), end in windows if limit > 0])
        if phone[0] == b"OK" and (locked or budgets[0] != b"OK") and self._limits.per_phone_per_hour > 0:
            owed.append([(phone_step.keys[0], int(phone[1]))])
        await asyncio.gather(*(give_back(self._scripts, keys, counters) for counters in owed))
        if locked:
            return [b"LOCKED", fails]
        if phone[0] != b"OK":
            return phone
        if budgets[0] != b"OK":
            return budgets
        return [b"OK", fails]

    def _phone_step(self, send: SendToCount) -> ChainStep:
        limits, phone = self._limits, PhoneKeys(send.names.phone)
        return ChainStep(
            "phone_send",
            [phone.otp_failures(), phone.sends_this_hour(), phone.sends_this_day()],
            [
                limits.phone_failure_limit,
                limits.per_phone_all_tenants_per_hour,
                limits.per_phone_all_tenants_per_day,
            ],
        )

    async def count_send(self, send: SendToCount) -> SendCounts:
        """``send_budget.lua``, then ``phone_send.lua`` after its OK: one chain on one server."""
        return (await self.count_send_after(None, send))[1]

    async def count_send_after(self, before: ChainStep | None, send: SendToCount) -> tuple[Any, SendCounts]:
        """:meth:`count_send` with ``before`` (a read) ahead of the counts in the same chain.

        ``before`` runs on one server only; its reply comes first (None when it did not run).
        """
        tenant_step, phone_step = self._tenant_step(send), self._phone_step(send)
        shared: Any = None
        before_reply: Any = None
        if self._runner.chained:
            # One server holds the phone's slot too: both counts in one round trip, the phone's
            # only after the tenant's said yes, as below; the tenant's two counter steps are one
            # script there (send_budget.lua).
            first = [before] if before is not None else []
            async with counted_or_unavailable():
                replies = await self._scripts.run_chain([*first, tenant_step, phone_step])
            if first:
                before_reply, replies = replies[0], replies[1:]
            answer = replies[0]
            if len(replies) > 1:
                shared = replies[1]
        else:
            answer = await self._count_in_two_slots(send)
        # {'OK', failures} | {'LOCKED', failures} | {'LIMITED', window name, ttl ms}
        if answer[0] == b"LOCKED":
            return before_reply, SendCounts(TenantCount(Count.LOCKED, failures=int(answer[1])))
        if answer[0] == b"LIMITED":
            window = TenantCount(Count.LIMITED, window=answer[1].decode(), ttl_ms=int(answer[2]))
            return before_reply, SendCounts(window)
        counted = TenantCount(Count.OK, failures=int(answer[1]))
        if shared is None:
            async with counted_or_unavailable():
                shared = await self._scripts.run(phone_step.name, phone_step.keys, phone_step.args)
        # {'OK'} | {'LOCKED', ttl ms} | {'LIMITED', ttl ms}
        if shared[0] == b"LOCKED":
            return before_reply, SendCounts(counted, PhoneCount(Count.LOCKED))
        if shared[0] == b"LIMITED":
            return before_reply, SendCounts(counted, PhoneCount(Count.LIMITED, ttl_ms=int(shared[1])))
        return before_reply, SendCounts(counted, PhoneCount(Count.OK))

    async def audit_phone_limited(self, send: SendToCount, ttl_ms: int) -> None:
        """``rate_limit.lua`` with a limit of 0 on a marker of the tenant's phone: the window's first."""
        keys = self._keys(send.tenant)
        marker = keys.rate_limit("phone_all_tenants_audited", send.names.tenant_phone)
        await self._scripts.run(
            "rate_limit",
            [marker, keys.audit_entries(marker)],
            [0, ttl_ms, json.dumps({**send.request, "limit": "phone_all_tenants"})],
        )

    def answer_step(self, phone_pseudonym: str, *, wrong: bool) -> ChainStep | None:
        """:meth:`count_answer` as a step a chain may run first (None: nothing to count).

        The chain's next step (the tenant's judgement) may follow only an ``OK``; :meth:`answer_of`
        reads its reply.
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

    @staticmethod
    def answer_of(reply: Any) -> AnswerCount:
        """``phone_guess.lua``'s reply: {'OK', failures} | {'LOCKED', ttl ms}."""
        if reply[0] == b"LOCKED":
            return AnswerCount(locked=True, ttl_ms=int(reply[1]))
        return AnswerCount(locked=False)

    async def count_answer(self, phone_pseudonym: str, *, wrong: bool) -> AnswerCount | None:
        """``phone_guess.lua`` alone."""
        step = self.answer_step(phone_pseudonym, wrong=wrong)
        if step is None:
            return None
        async with counted_or_unavailable():
            return self.answer_of(await self._scripts.run(step.name, step.keys, step.args))

    async def audit_phone_locked(
        self, tenant: str, lock_pseudonym: str, ttl_ms: int, request: Mapping[str, str], *, account: str = ""
    ) -> None:
        """``rate_limit.lua`` with a limit of 0 on a marker of the account and phone.

        The marker is in ``account``'s bucket (its pseudonym) and its entry beside it.
        """
        keys = self._keys(tenant)
        marker = keys.rate_limit("phone_locked_audited", lock_pseudonym, account or None)
        async with counted_or_unavailable():
            await self._scripts.run(
                "rate_limit",
                [marker, keys.audit_entries(marker)],
                [0, ttl_ms, json.dumps({**request, "limit": "phone_locked"})],
            )


class CodeSendChains:
    """The verification flow's counter of code sends: ``CodeSendCounter`` over Redis, chain by chain.

    The flow's chains carry the counts as steps of their own (a send's counts after the
    identity's read, an answer's count before its judgement); the judgements are the counter's.
    """

    def __init__(
        self,
        scripts: Scripts,
        limits: SendLimits,
        *,
        steps: StepRunner | None = None,
        keys: Callable[[str], TenantKeys] = TenantKeys,
    ) -> None:
        self._store = RedisCodeSends(scripts, limits, steps=steps, keys=keys)
        self._counter = CodeSendCounter(self._store)

    async def count_send(
        self,
        tenant: str,
        names: SendPseudonyms,
        *,
        principal: str,
        max_attempts: int,
        request: Mapping[str, str],
        before: ChainStep | None = None,
    ) -> tuple[str, int, Any]:
        """``CodeSendCounter.count_send``, with ``before``'s reply third (None when it did not run).

        ``before`` is a step (a read) that runs ahead of the counts in the same chain, on one
        server only.

        Raises:
            RateLimited, StoreUnavailable: as ``CodeSendCounter.count_send``.
        """
        send = SendToCount(tenant, names, principal, max_attempts, request)
        before_reply, counts = await self._store.count_send_after(before, send)
        verdict, failures = await self._counter.judge_send(send, counts)
        return verdict, failures, before_reply

    def answer_step(self, phone_pseudonym: str, *, wrong: bool) -> ChainStep | None:
        """The count of :meth:`count_answer` as a step a chain may run first (None: nothing to count).

        The chain's next step may follow only an ``OK``; :meth:`judge_answer_count` reads its reply.
        """
        return self._store.answer_step(phone_pseudonym, wrong=wrong)

    async def count_answer(
        self,
        phone_pseudonym: str,
        *,
        wrong: bool,
        tenant: str,
        lock_pseudonym: str,
        request: Mapping[str, str],
        account: str = "",
    ) -> None:
        """``CodeSendCounter.count_answer``, the count a step of its own (the phone's slot is elsewhere).

        Raises:
            RateLimited, StoreUnavailable: as ``CodeSendCounter.count_answer``.
        """
        await self._counter.count_answer(
            tenant,
            phone_pseudonym,
            wrong=wrong,
            lock_pseudonym=lock_pseudonym,
            request=request,
            account=account,
        )

    async def judge_answer_count(
        self, reply: Any, *, tenant: str, lock_pseudonym: str, request: Mapping[str, str], account: str = ""
    ) -> None:
        """Refuses the answer whose count (:meth:`answer_step`, run in a chain) found its phone locked.

        Raises:
            RateLimited, StoreUnavailable: as ``CodeSendCounter.judge_answer``.
        """
        await self._counter.judge_answer(
            RedisCodeSends.answer_of(reply),
            tenant=tenant,
            lock_pseudonym=lock_pseudonym,
            request=request,
            account=account,
        )

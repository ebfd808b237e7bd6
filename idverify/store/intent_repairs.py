"""The intents of step sequences in Redis, for ``flows.bucket_repair``.

A tenant's intents are the sorted set ``TenantKeys.intents()`` (member -> the store-clock ms after
which a repairer may take it) with one record each (``TenantKeys.intent()``). ``intent_take.lua``
takes one with a check-and-set on its score and checks it as the sequence's first step would;
the sequence is then resumed after that step: a cancellation's (``unbind``,
``store.cancellation_steps``), an account's erasure's (``erase``, ``store.erasure_steps``) or a
binding's (``bind`` from the identity's step, ``place`` with the confirm: ``store.binding_steps``).
"""

from __future__ import annotations

from typing import cast

from idverify.flows.bucket_repair import DueIntent, Repair, RepairOutcome
from idverify.store.binding_steps import BIND_KIND, PLACE_KIND, BindingSteps, PlaceIntent
from idverify.store.bucket_steps import StepRunner
from idverify.store.cancellation_steps import INTENT_KIND as UNBIND
from idverify.store.cancellation_steps import CancellationSteps
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.erasure_steps import INTENT_KIND as ERASE
from idverify.store.erasure_steps import ErasureSteps
from idverify.store.keys import TenantKeys
from idverify.store.scripted_store import ScriptedStore
from idverify.store.scripts import Scripts

__all__ = ["RedisIntentRepairs"]

# A binding's repair is at most its identity's step, a supersession or two, the commit and the
# confirm (a cancellation's, its identity's step, the names' and the intent's removal).
_REPAIR_STEPS = 5


class RedisIntentRepairs(ScriptedStore):
    """``flows.bucket_repair.IntentRepairs`` over Redis."""

    def __init__(self, redis: RedisClient, scripts: Scripts, *, steps: StepRunner | None = None) -> None:
        super().__init__(redis, scripts)
        self._runner = steps or StepRunner(scripts)
        self._cancellation = CancellationSteps(self._runner)
        self._erasure = ErasureSteps(self._runner)
        self._binding = BindingSteps(self._runner, scripts)

    async def due(self, tenant: str, until_ms: int, limit: int) -> list[DueIntent]:
        """At most ``limit`` intents due by ``until_ms``, soonest first."""
        async with translate_errors():
            rows = cast(
                "list[tuple[bytes, float]]",
                await self._redis.zrangebyscore(
                    TenantKeys(tenant).intents(), "-inf", until_ms, start=0, num=limit, withscores=True
                ),
            )
        return [DueIntent(as_text(member), int(score)) for member, score in rows]

    async def repair(self, tenant: str, intent: DueIntent) -> Repair:
        """Takes ``intent`` and finishes its sequence (see ``intent_take.lua`` for what is refused)."""
        keys = TenantKeys(tenant)
        kind, _, subject = intent.member.partition(":")
        # The account the intent names, when it names one of a kind this release knows; else any
        # key of the slot, which the take refuses before reading.
        if kind in {BIND_KIND, PLACE_KIND}:
            named = keys.verification(subject)
        else:
            named = keys.account(subject if kind in {UNBIND, ERASE} else "")
        taken = await self._scripts.run(
            "intent_take",
            [keys.intents(), keys.intent(intent.member), named],
            [intent.member, intent.retry_after_ms, self._runner.intent_delay_ms(_REPAIR_STEPS)],
        )
        status = as_text(taken[0])
        if status in {"RACED", "PENDING"}:
            return Repair(RepairOutcome.RACED)
        if status == "DROPPED":
            return Repair(RepairOutcome.DROPPED, as_text(taken[1]))
        if kind == ERASE:
            await self._erasure.resume(tenant, subject)
            return Repair(RepairOutcome.REPAIRED)
        if kind in {BIND_KIND, PLACE_KIND}:
            await self._resume_binding(tenant, kind, subject, [as_text(value) for value in taken])
            return Repair(RepairOutcome.REPAIRED)
        ref, tag, due_ms = (as_text(value) for value in taken[1:4])
        await self._cancellation.resume(tenant, subject, ref, tag, int(due_ms))
        return Repair(RepairOutcome.REPAIRED)

    async def _resume_binding(self, tenant: str, kind: str, verification_id: str, taken: list[str]) -> None:
        """A binding's intent as the take answered it (``intent_take.lua``), finished."""
        if kind == BIND_KIND and taken[0] == "ENDED":
            await self._binding.clear_ended(tenant, verification_id, taken[1])
        elif kind == BIND_KIND:
            request, limit, *inputs = taken[1:]
            await self._binding.resume_binding(tenant, request, int(limit), inputs)
        else:
            account_ps, status, request, method, ref = taken[1:6]
            place = PlaceIntent(verification_id, account_ps, ref, method, request, status)
            await self._binding.resume_place(tenant, place)

    def key_of(self, tenant: str, member: str) -> str:
        """The intent's record key."""
        return TenantKeys(tenant).intent(member)

"""The intents of step sequences in Redis, for ``flows.bucket_repair``.

A tenant's intents are the sorted set ``TenantKeys.intents()`` (member -> the store-clock ms after
which a repairer may take it) with one record each (``TenantKeys.intent()``). ``intent_take.lua``
takes one with a check-and-set on its score and checks it as the sequence's first step would;
the sequence is then resumed after that step: a cancellation's (``unbind``,
``store.cancellation_steps``) or an account's erasure's (``erase``, ``store.erasure_steps``).
"""

from __future__ import annotations

from typing import cast

from idverify.flows.bucket_repair import DueIntent, Repair, RepairOutcome
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

# A cancellation's repair is at most its identity's step, the names' and the intent's removal (an
# erasure's, the minutes' step and the removal).
_REPAIR_STEPS = 3


class RedisIntentRepairs(ScriptedStore):
    """``flows.bucket_repair.IntentRepairs`` over Redis."""

    def __init__(self, redis: RedisClient, scripts: Scripts, *, steps: StepRunner | None = None) -> None:
        super().__init__(redis, scripts)
        self._runner = steps or StepRunner(scripts)
        self._cancellation = CancellationSteps(self._runner)
        self._erasure = ErasureSteps(self._runner)

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
        account = keys.account(subject if kind in {UNBIND, ERASE} else "")
        taken = await self._scripts.run(
            "intent_take",
            [keys.intents(), keys.intent(intent.member), account],
            [intent.member, intent.retry_after_ms, self._runner.intent_delay_ms(_REPAIR_STEPS)],
        )
        status = as_text(taken[0])
        if status == "RACED":
            return Repair(RepairOutcome.RACED)
        if status == "DROPPED":
            return Repair(RepairOutcome.DROPPED, as_text(taken[1]))
        if kind == ERASE:
            await self._erasure.resume(tenant, subject)
            return Repair(RepairOutcome.REPAIRED)
        ref, tag, due_ms = (as_text(value) for value in taken[1:4])
        await self._cancellation.resume(tenant, subject, ref, tag, int(due_ms))
        return Repair(RepairOutcome.REPAIRED)

    def key_of(self, tenant: str, member: str) -> str:
        """The intent's record key."""
        return TenantKeys(tenant).intent(member)

"""The intents of step sequences in Redis, for ``flows.bucket_repair``.

A tenant's intents are the sorted set ``TenantKeys.intents()`` (member -> the store-clock ms after
which a repairer may take it) with one record each (``TenantKeys.intent()``). ``intent_take.lua``
takes one with a check-and-set on its score and checks it as the sequence's first step would,
reading only keys of the intent's own bucket (a ``place:`` intent's verification outcome is read
in the account's bucket first, ``bind_outcome.lua``, and given to it);
the sequence is then resumed after that step: a cancellation's (``unbind``,
``store.cancellation_steps``), an account's erasure's (``erase``, ``store.erasure_steps``), a
binding's (``bind`` from the identity's step, ``place`` with the confirm: ``store.binding_steps``)
or an identity's re-indexing's (``move``, ``store.identity_move_steps``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from idverify.flows.bucket_repair import DueIntent, Repair, RepairOutcome
from idverify.store.binding_steps import BIND_KIND, PLACE_KIND, BindingSteps, PlaceIntent, Pointing
from idverify.store.bucket_indexes import due_in_each
from idverify.store.bucket_steps import StepRunner
from idverify.store.cancellation_steps import INTENT_KIND as UNBIND
from idverify.store.cancellation_steps import CancellationSteps
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.erasure_steps import INTENT_KIND as ERASE
from idverify.store.erasure_steps import ErasureSteps
from idverify.store.identity_move_steps import INTENT_KIND as MOVE
from idverify.store.identity_move_steps import IdentityMoveSteps, MoveRecord
from idverify.store.keys import TenantKeys
from idverify.store.scripted_store import ScriptedStore
from idverify.store.scripts import Scripts

__all__ = ["RedisIntentRepairs"]

# How long the repairer holds an intent it took, in steps: a binding's repair is its identity's
# step, a supersession or two, the commit, an organization's names and the confirm, and when its
# identity moved under it a read of where it went, the verification pointed anew and the place
# again (9 in all; a refusal's count and a last member's names dropped come on shorter paths); a
# cancellation's is its identity's step, the names' and the intent's removal; a re-indexing's is
# its steps after the first (counted per intent). Too few only shortens the hold, after which
# another repairer may run the same idempotent steps.
_REPAIR_STEPS = 9


def _same_tag(key: str, other: str) -> bool:
    """Whether two keys share their hash tag, so their slot (today every key of a tenant does)."""
    return key.partition("}")[0] == other.partition("}")[0]


def _move_repair_steps(members: int) -> int:
    """A re-indexing's steps after its first: the arrival, each member's, the mark's, the names', the end."""
    return 4 + members


class RedisIntentRepairs(ScriptedStore):
    """``flows.bucket_repair.IntentRepairs`` over Redis.

    ``keys`` names a tenant's keys: today's by default, one index of intents; a bucketed tenant's
    has one in each bucket, read all at once (pipelined per node), each intent taken and its
    record read beside the index it was found in, and its sequence resumed with the same namer.
    """

    def __init__(
        self,
        redis: RedisClient,
        scripts: Scripts,
        *,
        steps: StepRunner | None = None,
        pointing: Pointing | None = None,
        keys: Callable[[str], TenantKeys] = TenantKeys,
    ) -> None:
        """``pointing``: where an identity that moved under a binding lives now (``BindingSteps``)."""
        super().__init__(redis, scripts)
        self._runner = steps or StepRunner(scripts)
        self._keys = keys
        self._cancellation = CancellationSteps(self._runner, keys=keys)
        self._erasure = ErasureSteps(self._runner, keys=keys)
        self._binding = BindingSteps(self._runner, scripts, pointing=pointing, keys=keys)
        self._move = IdentityMoveSteps(self._runner, keys=keys)

    async def due(self, tenant: str, until_ms: int, limit: int) -> list[DueIntent]:
        """At most ``limit`` intents due by ``until_ms``, soonest first, of every bucket's index."""
        keys = self._keys(tenant)
        indexes = [keys.intents(beside=prefix) for prefix in keys.bucket_prefixes()]
        due = await due_in_each(self._redis, indexes, until_ms, limit)
        return [DueIntent(each.member, each.score, each.index) for each in due]

    def _index_of(self, keys: TenantKeys, kind: str, subject: str, intent: DueIntent) -> str:
        """The index the intent was read from; one not said is an account's (``unbind``, ``erase``).

        Without a layout, the tenant's one index whatever is said.
        """
        if not keys.bucketed:
            return keys.intents()
        if intent.index:
            return intent.index
        return keys.intents(beside=keys.account(subject if kind in {UNBIND, ERASE} else ""))

    async def repair(self, tenant: str, intent: DueIntent) -> Repair:
        """Takes ``intent`` and finishes its sequence (see ``intent_take.lua`` for what is refused)."""
        keys = self._keys(tenant)
        kind, _, subject = intent.member.partition(":")
        index = self._index_of(keys, kind, subject, intent)
        record = keys.intent(intent.member, beside=index)
        # The account the intent names, when it names one of a kind this release knows, or for a
        # binding's its verification, or a re-indexing's old identity record (its record names
        # it); else any key of the slot, which the take refuses before reading.
        steps = _REPAIR_STEPS
        named: list[str] = []
        outcome: list[str] = []
        if kind == PLACE_KIND:
            outcome = await self._place_outcome(keys, record, subject)
        elif kind == BIND_KIND:
            named = [keys.verification(subject)]
        elif kind == MOVE:
            async with translate_errors():
                old, read = await self._redis.hmget(record, ["old", "read"])
            named = [keys.identity(as_text(old or b""))]
            with contextlib.suppress(ValueError, TypeError, KeyError):
                steps = _move_repair_steps(len(json.loads(read or b"")["members"]))
        else:
            named = [keys.account(subject if kind in {UNBIND, ERASE} else "")]
        if any(not _same_tag(key, index) for key in named):
            # An intent whose member or record names another bucket's key than its own was planted
            # there: its record stands in (a key of the slot the take reads as no such subject, so
            # it is dropped), where the other key would be a cross-slot call failing every round.
            named = [record]
        taken = await self._scripts.run(
            "intent_take",
            [index, record, *named],
            [intent.member, intent.retry_after_ms, self._runner.intent_delay_ms(steps), *outcome],
        )
        status = as_text(taken[0])
        if status in {"RACED", "PENDING"}:
            return Repair(RepairOutcome.RACED)
        if status == "DROPPED":
            return Repair(RepairOutcome.DROPPED, as_text(taken[1]))
        if kind == MOVE:
            old_ref, new_ref, read_json, move_json = (as_text(value) for value in taken[1:5])
            await self._move.resume(tenant, MoveRecord(old_ref, new_ref, read_json, move_json))
            return Repair(RepairOutcome.REPAIRED)
        if kind == ERASE:
            await self._erasure.resume(tenant, subject)
            return Repair(RepairOutcome.REPAIRED)
        if kind in {BIND_KIND, PLACE_KIND}:
            await self._resume_binding(tenant, kind, subject, [as_text(value) for value in taken])
            return Repair(RepairOutcome.REPAIRED)
        ref, tag, due_ms = (as_text(value) for value in taken[1:4])
        await self._cancellation.resume(tenant, subject, ref, tag, int(due_ms))
        return Repair(RepairOutcome.REPAIRED)

    async def _place_outcome(self, keys: TenantKeys, record: str, verification_id: str) -> list[str]:
        """How a ``place:`` intent's verification ended, read in the account's bucket before the take.

        The take runs in the identity's bucket and cannot read it (``intent_take.lua`` says why an
        answer stale by then is safe). The intent's account and ref are read first (its own
        bucket); an intent without them is the take's to drop, and nothing is read for it.
        Returns ``bind_outcome.lua``'s answer, then the account and ref it was read for.
        """
        async with translate_errors():
            account_ps, ref = (
                as_text(value or b"") for value in await self._redis.hmget(record, ["acct", "ref"])
            )
        if not account_ps or not ref:
            return ["", account_ps, ref]
        read = await self._scripts.run(
            "bind_outcome", [keys.verification(verification_id), keys.account(account_ps)], [account_ps, ref]
        )
        return [as_text(read[0]), account_ps, ref]

    async def _resume_binding(self, tenant: str, kind: str, verification_id: str, taken: list[str]) -> None:
        """A binding's intent as the take answered it (``intent_take.lua``), finished."""
        if kind == BIND_KIND and taken[0] == "ENDED":
            await self._binding.clear_ended(tenant, verification_id, taken[1])
        elif kind == BIND_KIND:
            request, limit, *inputs = taken[1:]
            await self._binding.resume_binding(tenant, request, int(limit), inputs)
        else:
            account_ps, status, request, method, ref, name_tag, names = taken[1:8]
            place = PlaceIntent(verification_id, account_ps, ref, method, request, status, name_tag, names)
            await self._binding.resume_place(tenant, place)

    def key_of(self, tenant: str, member: str) -> str:
        """The intent's record key (a bucketed tenant's: its bucket's, when its member says it)."""
        keys = self._keys(tenant)
        kind, _, subject = member.partition(":")
        if not keys.bucketed:
            return keys.intent(member)
        if kind in {UNBIND, ERASE}:
            return keys.intent(member, beside=keys.account(subject))
        # A binding's or a move's bucket is not in its member: named by the member alone.
        return f"intent {member} of tenant {tenant}"

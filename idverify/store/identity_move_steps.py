"""An identity's re-indexing as a step sequence (docs/ARCHITECTURE.md, "3.4 Re-indexing"), and its repair.

The old record is marked as moving out (``move_out.lua``, if it still holds what was read), arrives
at the new ref (``move_in.lua``: created or merged, marked ``incoming``), each member's account is
pointed at it (``move_member.lua``), the ``incoming`` mark is cleared (``move_settle.lua``) and the
old record becomes a forwarding record or nothing (``move_finish.lua``, which removes the intent).
On one node the steps are one EVAL, as the single script they replace was. Step by step (a Cluster), the
first writes the intent ``move:<sha1 of the old ref>`` with the record as read and the move; the
repairer resumes from it with the arrival, every step after the first being idempotent: it
finishes the move, never undoes it. While either mark is there a binding of the identity answers
RETRY, so no binding limit is ever counted on half of the members. Step by step, the members
whose accounts did not follow (cancelled while the move copied them) leave the new record at the
settling step: their cancellations named the old ref. It alone sees the members of both refs
after a merge, so the cancellations leave it the decision (MOVING on the marked old record, GONE
once it is left). When it leaves the record without members it answers LAST with their claim
tags, and the organization's names are dropped (the cancellation's own names step,
``drop_names.lua``) before the old record is finished: the intent stays until then, and a
repair settles again and answers LAST again. A cancellation that emptied the old record before
the move read it, and was killed before its names' step, left its ``LAST`` in the record
(``last:<tag>``): the move carries it, and the settling step that finds the merged record
without members answers LAST with that tag too, where that cancellation's repair finds GONE.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from idverify.store.bucket_steps import StepRunner
from idverify.store.cancellation_steps import names_step
from idverify.store.connection import as_text
from idverify.store.keys import TenantKeys
from idverify.store.scripts import ChainStep

__all__ = ["INTENT_KIND", "IdentityMoveSteps", "MoveRecord", "intent_member"]

INTENT_KIND = "move"


def intent_member(old_ref: str) -> str:
    """The intent a re-indexing writes: ``move:<sha1 of the old ref>`` (a ref is long, and sealed)."""
    return f"{INTENT_KIND}:{hashlib.sha1(old_ref.encode(), usedforsecurity=False).hexdigest()}"


@dataclass(frozen=True, slots=True)
class MoveRecord:
    """One move's arguments as its steps take them (and its intent keeps them).

    ``read``: the old record as read, json ``{fields, members, due}``; ``move``: json ``{binding,
    pepper, forward_ms}``, its new name binding and index parameters and how long a forwarding
    record stays.
    """

    old_ref: str
    new_ref: str
    read: str
    move: str

    @property
    def members(self) -> list[str]:
        """The members' account pseudonyms, as read."""
        return [str(member) for member in json.loads(self.read)["members"]]


class IdentityMoveSteps:
    """Builds and runs a re-indexing's steps on a :class:`StepRunner`.

    ``keys`` names a tenant's keys (today's by default; a bucketed tenant's puts each record's
    step and its erasure queue member in its ref's bucket, and the intent in the old one's).
    """

    def __init__(self, runner: StepRunner, *, keys: Callable[[str], TenantKeys] = TenantKeys) -> None:
        self._runner = runner
        self._keys = keys

    @property
    def chained(self) -> bool:
        """True when a move is one atomic EVAL (one node)."""
        return self._runner.chained

    async def move(self, tenant: str, moved: MoveRecord) -> str:
        """Moves the record as read; the first step's reply: OK, SAME, GONE, MOVING or RETRY."""
        keys = self._keys(tenant)
        old = keys.identity(moved.old_ref)
        member = intent_member(moved.old_ref)
        tail = self._tail(keys, moved)
        # One step more than the chain's: the names' step of a record its settling left empty.
        delay = "" if self._runner.chained else self._runner.intent_delay_ms(2 + len(tail))
        first = ChainStep(
            "move_out",
            [
                old,
                keys.identity_accounts(moved.old_ref),
                keys.erasure_due(beside=old),
                keys.intents(beside=old),
                keys.intent(member, beside=old),
            ],
            [moved.old_ref, moved.new_ref, moved.read, moved.move, delay],
            proceed_on=("OK",),
        )
        if self._runner.chained:
            # The last step removes the intent itself: no separate removal.
            replies = await self._runner.run("move", [first, *tail])
            return as_text(replies[0][0])
        status = as_text((await self._runner.run_one("move", first, 1))[0])
        if status == "OK":
            await self._after_out("move", keys, moved, done=1)
        return status

    async def resume(self, tenant: str, moved: MoveRecord) -> None:
        """Runs the steps after the first from its intent; the last removes the intent."""
        await self._after_out("move-repair", self._keys(tenant), moved, done=0)

    async def _after_out(self, sequence: str, keys: TenantKeys, moved: MoveRecord, *, done: int) -> None:
        """The steps after the first, one by one: the settling step is told whose accounts stayed.

        A member whose account no longer holds the old ref (a cancellation that ran its account's
        step before the move reached it) would otherwise keep its place in the new record: its
        cancellation's identity step names the old ref, which the move then deletes. When the
        settling step leaves the record without members (``LAST``), the organization's names
        follow before the finish, which removes the intent: that cancellation's identity step
        answers ``MOVING`` on the marked old record or ``GONE`` once it is left, and drops nothing
        on either word (the new record, merged, may hold other members). So does a record that
        arrived without members holding a cancellation's ``LAST`` whose names' step may never
        have run.
        """
        arrival, *visits, _, finish = self._tail(keys, moved)
        stayed: list[str] = []
        dues: list[int] = []
        for member, step in [("", arrival), *zip(moved.members, visits, strict=True)]:
            done += 1
            reply = await self._runner.run_one(sequence, step, done)
            if as_text(reply[0]) not in step.proceed_on:
                return
            if as_text(reply[0]) == "SKIP":
                stayed.append(member)
                if due := as_text(reply[1]):
                    dues.append(int(due))
        done += 1
        settle = self._settle(keys, moved, str(min(dues)) if dues else "", stayed)
        settled = await self._runner.run_one(sequence, settle, done)
        if as_text(settled[0]) == "LAST":
            for tag in settled[1:]:
                done += 1
                await self._runner.run_one(sequence, names_step(keys, as_text(tag)), done)
        await self._runner.run_one(sequence, finish, done + 1)

    @staticmethod
    def _settle(keys: TenantKeys, moved: MoveRecord, due: str, stayed: list[str]) -> ChainStep:
        """The new record's mark cleared, and the members whose accounts did not follow dropped."""
        new = keys.identity(moved.new_ref)
        return ChainStep(
            "move_settle",
            [new, keys.identity_accounts(moved.new_ref), keys.erasure_due(beside=new)],
            [moved.old_ref, moved.new_ref, due, *stayed],
            proceed_on=("OK", "LAST"),
        )

    @staticmethod
    def _tail(keys: TenantKeys, moved: MoveRecord) -> list[ChainStep]:
        """The arrival, each member's account, the arrival's mark cleared, the old record finished."""
        old, new = moved.old_ref, moved.new_ref
        old_record, new_record = keys.identity(old), keys.identity(new)
        move = json.loads(moved.move)
        binding_was = str(json.loads(moved.read)["fields"].get("name_binding", ""))
        return [
            ChainStep(
                "move_in",
                [new_record, keys.identity_accounts(new), keys.erasure_due(beside=new_record)],
                [old, new, moved.read, str(move["binding"]), str(move["pepper"])],
                proceed_on=("OK", "DONE"),
            ),
            *(
                ChainStep(
                    "move_member", [keys.account(member)], [old, new], proceed_on=("OK", "DONE", "SKIP")
                )
                for member in moved.members
            ),
            IdentityMoveSteps._settle(keys, moved, "", []),
            ChainStep(
                "move_finish",
                [
                    old_record,
                    keys.identity_accounts(old),
                    keys.erasure_due(beside=old_record),
                    keys.intents(beside=old_record),
                    keys.intent(intent_member(old), beside=old_record),
                ],
                [old, new, int(move["forward_ms"]), binding_was],
            ),
        ]

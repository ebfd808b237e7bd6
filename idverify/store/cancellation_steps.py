"""A cancellation as a step sequence (docs/ARCHITECTURE.md, "3.2 Cancellation"), and its repair.

The account's step (``cancel_account.lua``: its verifications ended, its binding cleared, its
erasure queued, ``account.cancelled`` written), the identity's (``cancel_identity.lua``: the
member removed, the identity queued when it was the last, and step by step that ``LAST`` left in
the record for a re-indexing to carry; ``MOVING`` on a record being moved that still holds it or
that ``LAST``, whose move frees the place and decides) and, after ``LAST``, the tenant's
(``drop_names.lua``: the organization's names). The caller is answered after the identity's step,
or the names' when it runs. Step by step, the account's step writes the intent
``unbind:<account pseudonym>``, removed last (``store.bucket_steps``); the repairer resumes from
it with the identity's step, every step after the account's being idempotent.

Every entry of a cancellation is written by the account's step, with the change it records, so a
repair writes none: the interrupted call's entries are already in the log, once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from idverify.flows.erasure import Cancellation
from idverify.store.bucket_steps import Intent, StepRunner
from idverify.store.connection import as_text
from idverify.store.keys import TenantKeys
from idverify.store.scripts import ChainStep

__all__ = ["INTENT_KIND", "BoundAccount", "CancellationSteps", "intent_member", "names_step"]

INTENT_KIND = "unbind"


def intent_member(account_ps: str) -> str:
    """The intent a cancellation of a bound account writes: ``unbind:<account pseudonym>``."""
    return f"{INTENT_KIND}:{account_ps}"


def names_step(keys: TenantKeys, tag: str) -> ChainStep:
    """The organization's names dropped (``drop_names.lua``), tenant-wide, after an identity step's ``LAST``.

    A cancellation's identity step leads to it, and so does a re-indexing's settling step that
    left the record without members (``store.identity_move_steps``).
    """
    return ChainStep("drop_names", [keys.organization_names(), keys.organization_own_names(tag)], [tag])


@dataclass(frozen=True, slots=True)
class BoundAccount:
    """What the caller read of the account just before: its identity ref and claim tag ('' unbound)."""

    ref: str
    tag: str
    live: Sequence[str]  # its live verification ids


class CancellationSteps:
    """Builds and runs a cancellation's steps on a :class:`StepRunner`.

    ``keys`` names a tenant's keys (today's by default; a bucketed tenant's puts the account's
    step, its intent, erasure queue member and entries in the account's bucket, and the
    identity's step and its queue member in the identity's).
    """

    def __init__(self, runner: StepRunner, *, keys: Callable[[str], TenantKeys] = TenantKeys) -> None:
        self._runner = runner
        self._keys = keys

    async def cancel(self, tenant: str, cancellation: Cancellation, read: BoundAccount) -> int | None:
        """Cancels the account as read; its erasure's due time, or None when the read went stale."""
        keys = self._keys(tenant)
        account_ps = cancellation.account_pseudonym
        account = keys.account(account_ps)
        member = intent_member(account_ps)
        chained = self._runner.chained
        due_ms = cancellation.due_ms
        tail = self._tail(keys, account_ps, read.ref, read.tag, due_ms, chained=chained) if read.ref else []
        delay = "" if chained or not read.ref else self._runner.intent_delay_ms(1 + len(tail))
        first = ChainStep(
            "cancel_account",
            [
                account,
                keys.account_verifications(account_ps),
                keys.erasure_due(beside=account),
                keys.audit_entries(account),
                keys.intents(beside=account),
                keys.intent(member, beside=account),
                *(keys.verification(v) for v in read.live),
            ],
            [
                cancellation.due_ms,
                cancellation.request_json,
                account_ps,
                cancellation.audit_pseudonym,
                read.ref,
                read.tag,
                json.dumps(list(read.live)),
                delay,
            ],
            proceed_on=("OK",),
        )
        # An account never bound has no other step, and its one writes no intent.
        intent = (
            Intent(
                keys.intents(beside=account),
                keys.intent(member, beside=account),
                member,
                removed_after=("OK",),
            )
            if tail
            else None
        )
        replies = await self._runner.run("cancel", [first, *tail], intent=intent)
        # {'OK', due ms} cancelled now, {'DONE', first due ms} before (a pending intent is the
        # repairer's to finish); {'RETRY'} when the read above went stale.
        status = as_text(replies[0][0])
        return int(replies[0][1]) if status in {"OK", "DONE"} else None

    async def resume(self, tenant: str, account_ps: str, ref: str, tag: str, due_ms: int) -> None:
        """Runs the steps after the account's from its intent, then removes the intent."""
        keys = self._keys(tenant)
        account = keys.account(account_ps)
        member = intent_member(account_ps)
        steps = self._tail(keys, account_ps, ref, tag, due_ms, chained=False)
        intent = Intent(
            keys.intents(beside=account),
            keys.intent(member, beside=account),
            member,
            removed_after=("KEPT", "LAST", "MOVING", "GONE"),
        )
        await self._runner.run("cancel-repair", steps, intent=intent, chain=False)

    @staticmethod
    def _tail(
        keys: TenantKeys, account_ps: str, ref: str, tag: str, due_ms: int, *, chained: bool
    ) -> list[ChainStep]:
        """The identity's step, and the organization's names after ``LAST`` when it has a tag.

        Step by step, the identity's step is given the tag to leave its ``LAST`` in the record:
        a re-indexing that reads the record before the names' step ran carries it to the new
        ref, whose settling step drops the names once no member of either ref is left, where a
        repair of this sequence would find the old ref gone. Chained, the names' step is in the
        same EVAL, and the record is left as it was.
        """
        identity = keys.identity(ref)
        steps = [
            ChainStep(
                "cancel_identity",
                [identity, keys.identity_accounts(ref), keys.erasure_due(beside=identity)],
                [account_ps, ref, due_ms, "" if chained else tag],
                proceed_on=("LAST",),
            )
        ]
        if tag:
            steps.append(names_step(keys, tag))
        return steps

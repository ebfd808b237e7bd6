"""A right answer's binding as a step sequence (docs/ARCHITECTURE.md, "3.1 Binding"), and its repair.

The account's step (``bind_judge.lua``: the answer judged; a right one marks the verification in
flight and writes the intent ``bind:<vf id>``), the identity's (``bind_place.lua``: the place taken
as the pending member ``p:<tag>:<vf id>``, or refused, with the intent ``place:<vf id>`` keeping
the decision), the superseded accounts' when a claim was established (``bind_supersede.lua``, one
step per account), a refused claim's count in its counter's slot (``bind_count.lua``, once per
verification), the account's commit (``bind_commit.lua``: bound or refused, the verification
finished, the first intent removed; the caller is answered with its record), an organization's
names in the tenant's slot once bound (``bind_names.lua``) and the identity's confirm
(``bind_confirm.lua``: ``b:<tag>``, or the place removed, and the second intent removed; the
organization's names dropped after it when its record was left without members).

A start in ``bind`` mode (``start.lua``) and a guardian's consent (``guardian.lua``) are the
account's step of their bindings in place of the judge. These run one by one where the steps are
in different slots (a Cluster), or through the crash tests' runner. On one node ``submit.lua``,
``start.lua`` and ``guardian.lua`` run the same scripts in one EVAL and this module is not used:
no intent, no pending place, the round trips and entries of one script.

The repairer resumes a ``bind:`` intent from the identity's step and a ``place:`` intent with the
confirm, under the verification's outcome (``store.intent_repairs``): finish, never undo, but for
the place of an account that was not bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from idverify.domain.errors import FailedPrecondition, StoreUnavailable
from idverify.flows.context import seconds_left
from idverify.flows.identity_mover import move_wait_deadline, wait_for_move
from idverify.store.bucket_steps import StepRunner
from idverify.store.cancellation_steps import names_step
from idverify.store.connection import as_text
from idverify.store.keys import TenantKeys
from idverify.store.scripts import BINDING_STEPS, ChainStep, Scripts, hash_fields
from idverify.store.topology import COMMAND_TIMEOUT_SECONDS
from idverify.store.visited_tenants import VisitedTenants

__all__ = ["BIND_KIND", "PLACE_KIND", "Answer", "BindingSteps", "Pointing", "bind_member", "place_member"]

_log = logging.getLogger(__name__)

BIND_KIND = "bind"
MOVE_ATTEMPTS = 3
"""A binding whose identity keeps moving under its place gives up after this many pointings."""
PLACE_KIND = "place"
BUSY_WAIT_SECONDS = 0.01
"""How long an answer waits before judging again while another answer of its account is binding."""
PLANTED_REPLY = 9
"""The place's reply element counting the pending members without intents it removed."""


class Pointing(Protocol):
    """Where a verification's identity lives now (``flows.identity_mover.IdentityMover``)."""

    async def repointing(self, tenant: str, record: Mapping[str, str]) -> dict[str, tuple[str, str]]:
        """The verification's fields to change, each as (read, new); empty when nothing moved."""
        ...


def bind_member(verification_id: str) -> str:
    """The account's intent of a binding: ``bind:<verification id>``."""
    return f"{BIND_KIND}:{verification_id}"


def place_member(verification_id: str) -> str:
    """The identity's intent of a binding: ``place:<verification id>``."""
    return f"{PLACE_KIND}:{verification_id}"


def _texts(reply: Sequence[Any]) -> list[str]:
    """A step's reply as the next step takes it: its texts, without the record a reply may carry."""
    return [as_text(part) for part in reply if not isinstance(part, list)]


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer to judge and, if right, bind: the keys' names and ``bind_judge.lua``'s arguments."""

    tenant: str
    verification_id: str
    account_ps: str
    otp_ps: str
    digest: str
    binding_limit: int
    failure_window_ms: int
    request_json: str
    verdict: str = ""
    verdict_reason: str = ""
    vendor_code: str = ""


class _Steps:
    """One call's steps, counted, so that each boundary has its number (``StepRunner.run_one``)."""

    def __init__(self, runner: StepRunner, sequence: str) -> None:
        self._runner = runner
        self._sequence = sequence
        self._done = 0

    async def __call__(self, step: ChainStep) -> Any:
        self._done += 1
        return await self._runner.run_one(self._sequence, step, self._done)


class BindingSteps:
    """Runs a binding's steps one by one on a :class:`StepRunner`, and resumes them from intents."""

    def __init__(
        self,
        runner: StepRunner,
        scripts: Scripts,
        *,
        pointing: Pointing | None = None,
        keys: Callable[[str], TenantKeys] = TenantKeys,
    ) -> None:
        """Steps on ``runner``; ``keys`` names a tenant's keys (today's ``TenantKeys`` by default).

        Each step's intents and audit entries are named beside a key of its own bucket: the
        account's step and the commit beside the account's, the place and the confirm beside the
        identity's, a supersession beside the superseded account's.
        """
        self._runner = runner
        self._scripts = scripts
        self._pointing = pointing
        self._keys = keys
        self._tenants = VisitedTenants(scripts)

    def intent_keys(self, tenant: str, verification_id: str, account_ps: str) -> list[str]:
        """The keys of the intent an account's step writes: the intents and ``bind:<vf id>``'s record.

        In the account's bucket (``account_ps``), beside its key, where the step runs.
        """
        keys = self._keys(tenant)
        account = keys.account(account_ps)
        return [keys.intents(account), keys.intent(bind_member(verification_id), account)]

    def intent_delay_ms(self) -> int:
        """The account's step's argument: when its intent may be repaired, in ms after it."""
        return self._runner.intent_delay_ms(len(BINDING_STEPS))

    async def bind(
        self,
        tenant: str,
        first: ChainStep,
        limit: int,
        request_json: str,
        *,
        pointing: Pointing | None = None,
    ) -> Any:
        """An account's step that may bind (a start in ``bind`` mode, a guardian's consent), then the rest.

        ``first`` is given the intent's keys and delay (:meth:`intent_keys`, :meth:`intent_delay_ms`);
        it answers ``BINDING`` when the steps after it are to run. The reply is the commit's as
        ``{'OK', record}``, or the first step's when it answered anything else. ``pointing``: where
        the identity lives when the place finds it moved, if not this runner's (a start looks its
        identity up again).

        Raises:
            StoreUnavailable: as :meth:`submit`.
        """
        await self._tenants.note(tenant)
        step = _Steps(self._runner, "bind")
        reply = await step(first)
        if reply[0] != b"BINDING":
            return reply
        return await self._after_judge(step, tenant, _texts(reply), limit, request_json, pointing=pointing)

    async def submit(self, answer: Answer) -> Any:
        """Judges the answer and binds a right one; the reply ``submit.lua`` would give.

        The judge reads no identity: a move of it is the place's to answer (RETRY: placed again
        within the call's time; MOVED: pointed anew and placed there), after the judge marked the
        verification in flight, so the steps finish where the identity is now.

        Raises:
            StoreUnavailable: Redis is unreachable, the identity kept moving or moved where no
                :class:`Pointing` finds it, or another answer of the account kept binding past the
                call's time; the steps done stay done, and their intent is the repairer's (a
                retry of the answer finishes them too).
        """
        keys = self._keys(answer.tenant)
        vid = answer.verification_id
        account = keys.account(answer.account_ps)
        await self._tenants.note(answer.tenant)
        judge = ChainStep(
            "bind_judge",
            [
                keys.verification(vid),
                keys.audit_entries(account),
                account,
                keys.otp_failures(answer.otp_ps, answer.account_ps),
                *self.intent_keys(answer.tenant, vid, answer.account_ps),
            ],
            [
                answer.digest,
                answer.failure_window_ms,
                answer.request_json,
                answer.verdict,
                answer.verdict_reason,
                answer.vendor_code,
                self.intent_delay_ms(),
                answer.binding_limit,
            ],
        )
        step = _Steps(self._runner, "bind")
        loop = asyncio.get_running_loop()
        give_up = loop.time() + seconds_left(COMMAND_TIMEOUT_SECONDS)
        while (judged := await step(judge))[0] == b"BUSY":
            if loop.time() + BUSY_WAIT_SECONDS > give_up:
                raise StoreUnavailable("another answer of the account is binding; retry", reason="CONTENDED")
            await asyncio.sleep(BUSY_WAIT_SECONDS)
        if judged[0] != b"BINDING":
            return judged
        return await self._after_judge(
            step, answer.tenant, _texts(judged), answer.binding_limit, answer.request_json
        )

    async def resume_binding(self, tenant: str, request_json: str, limit: int, inputs: Sequence[str]) -> None:
        """The steps after the account's, from a ``bind:`` intent the repairer took."""
        await self._after_judge(_Steps(self._runner, "bind-repair"), tenant, inputs, limit, request_json)

    async def resume_place(self, tenant: str, intent: PlaceIntent) -> None:
        """The confirm under the verification's outcome, from a ``place:`` intent the repairer took."""
        await self._confirm(_Steps(self._runner, "place-repair"), tenant, intent, ["OK", intent.status])

    async def clear_ended(self, tenant: str, verification_id: str, account_ps: str) -> None:
        """The commit of a verification a cancellation or withdrawal ended after the account's step.

        It answers DONE and only clears the step's marks: the verification's TTL back, the
        account's ``binding`` and the ``bind:`` intent.
        """
        step = _Steps(self._runner, "bind-repair")
        await step(self._commit(self._keys(tenant), verification_id, account_ps, ["{}", *[""] * 8]))

    @staticmethod
    def _commit(keys: TenantKeys, vid: str, account_ps: str, args: Sequence[str]) -> ChainStep:
        account = keys.account(account_ps)
        return ChainStep(
            "bind_commit",
            [
                keys.verification(vid),
                keys.audit_entries(account),
                account,
                keys.consent(account_ps),
                keys.intents(account),
                keys.intent(bind_member(vid), account),
            ],
            args,
        )

    async def _after_judge(
        self,
        step: _Steps,
        tenant: str,
        inputs: Sequence[str],
        limit: int,
        request_json: str,
        *,
        pointing: Pointing | None = None,
    ) -> Any:
        keys = self._keys(tenant)
        vid, account_ps, ref, method = inputs[1], inputs[2], inputs[3], inputs[11]
        place = self._place(keys, inputs, limit, request_json)
        deadline = move_wait_deadline()
        placed = _texts(await step(place))
        for _ in range(MOVE_ATTEMPTS):
            # A move of the identity in flight (docs/ARCHITECTURE.md, "3.4 Re-indexing"): placed
            # again once it is whole, so that no place is counted on half of its members.
            while placed[0] == "RETRY":
                await wait_for_move(deadline)
                placed = _texts(await step(place))
            if placed[0] != "MOVED":
                break
            # Moved since the account's step: the verification is pointed where it lives now
            # and placed there, as a write that may bind is when its script answers MOVED.
            inputs = await self._repointed(step, tenant, vid, account_ps, pointing or self._pointing)
            ref = inputs[3]
            place = self._place(keys, inputs, limit, request_json)
            placed = _texts(await step(place))
        if placed[0] in {"MOVED", "RETRY"}:
            msg = "the identity kept moving while the account was binding; retry"
            raise StoreUnavailable(msg, reason="CONTENDED")
        if placed[0] == "UNWALKED":
            # A bucketed identity holding members an older server bound without their fields:
            # their accounts are other buckets'. Nothing was placed; the account's step's intent
            # stays, and the binding finishes once the tenant is walked.
            msg = "the identity holds members an older server bound: run idverify migrate legacy"
            raise FailedPrecondition(msg, reason="LEGACY_MEMBERS_NOT_WALKED")
        self._note_planted(keys, ref, placed)
        intent = PlaceIntent(vid, account_ps, ref, method, request_json, "", placed[2], placed[8])
        for member in placed[6].split():
            await step(self._supersede(tenant, intent, placed[2], superseded=member))
        for member in placed[7].split():
            await step(self._supersede(tenant, intent, placed[2], tagged=member))
        if placed[4] == "1":
            await step(self._count(keys, vid, placed[2]))
        committed = await step(self._commit(keys, vid, account_ps, [request_json, *placed]))
        await self._confirm(step, tenant, intent, _texts(committed))
        if committed[0] in {b"OK", b"DONE"}:
            return [b"OK", committed[1]]
        return committed

    @staticmethod
    def _note_planted(keys: TenantKeys, ref: str, placed: Sequence[str]) -> None:
        """Logs the pending members without their intents the place removed (its tenth reply).

        They were written by no binding (``pending_place_held`` in the prelude): an operator or a
        writer to Redis put them there. Named by the identity's key and a count alone: a planted
        pseudonym is any text its writer chose. A kept decision (a repeat) has no tenth reply.
        """
        planted = placed[PLANTED_REPLY] if len(placed) > PLANTED_REPLY else ""
        if planted not in {"", "0"}:
            _log.warning(
                "identity %s: %s pending members without their intents removed (written by no binding)",
                keys.identity(ref),
                planted,
            )

    @staticmethod
    def _count(keys: TenantKeys, vid: str, tag: str) -> ChainStep:
        """A refused claim counted against its name, once per verification (the counter's slot).

        Before the commit: a refusal the caller is answered was counted (acknowledged) first, and a
        repair that runs it again finds the verification's marker.
        """
        return ChainStep(
            "bind_count", [keys.rate_limit("claim_refusals", tag), keys.claim_refusal_counted(tag, vid)], []
        )

    def _place(self, keys: TenantKeys, inputs: Sequence[str], limit: int, request_json: str) -> ChainStep:
        """The identity's step at the ref the account's step (or a pointing anew) answered."""
        ref, vid = inputs[3], inputs[1]
        identity = keys.identity(ref)
        return ChainStep(
            "bind_place",
            [
                identity,
                keys.identity_accounts(ref),
                keys.intents(identity),
                keys.intent(place_member(vid), identity),
            ],
            [limit, self.intent_delay_ms(), request_json, *inputs],
        )

    async def _repointed(
        self, step: _Steps, tenant: str, vid: str, account_ps: str, pointing: Pointing | None
    ) -> list[str]:
        """The verification in flight pointed at where its identity lives now: its binding inputs.

        Raises:
            StoreUnavailable: nothing to point it with, or it changed meanwhile: the caller retries,
                and the ``bind:`` intent, still naming the ref the verification names, is the
                repairer's.
        """
        keys = self._keys(tenant)
        fields = hash_fields(await self._scripts.command("HGETALL", keys.verification(vid)))
        changes = await pointing.repointing(tenant, fields) if pointing is not None else {}
        if changes:
            repoint = ChainStep(
                "bind_repoint",
                [keys.verification(vid), keys.intent(bind_member(vid), keys.account(account_ps))],
                [json.dumps({name: [old, new] for name, (old, new) in changes.items()})],
            )
            pointed = _texts(await step(repoint))
            if pointed[0] == "BINDING":
                return pointed
        msg = "the identity moved while the account was binding; retry"
        raise StoreUnavailable(msg, reason="CONTENDED")

    async def _confirm(
        self, step: _Steps, tenant: str, intent: PlaceIntent, committed: Sequence[str]
    ) -> None:
        """The organization's names once bound, then the confirm; what the confirm asks for after it.

        A place a claim superseded meanwhile has its account superseded after it; a record the
        confirm found without members (``LAST``) has the organization's names dropped. A place
        taken just before its identity moved went with the record: the confirm follows it
        (:meth:`_followed`), waiting while the move is in flight.
        """
        keys = self._keys(tenant)
        member = place_member(intent.verification_id)
        if len(committed) > 1 and committed[1] == "VERIFIED" and intent.names:
            await step(
                ChainStep(
                    "bind_names",
                    [keys.organization_names(), keys.organization_own_names(intent.name_tag)],
                    [intent.name_tag, intent.names],
                )
            )
        deadline = move_wait_deadline()
        for _ in range(MOVE_ATTEMPTS):
            identity = keys.identity(intent.ref)
            intents = [keys.intents(identity), keys.intent(member, identity)]
            confirm = ChainStep(
                "bind_confirm",
                [identity, keys.identity_accounts(intent.ref), *intents],
                [intent.account_ps, intent.verification_id, *committed],
            )
            while (confirmed := as_text((reply := await step(confirm))[0])) == "RETRY":
                await wait_for_move(deadline)
            if confirmed != "MOVED":
                break
            followed = await self._followed(step, tenant, intent)
            if followed is None:
                # Gone, and moved nowhere this release can find: no place is left to confirm.
                await self._scripts.run("intent_done", intents, [member])
                return
            intent = followed
        else:
            msg = "the identity kept moving while its binding was confirmed; retry"
            raise StoreUnavailable(msg, reason="CONTENDED")
        if confirmed == "SUPERSEDED":
            await step(self._supersede(tenant, intent, "", superseded=intent.account_ps))
        elif confirmed == "LAST":
            await step(names_step(keys, as_text(reply[1])))
        if confirmed in {"SUPERSEDED", "LAST"}:
            await self._scripts.run("intent_done", intents, [member])

    async def _followed(self, step: _Steps, tenant: str, intent: PlaceIntent) -> PlaceIntent | None:
        """The place's intent at the ref its identity moved to, the account pointed there too.

        The commit may have bound the account to the old ref after the move visited it (a pending
        member's account holds no ref yet): it follows as the move's own member step moves it
        (``move_member.lua``: pointed, already there, or not bound at all). None when the record
        moved nowhere :attr:`_pointing` can find.
        """
        changes = await self._pointing.repointing(tenant, {"identity": intent.ref}) if self._pointing else {}
        if "identity" not in changes:
            return None
        new_ref = changes["identity"][1]
        keys = self._keys(tenant)
        await step(ChainStep("move_member", [keys.account(intent.account_ps)], [intent.ref, new_ref]))
        return replace(intent, ref=new_ref)

    def _supersede(
        self, tenant: str, intent: PlaceIntent, tag: str, *, superseded: str = "", tagged: str = ""
    ) -> ChainStep:
        """The step of one account a claim supersedes (or tags): its entry staged beside it."""
        account = self._keys(tenant).account(superseded or tagged)
        return ChainStep(
            "bind_supersede",
            [self._keys(tenant).audit_entries(account), account],
            [intent.request_json, intent.verification_id, intent.method, intent.ref, tag, superseded, tagged],
        )


@dataclass(frozen=True, slots=True)
class PlaceIntent:
    """What the confirm of a binding and a supersession after it need, as a ``place:`` intent keeps it.

    ``status``: how the verification ended (``VERIFIED``, or anything else: not bound).
    ``name_tag``, ``names``: the place's tag, and the organization's names to index once bound
    (``bind_names.lua``; empty: none).
    """

    verification_id: str
    account_ps: str
    ref: str
    method: str
    request_json: str
    status: str
    name_tag: str = ""
    names: str = ""

"""An identity's re-indexing as steps (out, in, each member's account, the mark cleared, finished).

Abuse first. A worker killed -9 at each boundary of a move run one by one (the path a Cluster
takes, run here on a standalone redis-server through the test-only ``step_by_step`` runner) leaves
an intent that the repairer finishes, never undoes: every member under the new ref once with its
tag, every account pointing there, the erasure moved, no intent and no mark left, and the binding
limit counted on the whole set. Until then a binding of the identity, at either ref, answers RETRY
(never a place counted on half of the members), and a caller waiting on it is answered once the
move is done, or UNAVAILABLE past its deadline. A member cancelled while the identity moves
(either sequence between the other's steps, or a killed move repaired) holds no place at either
ref (the names of an organization whose last member it was: ``test_identity_move_names.py``). A
planted move intent moves nothing; garbage is logged by its key alone; two repairers take an
intent once. On one node, a move is one atomic EVAL that writes no intent.

CI runs ``CI_ROUNDS`` round of every boundary; ``IDVERIFY_CRASH_LOOPS`` runs the long loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import replace

import pytest

from idverify.domain.errors import StoreUnavailable
from idverify.domain.subjects import SubjectKind
from idverify.flows.bucket_repair import BucketRepairer, DueIntent, RepairOutcome
from idverify.flows.context import call_deadline
from idverify.flows.erasure import EraseOutcome, ErasureItem, ErasureKind
from idverify.flows.identity_mover import IdentityMove, IdentityMover
from idverify.flows.verification.port import NewVerification
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import CodeSendChains
from idverify.store.connection import RedisClient, as_text
from idverify.store.erasures import RedisErasureStore
from idverify.store.identity_move_steps import intent_member
from idverify.store.identity_records import RedisIdentityRecords
from idverify.store.intent_repairs import RedisIntentRepairs
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.verifications import RedisVerificationStore
from idverify.testing import RedisProcess
from idverify.testing.memory_code_sends import send_limits
from tests import bind_crash
from tests.cancel_crash import DUE_MS, NAME_HASH, TAG, LaterRepairs, Watching, cancellation, pseudonym
from tests.move_crash import (
    MEMBERS,
    NEW,
    OLD,
    assert_moved_once,
    binding_reply,
    bound_identity,
    move,
    moved_killed_after,
    status_of,
)
from tests.sequencer_crash import loop_rounds
from tests.unit.store.test_identity_accounts import verification

CI_ROUNDS = 1
ROUNDS = loop_rounds(CI_ROUNDS)
# Out, in, the three members' accounts, the mark cleared, finished (the intent removed with it).
STEPS = 4 + MEMBERS
BOUNDARIES = range(1, STEPS + 1)


# A binding script's arguments: submit's (a digest, the limit, the wrong codes' window, the
# request), guardian's (the limit, the request, the consent's text and relationship, the
# guardian's account as read, no refusal).
ARGUMENTS: dict[str, list[str | int | bytes]] = {
    "submit": ["00" * 32, MEMBERS + 1, 60_000, "{}"],
    "guardian": [MEMBERS + 1, "{}", "v1", "parent", "{}", ""],
}


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


def _tenant(label: str) -> str:
    return f"move{pseudonym(label)[:8]}"


def _accounts(tenant: str) -> list[str]:
    return [pseudonym(f"{tenant}-{n}") for n in range(MEMBERS)]


async def _marks(redis: RedisClient, tenant: str) -> tuple[bool, bool]:
    """Whether the old record is marked ``moving_to`` and the new one ``incoming``."""
    keys = TenantKeys(tenant)
    return (
        await redis.hexists(keys.identity(OLD), "moving_to"),
        await redis.hexists(keys.identity(NEW), "incoming"),
    )


class TestAWorkerKilledMidMoveIsRepaired:
    """The worker killed -9 after each step; the repairer finishes, never undoes, once."""

    @pytest.mark.timeout(60 + 60 * ROUNDS)
    async def test_every_boundary_every_round(self, redis: RedisClient, own_redis: RedisProcess) -> None:
        now = BucketRepairer(RedisIntentRepairs(redis, Scripts(redis)))
        later = BucketRepairer(LaterRepairs(redis, Scripts(redis)))
        for round_ in range(ROUNDS):
            for nth in BOUNDARIES:
                forward_ms = 60_000 if nth % 2 else 0  # a pepper move's forwarding record, or none
                tenant = _tenant(f"{round_}-{nth}")
                accounts = _accounts(tenant)
                await bound_identity(redis, tenant, accounts)
                where = f"round {round_}, killed after step {nth}"
                await asyncio.to_thread(moved_killed_after, own_redis.url, tenant, nth, forward_ms=forward_ms)
                keys = TenantKeys(tenant)
                pending = 0 if nth == STEPS else 1
                assert await redis.zcard(keys.intents()) == pending, where
                if pending:
                    await self._no_place_is_counted_on_half(redis, tenant, nth, where)
                # Not before its retry time: a live worker would still be finishing it.
                assert await now.repair(tenant) == 0, where
                assert await redis.zcard(keys.intents()) == pending, where
                assert await later.repair(tenant) == pending, where
                await assert_moved_once(redis, tenant, accounts, forward_ms=forward_ms)
                # A second pass finds nothing: the repair is done once.
                assert await later.repair(tenant) == 0, where
                await assert_moved_once(redis, tenant, accounts, forward_ms=forward_ms)

    @staticmethod
    async def _no_place_is_counted_on_half(redis: RedisClient, tenant: str, nth: int, where: str) -> None:
        """Between the steps a binding at the old ref waits, and at the new one until it is whole."""
        moving_out, incoming = await _marks(redis, tenant)
        assert (moving_out, incoming) == (True, 1 < nth < STEPS - 1), where
        stranger = pseudonym(f"{tenant}-stranger")
        assert status_of(await binding_reply(redis, tenant, stranger, OLD, MEMBERS + 1)) == ("RETRY", ""), (
            where
        )
        if incoming:
            assert status_of(await binding_reply(redis, tenant, stranger, NEW, MEMBERS + 1)) == (
                "RETRY",
                "",
            ), where
        elif nth == STEPS - 1:
            # Whole again: the limit counts every member that arrived.
            assert status_of(await binding_reply(redis, tenant, stranger, NEW, MEMBERS)) == (
                "REJECTED",
                "BINDING_LIMIT_REACHED",
            ), where

    async def test_a_worker_that_lived_leaves_no_intent(self, redis: RedisClient) -> None:
        tenant = _tenant("lived")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts)
        assert await move(redis, tenant, StepRunner(Scripts(redis), step_by_step=True)) == "OK"
        await assert_moved_once(redis, tenant, accounts)

    async def test_an_identity_erasure_waits_for_the_move(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """An identity with no member left, due for erasure, killed mid-move: not erased from under it."""
        tenant = _tenant("erasure")
        keys = TenantKeys(tenant)
        await redis.hset(keys.identity(OLD), mapping={"name_binding": "binding-org", "established": "1"})
        await redis.zadd(keys.erasure_due(), {f"i:{OLD}": 1})
        await asyncio.to_thread(moved_killed_after, own_redis.url, tenant, 2)
        store = RedisErasureStore(redis, Scripts(redis))
        item = ErasureItem(ErasureKind.IDENTITY, OLD)
        assert (
            await store.erase(tenant, item, json.dumps({"principal": "erasure-worker"})) is EraseOutcome.GONE
        )
        assert await redis.hget(keys.identity(OLD), "moving_to") == NEW.encode()
        assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) == 1
        assert await _marks(redis, tenant) == (False, False)
        assert await redis.zscore(keys.erasure_due(), f"i:{NEW}") == 1
        assert await redis.exists(keys.identity(OLD)) == 0


class TestABindingMidMove:
    """A signup arriving while the move is between steps waits for it, and is counted on the whole set."""

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("pause_after", range(1, STEPS))
    async def test_it_waits_and_the_limit_holds(self, redis: RedisClient, pause_after: int) -> None:
        tenant = _tenant(f"binding-{pause_after}")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts)
        scripts = Scripts(redis)
        store = RedisVerificationStore(redis, scripts, CodeSendChains(scripts, send_limits()))
        stranger = pseudonym(f"{tenant}-stranger")
        record = _stranger(stranger)
        signups: list[asyncio.Task[object]] = []

        async def pointed(moved: bool) -> VerificationRecord:
            del moved
            return _stranger(stranger, NEW)

        class Paused(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                del sequence
                if done == pause_after:
                    start = NewVerification(
                        tenant, "req-stranger", "vf-stranger", stranger, record, 60_000, MEMBERS, "{}", "bind"
                    )
                    signups.append(asyncio.create_task(store.commit(start, pointed)))
                    await asyncio.sleep(0.1)
                    assert not signups[0].done(), "a binding went on while the move was between its steps"

        assert await move(redis, tenant, Paused(scripts, step_by_step=True)) == "OK"
        written = await signups[0]
        assert (written.record.status, written.record.reason) == (Status.REJECTED, "BINDING_LIMIT_REACHED")
        await assert_moved_once(redis, tenant, accounts)

    @pytest.mark.parametrize(
        ("script", "status"), [("submit", "CHALLENGE_SENT"), ("guardian", "NEEDS_GUARDIAN_CONSENT")]
    )
    async def test_an_answer_and_a_guardian_wait_too(
        self, redis: RedisClient, own_redis: RedisProcess, script: str, status: str
    ) -> None:
        """A right answer and a guardian's consent, which bind, answer RETRY at either mark."""
        tenant = _tenant(f"{script}-waits")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts)
        await asyncio.to_thread(moved_killed_after, own_redis.url, tenant, 2)
        keys = TenantKeys(tenant)
        stranger = pseudonym(f"{tenant}-stranger")
        for ref in (OLD, NEW):
            verification_id = f"vf-{script}-{ref}"
            await redis.hset(
                keys.verification(verification_id),
                mapping={
                    "id": verification_id,
                    "status": status,
                    "acct": stranger,
                    "identity": ref,
                    "challenge_expires_ms": 1,  # judged without the wait: expired, a change
                },
            )
            # The one-node scripts, which ask the identity before their account's step writes:
            # submit's sixth key is the failure counter, guardian's the guardian's account.
            identity = [keys.identity(ref), keys.identity_accounts(ref)]
            head = [keys.verification(verification_id), keys.audit_log(), keys.account(stranger)]
            script_keys = [*head, *identity, keys.account(accounts[0])]
            reply = await Scripts(redis).run(script, script_keys, ARGUMENTS[script])
            assert [as_text(word) for word in reply] == ["RETRY"], ref
            assert await redis.hget(keys.verification(verification_id), "status") == status.encode()

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("forward_ms", [0, 60_000])
    async def test_a_right_answer_judged_before_the_move_is_placed_on_the_new_ref(
        self, redis: RedisClient, forward_ms: int
    ) -> None:
        """Its place (step by step) waits while the move is in flight, then finds the identity moved.

        Placed at the old ref mid-move, the account would be bound to a record the move then
        deletes; instead the verification is pointed where the identity lives now (the forwarding
        record's ``moved_to``, or the current key's ref) and placed there, within the call.
        """
        tenant, accounts, stranger = await _stranger_challenged(redis, f"answer-mid-move-{forward_ms}")
        scripts = Scripts(redis)
        moved_out, release = asyncio.Event(), asyncio.Event()
        moving: list[asyncio.Task[str]] = []
        tried_mid_move: list[int] = []

        class MovePaused(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                del sequence
                if done == 1:
                    moved_out.set()
                    await release.wait()

        class JudgedThenMoved(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                del sequence
                if done == 1:  # the judge said BINDING: the move begins before the place
                    mover = MovePaused(scripts, step_by_step=True)
                    moving.append(asyncio.create_task(move(redis, tenant, mover, forward_ms=forward_ms)))
                    await moved_out.wait()
                    asyncio.get_running_loop().call_later(0.2, release.set)
                elif not release.is_set():
                    tried_mid_move.append(done)

        runner = JudgedThenMoved(scripts, step_by_step=True)
        store = RedisVerificationStore(
            redis, scripts, CodeSendChains(scripts, send_limits()), steps=runner, pointing=_Pointing(redis)
        )
        written = await bind_crash.answer(store, tenant, "vf-answer", limit=MEMBERS + 1)
        assert tried_mid_move, "the place was not tried while the move was in flight"
        assert await moving[0] == "OK"
        assert written.record.status is Status.VERIFIED, written.record
        await _bound_on_the_new_ref(redis, tenant, [*accounts, stranger])

    @pytest.mark.timeout(60)
    async def test_the_repairer_places_a_binding_judged_before_the_move_on_the_new_ref(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """A worker killed after the judge, the move done meanwhile: the repair points it anew.

        A repairer dying right after the pointing leaves the intent naming the new ref with the
        verification, so the next one finishes it there rather than drop it as not binding.
        """
        tenant, accounts, stranger = await _stranger_challenged(redis, "answer-killed-then-moved")
        await asyncio.to_thread(
            bind_crash.killed_after, own_redis.url, tenant, "vf-answer", 1, limit=MEMBERS + 1
        )
        assert await move(redis, tenant, StepRunner(Scripts(redis), step_by_step=True)) == "OK"
        scripts = Scripts(redis)

        class DiesOncePointed(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                if (sequence, done) == ("bind-repair", 2):  # the place said MOVED, the repoint ran
                    raise ConnectionError("the repairer's worker died here")

        dying = LaterRepairs(
            redis, scripts, steps=DiesOncePointed(scripts, step_by_step=True), pointing=_Pointing(redis)
        )
        assert await BucketRepairer(dying).repair(tenant) == 0
        # Its intent names the new ref with the verification: the next repair places it there.
        repairs = LaterRepairs(redis, scripts, pointing=_Pointing(redis))
        assert await BucketRepairer(repairs).repair(tenant) == 1
        record = await Scripts(redis).command("HGET", TenantKeys(tenant).verification("vf-answer"), "status")
        assert record == b"VERIFIED"
        await _bound_on_the_new_ref(redis, tenant, [*accounts, stranger])
        assert await BucketRepairer(repairs).repair(tenant) == 0

    async def test_past_its_deadline_a_stuck_move_is_unavailable(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        tenant = _tenant("stuck")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts)
        await asyncio.to_thread(moved_killed_after, own_redis.url, tenant, 1)
        scripts = Scripts(redis)
        store = RedisVerificationStore(redis, scripts, CodeSendChains(scripts, send_limits()))
        stranger = pseudonym(f"{tenant}-stranger")
        start = NewVerification(
            tenant, "req-stuck", "vf-stuck", stranger, _stranger(stranger), 60_000, MEMBERS + 1, "{}", "bind"
        )

        async def unmoved(moved: bool) -> VerificationRecord:
            raise AssertionError(f"the identity has not moved yet ({moved=})")

        token = call_deadline.set(asyncio.get_running_loop().time() + 0.3)
        try:
            with pytest.raises(StoreUnavailable):
                await store.commit(start, unmoved)
        finally:
            call_deadline.reset(token)
        assert await redis.scard(TenantKeys(tenant).identity_accounts(OLD)) == MEMBERS

    @pytest.mark.timeout(60)
    async def test_step_by_step_an_answer_past_a_stuck_move_is_finished_once_it_moved(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """The judge reads no identity: marked, it waits at the place, and is UNAVAILABLE past its time.

        What it marked stays the binding's, never a half: the verification in flight with its
        ``bind:`` intent and no place taken at the moving record; once the move is done the
        repairer places it on the new ref.
        """
        tenant = _tenant("answer-stuck")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts)
        await asyncio.to_thread(moved_killed_after, own_redis.url, tenant, 1)
        stranger = pseudonym(f"{tenant}-stranger")
        await _challenged(redis, tenant, stranger)
        scripts = Scripts(redis)
        store = RedisVerificationStore(
            redis,
            scripts,
            CodeSendChains(scripts, send_limits()),
            steps=StepRunner(scripts, step_by_step=True),
            pointing=_Pointing(redis),
        )
        token = call_deadline.set(asyncio.get_running_loop().time() + 0.3)
        try:
            with pytest.raises(StoreUnavailable):
                await bind_crash.answer(store, tenant, "vf-answer", limit=MEMBERS + 1)
        finally:
            call_deadline.reset(token)
        keys = TenantKeys(tenant)
        assert await redis.hget(keys.verification("vf-answer"), "binding") == b"1"
        assert await redis.zscore(keys.intents(), "bind:vf-answer") is not None
        assert not await redis.hexists(keys.identity(OLD), f"m:{stranger}")
        repairs = LaterRepairs(redis, scripts, pointing=_Pointing(redis))
        [moving] = [as_text(m) for m in await redis.zrange(keys.intents(), 0, -1) if m.startswith(b"move:")]
        score = int(await redis.zscore(keys.intents(), moving) or 0)
        assert (await repairs.repair(tenant, DueIntent(moving, score))).outcome is RepairOutcome.REPAIRED
        assert await BucketRepairer(repairs).repair(tenant) == 1
        assert await redis.hget(keys.verification("vf-answer"), "status") == b"VERIFIED"
        await _bound_on_the_new_ref(redis, tenant, [*accounts, stranger])

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize(("moved_after", "forward_ms"), [(2, 0), (2, 60_000), (3, 0), (3, 60_000)])
    async def test_a_binding_placed_before_the_move_is_confirmed_on_the_new_ref(
        self, redis: RedisClient, moved_after: int, forward_ms: int
    ) -> None:
        """Placed (``p:``) at the old ref, the move takes the place along; commit, then confirm there.

        The move runs whole after the place (its account, not bound yet, is not pointed) or after
        the commit (bound to the old ref, and pointed by the move): either way the account ends
        bound to the new ref and its member ``b:`` there, not ``p:`` for good.
        """
        tenant, accounts, stranger = await _stranger_challenged(
            redis, f"placed-then-moved-{moved_after}-{forward_ms}"
        )
        scripts = Scripts(redis)

        class MovedBetween(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                if (sequence, done) == ("bind", moved_after):
                    mover = StepRunner(scripts, step_by_step=True)
                    assert await move(redis, tenant, mover, forward_ms=forward_ms) == "OK"

        runner = MovedBetween(scripts, step_by_step=True)
        store = RedisVerificationStore(
            redis, scripts, CodeSendChains(scripts, send_limits()), steps=runner, pointing=_Pointing(redis)
        )
        written = await bind_crash.answer(store, tenant, "vf-answer", limit=MEMBERS + 1)
        assert written.record.status is Status.VERIFIED, written.record
        await _bound_on_the_new_ref(redis, tenant, [*accounts, stranger])

    @pytest.mark.timeout(60)
    async def test_a_confirm_waits_for_a_move_in_flight(self, redis: RedisClient) -> None:
        """Committed, then the move marks the old record: the confirm waits rather than confirm there.

        Turned ``b:`` in the old record, which the move then deletes, the place would stay ``p:``
        in the new one for good.
        """
        tenant, accounts, stranger = await _stranger_challenged(redis, "confirm-mid-move")
        scripts = Scripts(redis)
        moved_out, release = asyncio.Event(), asyncio.Event()
        moving: list[asyncio.Task[str]] = []
        tried_mid_move: list[int] = []

        class MovePaused(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                del sequence
                if done == 1:
                    moved_out.set()
                    await release.wait()

        class CommittedThenMoved(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                del sequence
                if done == 3:  # judged, placed, committed: the move begins before the confirm
                    moving.append(
                        asyncio.create_task(move(redis, tenant, MovePaused(scripts, step_by_step=True)))
                    )
                    await moved_out.wait()
                    asyncio.get_running_loop().call_later(0.2, release.set)
                elif done > 3 and not release.is_set():
                    tried_mid_move.append(done)

        runner = CommittedThenMoved(scripts, step_by_step=True)
        store = RedisVerificationStore(
            redis, scripts, CodeSendChains(scripts, send_limits()), steps=runner, pointing=_Pointing(redis)
        )
        written = await bind_crash.answer(store, tenant, "vf-answer", limit=MEMBERS + 1)
        assert tried_mid_move, "the confirm was not tried while the move was in flight"
        assert await moving[0] == "OK"
        assert written.record.status is Status.VERIFIED, written.record
        await _bound_on_the_new_ref(redis, tenant, [*accounts, stranger])

    @pytest.mark.timeout(60)
    async def test_the_repairer_confirms_a_place_that_moved(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """A worker killed after the place, the move done meanwhile: the repair binds on the new ref."""
        tenant, accounts, stranger = await _stranger_challenged(redis, "placed-killed-then-moved")
        await asyncio.to_thread(
            bind_crash.killed_after, own_redis.url, tenant, "vf-answer", 2, limit=MEMBERS + 1
        )
        assert await move(redis, tenant, StepRunner(Scripts(redis), step_by_step=True)) == "OK"
        repairs = BucketRepairer(LaterRepairs(redis, Scripts(redis), pointing=_Pointing(redis)))
        # The bind: intent first (the commit, the confirm followed); the place: intent is gone with it.
        assert await repairs.repair(tenant) >= 1
        assert await redis.hget(TenantKeys(tenant).verification("vf-answer"), "status") == b"VERIFIED"
        await _bound_on_the_new_ref(redis, tenant, [*accounts, stranger])
        assert await repairs.repair(tenant) == 0

    @pytest.mark.timeout(60)
    async def test_a_place_that_moved_still_counts_at_the_new_ref(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """The move carries the ``p:`` member; its ``place:`` intent still names the old ref.

        A binding at the new ref tells a pending member that no binding took (planted) by its
        intent: one that compared the intent's ref with its own would drop this real place, and
        bind one account past the limit. Both paths are refused at the limit, and the repair then
        binds the moved place.
        """
        tenant, accounts, stranger = await _stranger_challenged(redis, "placed-moved-counted")
        await asyncio.to_thread(
            bind_crash.killed_after, own_redis.url, tenant, "vf-answer", 2, limit=MEMBERS + 1
        )
        stepwise = StepRunner(Scripts(redis), step_by_step=True)
        assert await move(redis, tenant, stepwise) == "OK"
        keys = TenantKeys(tenant)
        assert (await redis.hget(keys.identity(NEW), f"m:{stranger}") or b"").startswith(b"p:")
        chained = pseudonym(f"{tenant}-chained")
        assert status_of(await binding_reply(redis, tenant, chained, NEW, MEMBERS + 1)) == (
            "REJECTED",
            "BINDING_LIMIT_REACHED",
        )
        latecomer = pseudonym(f"{tenant}-latecomer")
        start = NewVerification(
            tenant,
            "req-late",
            "vf-late",
            latecomer,
            _stranger(latecomer, NEW),
            600_000,
            MEMBERS + 1,
            "{}",
            "bind",
        )
        late = await bind_crash.store_of(redis, runner=stepwise).commit(start, _never_moved)
        assert (late.record.status, late.record.reason) == (Status.REJECTED, "BINDING_LIMIT_REACHED")
        repairs = BucketRepairer(LaterRepairs(redis, Scripts(redis), pointing=_Pointing(redis)))
        assert await repairs.repair(tenant) >= 1
        await _bound_on_the_new_ref(redis, tenant, [*accounts, stranger])

    async def test_a_place_whose_record_moved_nowhere_to_be_found_is_let_go(self, redis: RedisClient) -> None:
        """Its identity gone without a forwarding record or a newer key: no place is left to confirm.

        The repairer removes the ``place:`` intent rather than fail on it every round.
        """
        tenant = _tenant("moved-nowhere")
        keys = TenantKeys(tenant)
        member = "place:vf-nowhere"
        await redis.hset(
            keys.intent(member),
            mapping={
                "kind": "place",
                "subject": "vf-nowhere",
                "acct": "acct-x",
                "ref": "ref-nowhere",
                "request": "{}",
            },
        )
        await redis.zadd(keys.intents(), {member: 0})
        repairs = BucketRepairer(LaterRepairs(redis, Scripts(redis), pointing=_Pointing(redis)))
        assert await repairs.repair(tenant) == 1
        assert await redis.zcard(keys.intents()) == 0
        assert not await redis.exists(keys.intent(member), keys.identity("ref-nowhere"))


class _Pointing:
    """``IdentityMover.repointing`` for refs that are no sealed texts: ``OLD`` lives at ``NEW`` now."""

    def __init__(self, redis: RedisClient) -> None:
        self._mover = IdentityMover(RedisIdentityRecords(redis, Scripts(redis)), Sealer(Keyring.generate()))

    async def repointing(self, tenant: str, record: Mapping[str, str]) -> dict[str, tuple[str, str]]:
        changes = await self._mover.repointing(tenant, record)
        if record.get("identity") == OLD:
            changes["identity"] = (OLD, NEW)  # the current key's ref, as a rotation computes it
        return changes


async def _stranger_challenged(redis: RedisClient, label: str) -> tuple[str, list[str], str]:
    """A tenant whose identity at ``OLD`` holds its bound accounts, and a stranger's challenge of it.

    Returns the tenant, its bound accounts and the stranger's account pseudonym (``vf-answer``).
    """
    tenant = _tenant(label)
    accounts = _accounts(tenant)
    await bound_identity(redis, tenant, accounts)
    stranger = pseudonym(f"{tenant}-stranger")
    await _challenged(redis, tenant, stranger)
    return tenant, accounts, stranger


async def _challenged(redis: RedisClient, tenant: str, account_ps: str) -> None:
    """A verification ``vf-answer`` of ``account_ps`` at ``OLD``, its code sent (``bind_crash.DIGEST``)."""
    challenged = replace(
        _stranger(account_ps),
        status=Status.CHALLENGE_SENT,
        step_verifier="sms_otp",
        digest=bind_crash.DIGEST,
        challenge_ttl_ms=60_000,
        max_attempts=5,
    )
    start = NewVerification(
        tenant, "req-answer", "vf-answer", account_ps, challenged, 600_000, 9, "{}", "challenge"
    )
    assert (
        await bind_crash.store_of(redis).commit(start, _never_moved)
    ).record.status is Status.CHALLENGE_SENT


async def _bound_on_the_new_ref(redis: RedisClient, tenant: str, accounts: list[str]) -> None:
    """Every account bound to ``NEW``, its member ``b:``; nothing at ``OLD``, no intent left."""
    keys = TenantKeys(tenant)
    record = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(NEW))).items()}
    assert {k: v for k, v in record.items() if k.startswith("m:")} == {f"m:{a}": f"b:{TAG}" for a in accounts}
    assert {as_text(m) for m in await redis.smembers(keys.identity_accounts(NEW))} == set(accounts)
    for account_ps in accounts:
        assert await redis.hget(keys.account(account_ps), "identity") == NEW.encode()
    assert await redis.exists(keys.identity_accounts(OLD)) == 0
    assert not await redis.hexists(keys.identity(OLD), "m:" + accounts[-1])
    assert await redis.zcard(keys.intents()) == 0
    assert [k async for k in redis.scan_iter(match=keys.intent("*"))] == []


async def _never_moved(moved: bool) -> VerificationRecord:
    raise AssertionError(f"the identity has not moved yet ({moved=})")


def _stranger(account_ps: str, ref: str = OLD) -> VerificationRecord:
    """A verification of an account not yet bound, that found the identity at ``ref``."""
    name = {"name_tag": TAG, "name_binding": "binding-org", "name_binding_seen": "binding-org"}
    return replace(verification(account_ps, name), identity=ref, kind=SubjectKind.ORGANIZATION)


class TestACancellationMidMove:
    """A member cancelled while its identity moves leaves no place behind, at either ref.

    Its cancellation's identity step names the ref its account held when it was read: the old one,
    which the move has copied (or will copy) to the new record and then deletes. The move's
    settling step drops every member whose account did not follow (docs/ARCHITECTURE.md, "3.4
    Re-indexing"); a forwarding record the cancellation then finds is no identity of its own.
    """

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("forward_ms", [0, 60_000])
    async def test_a_move_between_the_cancellations_steps(self, redis: RedisClient, forward_ms: int) -> None:
        tenant = _tenant(f"cancel-then-move-{forward_ms}")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts)
        scripts = Scripts(redis)

        class MovedBetween(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                if (sequence, done) == ("cancel", 1):
                    mover = StepRunner(scripts, step_by_step=True)
                    assert await move(redis, tenant, mover, forward_ms=forward_ms) == "OK"

        store = RedisErasureStore(redis, scripts, steps=MovedBetween(scripts, step_by_step=True))
        assert await store.cancel(tenant, cancellation(accounts[0], "req-cancel")) == DUE_MS
        await _assert_cancelled_mid_move(redis, tenant, accounts[0], accounts[1:])

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("pause_after", range(1, STEPS))
    async def test_a_cancellation_between_the_moves_steps(self, redis: RedisClient, pause_after: int) -> None:
        tenant = _tenant(f"move-then-cancel-{pause_after}")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts)
        scripts = Scripts(redis)
        cancelling = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))

        class CancelledBetween(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                del sequence
                if done == pause_after:
                    assert await cancelling.cancel(tenant, cancellation(accounts[0], "req-cancel")) == DUE_MS

        assert await move(redis, tenant, CancelledBetween(scripts, step_by_step=True)) == "OK"
        await _assert_cancelled_mid_move(redis, tenant, accounts[0], accounts[1:])

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("nth", [1, 2])
    async def test_the_repair_of_a_killed_move_drops_it_too(
        self, redis: RedisClient, own_redis: RedisProcess, nth: int
    ) -> None:
        tenant = _tenant(f"killed-then-cancel-{nth}")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts)
        await asyncio.to_thread(moved_killed_after, own_redis.url, tenant, nth)
        scripts = Scripts(redis)
        cancelling = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))
        assert await cancelling.cancel(tenant, cancellation(accounts[0], "req-cancel")) == DUE_MS
        assert await BucketRepairer(LaterRepairs(redis, scripts)).repair(tenant) == 1
        await _assert_cancelled_mid_move(redis, tenant, accounts[0], accounts[1:])

    @pytest.mark.timeout(60)
    async def test_the_last_member_cancelled_mid_move_queues_the_new_records_erasure(
        self, redis: RedisClient
    ) -> None:
        tenant = _tenant("last-member")
        [only] = _accounts(tenant)[:1]
        await bound_identity(redis, tenant, [only], due_ms=0)
        keys = TenantKeys(tenant)
        await redis.zrem(keys.erasure_due(), f"i:{OLD}")  # bound: no erasure due
        scripts = Scripts(redis)

        class MovedBetween(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                if (sequence, done) == ("cancel", 1):
                    assert await move(redis, tenant, StepRunner(scripts, step_by_step=True)) == "OK"

        store = RedisErasureStore(redis, scripts, steps=MovedBetween(scripts, step_by_step=True))
        assert await store.cancel(tenant, cancellation(only, "req-cancel")) == DUE_MS
        assert await redis.scard(keys.identity_accounts(NEW)) == 0
        assert not [f for f in await redis.hkeys(keys.identity(NEW)) if f.startswith(b"m:")]
        assert await redis.zscore(keys.erasure_due(), f"i:{NEW}") == DUE_MS

    async def test_a_pending_place_stays_for_its_binding_to_resolve(self, redis: RedisClient) -> None:
        """A ``p:`` member's account holds no ref yet: it moves as it is, never taken for a cancelled one."""
        tenant = _tenant("pending-stays")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts[:2])
        keys = TenantKeys(tenant)
        await redis.hset(keys.identity(OLD), f"m:{accounts[2]}", f"p:{TAG}:vf-pending")
        await redis.sadd(keys.identity_accounts(OLD), accounts[2])
        assert await move(redis, tenant, StepRunner(Scripts(redis), step_by_step=True)) == "OK"
        assert await redis.hget(keys.identity(NEW), f"m:{accounts[2]}") == f"p:{TAG}:vf-pending".encode()
        assert await redis.sismember(keys.identity_accounts(NEW), accounts[2])


async def _assert_cancelled_mid_move(
    redis: RedisClient, tenant: str, cancelled: str, others: list[str]
) -> None:
    """The move done and the cancellation too: ``cancelled`` holds no place at either ref.

    The others are members of the new record with their tags, the organization's names kept, no
    erasure queued for either ref but the one that moved, no intent; the freed place is taken by
    one more account, and the one after it is refused at the limit.
    """
    keys = TenantKeys(tenant)
    record = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(NEW))).items()}
    assert {k: v for k, v in record.items() if k.startswith("m:")} == {f"m:{a}": f"b:{TAG}" for a in others}
    assert "incoming" not in record, record
    assert {as_text(m) for m in await redis.smembers(keys.identity_accounts(NEW))} == set(others)
    assert await redis.exists(keys.identity_accounts(OLD)) == 0
    assert not await redis.hexists(keys.account(cancelled), "identity")
    for account_ps in others:
        assert await redis.hget(keys.account(account_ps), "identity") == NEW.encode()
    queue = {as_text(m) for m in await redis.zrange(keys.erasure_due(), 0, -1)}
    assert queue == {f"a:{cancelled}", f"i:{NEW}"}, queue
    assert await redis.hget(keys.organization_names(), NAME_HASH) == TAG.encode()
    assert await redis.zcard(keys.intents()) == 0
    assert status_of(await binding_reply(redis, tenant, f"freed-{cancelled}", NEW, MEMBERS)) == (
        "VERIFIED",
        "",
    )
    assert status_of(await binding_reply(redis, tenant, f"after-{cancelled}", NEW, MEMBERS)) == (
        "REJECTED",
        "BINDING_LIMIT_REACHED",
    )


class TestOneNodeIsOneAtomicStep:
    async def test_a_move_writes_no_intent(self, redis: RedisClient) -> None:
        tenant = _tenant("one-node")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts)
        watching = Watching(Scripts(redis))
        assert watching.chained  # the path under test
        assert await move(redis, tenant, watching) == "OK"
        assert watching.seen == []  # no boundary was crossed
        await assert_moved_once(redis, tenant, accounts)

    async def test_a_merge_keeps_a_binding_over_a_pending_place(self, redis: RedisClient) -> None:
        """Members are unioned: a ``b:`` member wins over a ``p:`` one, whichever side holds it."""
        tenant = _tenant("merge")
        keys = TenantKeys(tenant)
        await redis.hset(keys.identity(OLD), mapping={"name_binding": "b1", "m:a": "p:t:vf-a", "m:b": "b:t"})
        await redis.sadd(keys.identity_accounts(OLD), "a", "b")
        await redis.hset(
            keys.identity(NEW), mapping={"name_binding": "kept", "m:a": "b:t", "m:b": "p:t:vf-b"}
        )
        await redis.sadd(keys.identity_accounts(NEW), "a", "b")
        records = RedisIdentityRecords(redis, Scripts(redis))
        held = await records.held(tenant, OLD)
        assert held is not None
        assert await records.move(tenant, IdentityMove(OLD, NEW, "b2", "", 0, held)) == "OK"
        record = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(NEW))).items()}
        assert record == {"name_binding": "kept", "m:a": "b:t", "m:b": "b:t"}


class TestHostileMoveIntents:
    """A planted ``move:`` intent moves nothing; garbage is logged by its key alone."""

    async def test_a_planted_intent_for_a_resting_identity_moves_nothing(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        tenant = _tenant("planted")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts)
        keys = TenantKeys(tenant)
        member = intent_member(OLD)
        read = {"fields": {"name_binding": "planted", "m:thief": "b:x"}, "members": ["thief"], "due": ""}
        await redis.hset(
            keys.intent(member),
            mapping={
                "kind": "move",
                "subject": member.partition(":")[2],
                "old": OLD,
                "new": NEW,
                "read": json.dumps(read),
                "move": json.dumps({"binding": "planted", "pepper": "", "forward_ms": 0}),
            },
        )
        await redis.zadd(keys.intents(), {member: 0})
        before = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(OLD))).items()}
        with caplog.at_level(logging.WARNING, logger="idverify.repair"):
            assert await BucketRepairer(RedisIntentRepairs(redis, Scripts(redis))).repair(tenant) == 0
        assert {
            as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(OLD))).items()
        } == before
        assert await redis.exists(keys.identity(NEW), keys.identity_accounts(NEW)) == 0
        for account_ps in accounts:
            assert await redis.hget(keys.account(account_ps), "identity") == OLD.encode()
        assert await redis.zcard(keys.intents()) == 0
        assert not await redis.exists(keys.intent(member))
        assert f"intent {keys.intent(member)} dropped: NOT_MOVING" in caplog.text

    async def test_garbage_is_logged_by_key_and_removed(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        tenant = _tenant("garbage")
        keys = TenantKeys(tenant)
        personal = "张三 11010519491231002X"
        other = intent_member("ref-other")
        await redis.zadd(keys.intents(), {f"move:{personal}": 0, other: 0})
        # A record naming another ref than the one its member digests.
        await redis.hset(
            keys.intent(other),
            mapping={
                "kind": "move",
                "subject": other.partition(":")[2],
                "old": OLD,
                "new": NEW,
                "read": json.dumps({"fields": {}, "members": [], "due": ""}),
                "move": json.dumps({"binding": "b", "pepper": "", "forward_ms": 0}),
            },
        )
        with caplog.at_level(logging.WARNING, logger="idverify.repair"):
            assert await BucketRepairer(RedisIntentRepairs(redis, Scripts(redis))).repair(tenant) == 0
        assert await redis.zcard(keys.intents()) == 0
        assert [k async for k in redis.scan_iter(match=keys.intent("*"))] == []
        assert "11010519491231002X" not in caplog.text
        assert f"intent {keys.intent(other)} dropped: MALFORMED" in caplog.text
        assert caplog.text.count("a key this release never writes") == 1

    async def test_two_repairers_take_an_intent_once(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        tenant = _tenant("race")
        accounts = _accounts(tenant)
        await bound_identity(redis, tenant, accounts)
        await asyncio.to_thread(moved_killed_after, own_redis.url, tenant, 2)
        keys = TenantKeys(tenant)
        ((member, score),) = await redis.zrange(keys.intents(), 0, -1, withscores=True)
        due = DueIntent(as_text(member), int(score))
        first, second = LaterRepairs(redis, Scripts(redis)), LaterRepairs(redis, Scripts(redis))
        repairs = await asyncio.gather(first.repair(tenant, due), second.repair(tenant, due))
        assert sorted(r.outcome.value for r in repairs) == [
            RepairOutcome.RACED.value,
            RepairOutcome.REPAIRED.value,
        ]
        await assert_moved_once(redis, tenant, accounts)

"""An organization's names when its last member is cancelled while its identity moves.

Abuse first: the registrar of a new organization. The names of an organization are indexed
tenant-wide while an account is bound to its identity, and the cancellation of the last one drops
them. When that cancellation races a re-indexing (docs/ARCHITECTURE.md, "3.4 Re-indexing"), its
identity step may run on the old ref once the move has left it (``GONE``: no names dropped on its
word), and the move's settling step is then what finds no member left. Whatever the interleaving
(the cancellation's account step before any step of the move and its identity step after any
later one, with and without a forwarding record, either sequence killed -9 and repaired in either
order), the names leave the index: a new organization may approve the name (no ``NAME_TAKEN``) and
a display-name check finds nothing, as for a name nobody holds.

A move may merge into a record already at the new ref (a newer server bound an account of the
same organization there): then the old record's last member, cancelled at any point of the move
(and either sequence killed and repaired in either order), leaves the identity bound, and its
names stay (a new organization is refused ``NAME_TAKEN``) until that account goes too. The
cancellation's identity step on the old record marked ``moving_to`` leaves the decision to the
move's settling step (``MOVING``), on its first run and on a repair's, with or without a merge.

A cancellation killed after its identity step answered ``LAST`` and before its names' step leaves
that word in the record (``last:<tag>``); a re-indexing that then reads the record without members
carries it to the new ref, and the repair on the old ref finds ``GONE``. Moved whole before the
repair, or killed after each of its steps and repaired before or after the cancellation, with and
without a forwarding record: the names go when no member of either ref is left (free for a new
organization), and stay while a member of the organization is at the new ref or was bound to the
emptied record before the move (``NAME_TAKEN``), as a ``LAST`` repeated on the moving record would
have dropped them.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from idverify.domain.subjects import AssuranceLevel, SubjectKind
from idverify.flows.bucket_repair import BucketRepairer, DueIntent
from idverify.flows.display_names import Approval, ChecksLimited, NameHit, NameQuery, NamesApproval
from idverify.flows.verification.port import NewVerification
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text
from idverify.store.display_names import RedisDisplayNames
from idverify.store.erasures import RedisErasureStore
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing import RedisProcess
from tests import bind_crash
from tests.cancel_crash import (
    DUE_MS,
    NAME_HASH,
    TAG,
    LaterRepairs,
    bind_accounts,
    cancellation,
    killed_after,
    pseudonym,
)
from tests.move_crash import NEW, OLD, bound_identity, move, moved_killed_after
from tests.unit.store.test_identity_accounts import verification

# A one-member move's steps: out 1, in 2, the member's account 3, the mark cleared 4 (then, once
# the record is left without members, the names' step, and the old record finished).
AFTER_THE_MOVE = None
# The last member's cancellation across the move: its account's step after the move's step
# ``account`` (0: before the move reads the record), its identity's after step ``identity``
# (AFTER_THE_MOVE: once the move is done). Both at 0 is a cancellation before the move.
INTERLEAVINGS = [
    (account, identity)
    for account in range(5)
    for identity in [*range(account, 5), AFTER_THE_MOVE]
    if (account, identity) != (0, 0)
]
FORWARDING = [0, 60_000]  # no forwarding record (a key rotation), or a pepper move's


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


def _tenant(label: str) -> str:
    return f"names{pseudonym(label)[:8]}"


async def _the_only_member(redis: RedisClient, tenant: str) -> str:
    """One account bound to ``OLD`` under ``TAG``, the organization's name indexed; no erasure due."""
    only = pseudonym(f"{tenant}-only")
    await bound_identity(redis, tenant, [only])
    await redis.zrem(TenantKeys(tenant).erasure_due(), f"i:{OLD}")  # bound: no erasure due
    return only


async def _cancelled_across_the_move(
    redis: RedisClient, tenant: str, only: str, account: int, identity: int | None, forward_ms: int
) -> None:
    """Moves ``OLD`` to ``NEW`` step by step while ``only`` is cancelled as ``INTERLEAVINGS`` says."""
    scripts = Scripts(redis)
    account_done, identity_may_run = asyncio.Event(), asyncio.Event()
    cancelling: list[asyncio.Task[int | None]] = []

    class IdentityStepHeld(StepRunner):
        async def _reached(self, sequence: str, done: int) -> None:
            if (sequence, done) == ("cancel", 1):
                account_done.set()
                await identity_may_run.wait()

    store = RedisErasureStore(redis, scripts, steps=IdentityStepHeld(scripts, step_by_step=True))

    async def after(step: int | None) -> None:
        if step == account:
            cancelling.append(asyncio.create_task(store.cancel(tenant, cancellation(only, "req-cancel"))))
            await account_done.wait()
        if step == identity:
            identity_may_run.set()
            assert await cancelling[0] == DUE_MS

    class Interleaved(StepRunner):
        async def _reached(self, sequence: str, done: int) -> None:
            del sequence
            await after(done)

    await after(0)
    assert await move(redis, tenant, Interleaved(scripts, step_by_step=True), forward_ms=forward_ms) == "OK"
    await after(AFTER_THE_MOVE)


class _InOrder(LaterRepairs):
    """The repairer once every intent fell due, taking the intents of kind ``first`` before the others.

    As when one sequence was killed long before the other: the repairers take intents by due time.
    """

    def __init__(self, redis: RedisClient, scripts: Scripts, first: str) -> None:
        super().__init__(redis, scripts)
        self._first = f"{first}:"

    async def due(self, tenant: str, until_ms: int, limit: int) -> list[DueIntent]:
        intents = await super().due(tenant, until_ms, limit)
        return sorted(intents, key=lambda intent: not intent.member.startswith(self._first))


class TestTheLastMemberCancelledMidMove:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("forward_ms", FORWARDING)
    @pytest.mark.parametrize(("account", "identity"), INTERLEAVINGS)
    async def test_every_interleaving_drops_the_names(
        self, redis: RedisClient, account: int, identity: int | None, forward_ms: int
    ) -> None:
        tenant = _tenant(f"across-{account}-{identity}-{forward_ms}")
        only = await _the_only_member(redis, tenant)
        await _cancelled_across_the_move(redis, tenant, only, account, identity, forward_ms)
        await _assert_last_cancelled(redis, tenant, only, forward_ms=forward_ms)

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("forward_ms", FORWARDING)
    async def test_a_cancellation_killed_after_its_account_step_then_repaired_past_the_move(
        self, redis: RedisClient, own_redis: RedisProcess, forward_ms: int
    ) -> None:
        tenant = _tenant(f"cancel-killed-{forward_ms}")
        only = await _the_only_member(redis, tenant)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, cancellation(only, "req-cancel"), 1)
        scripts = Scripts(redis)
        assert (
            await move(redis, tenant, StepRunner(scripts, step_by_step=True), forward_ms=forward_ms) == "OK"
        )
        # The cancellation's identity step finds the old ref moved away: GONE, nothing of its own.
        assert await BucketRepairer(LaterRepairs(redis, scripts)).repair(tenant) == 1
        await _assert_last_cancelled(redis, tenant, only, forward_ms=forward_ms)

    @pytest.mark.timeout(120)
    @pytest.mark.parametrize("first", ["move", "unbind"])
    @pytest.mark.parametrize("nth", range(1, 6))
    async def test_both_killed_then_repaired(
        self, redis: RedisClient, own_redis: RedisProcess, nth: int, first: str
    ) -> None:
        """The cancellation killed after its account step, the move after its ``nth`` (5: the names')."""
        forward_ms = 60_000 if nth % 2 else 0
        tenant = _tenant(f"both-killed-{nth}-{first}")
        only = await _the_only_member(redis, tenant)
        await _both_killed(own_redis, tenant, only, cancelled_after=1, moved_after=nth, forward_ms=forward_ms)
        keys = TenantKeys(tenant)
        assert await redis.zcard(keys.intents()) == 2
        repairer = BucketRepairer(_InOrder(redis, Scripts(redis), first))
        assert await repairer.repair(tenant) == 2
        await _assert_last_cancelled(redis, tenant, only, forward_ms=forward_ms)
        # A second pass finds nothing, and dropping the names again would find none.
        assert await repairer.repair(tenant) == 0

    @pytest.mark.timeout(60)
    async def test_the_last_of_two_cancelled_at_the_new_ref(self, redis: RedisClient) -> None:
        """One member's account step before the move, the other cancelled whole once pointed at ``NEW``.

        The second's identity step there still finds the first, whom the move copied (``KEPT``);
        the first's runs on the old ref after the move (``GONE``): the settling step finds neither.
        """
        tenant = _tenant("two-members")
        first, second = sorted(pseudonym(f"{tenant}-{n}") for n in range(2))
        await bound_identity(redis, tenant, [first, second])
        await redis.zrem(TenantKeys(tenant).erasure_due(), f"i:{OLD}")
        scripts = Scripts(redis)
        account_done, identity_may_run = asyncio.Event(), asyncio.Event()

        class IdentityStepHeld(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                if (sequence, done) == ("cancel", 1):
                    account_done.set()
                    await identity_may_run.wait()

        held = RedisErasureStore(redis, scripts, steps=IdentityStepHeld(scripts, step_by_step=True))
        cancelling = asyncio.create_task(held.cancel(tenant, cancellation(first, "req-first")))
        await account_done.wait()
        whole = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))

        class SecondCancelledOnceMoved(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                del sequence
                if done == 4:  # out, in, both members' accounts
                    assert await redis.hget(TenantKeys(tenant).account(second), "identity") == NEW.encode()
                    assert await whole.cancel(tenant, cancellation(second, "req-second")) == DUE_MS

        assert await move(redis, tenant, SecondCancelledOnceMoved(scripts, step_by_step=True)) == "OK"
        identity_may_run.set()
        assert await cancelling == DUE_MS
        await _assert_last_cancelled(redis, tenant, first, also=[second])


class TestAMergeKeepsTheNames:
    """The move merges into a record holding ``resident``, of the same organization, at ``NEW``.

    Whenever the old record's last member is cancelled, the identity is still bound at the new
    ref: the names stay, and leave with ``resident``'s cancellation.
    """

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("forward_ms", FORWARDING)
    @pytest.mark.parametrize(("account", "identity"), INTERLEAVINGS)
    async def test_every_interleaving_keeps_them_until_the_last_goes(
        self, redis: RedisClient, account: int, identity: int | None, forward_ms: int
    ) -> None:
        """``only``'s account step after the move's step ``account``, its identity's after ``identity``."""
        tenant = _tenant(f"merge-across-{account}-{identity}-{forward_ms}")
        only, resident = await _merging(redis, tenant)
        await _cancelled_across_the_move(redis, tenant, only, account, identity, forward_ms)
        await _assert_kept_by(redis, tenant, resident, cancelled=only, forward_ms=forward_ms)
        await _the_last_goes(redis, tenant, resident, cancelled=only)

    @pytest.mark.timeout(120)
    @pytest.mark.parametrize("first", ["move", "unbind"])
    @pytest.mark.parametrize("nth", range(1, 5))
    async def test_both_killed_then_repaired(
        self, redis: RedisClient, own_redis: RedisProcess, nth: int, first: str
    ) -> None:
        """The cancellation killed after its account step, the move after its ``nth`` (4: settled)."""
        forward_ms = 60_000 if nth % 2 else 0
        tenant = _tenant(f"merge-both-killed-{nth}-{first}")
        only, resident = await _merging(redis, tenant)
        await _both_killed(own_redis, tenant, only, cancelled_after=1, moved_after=nth, forward_ms=forward_ms)
        assert await redis.zcard(TenantKeys(tenant).intents()) == 2
        repairer = BucketRepairer(_InOrder(redis, Scripts(redis), first))
        assert await repairer.repair(tenant) == 2
        await _assert_kept_by(redis, tenant, resident, cancelled=only, forward_ms=forward_ms)
        assert await repairer.repair(tenant) == 0
        await _the_last_goes(redis, tenant, resident, cancelled=only)

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("step", [2, 3, 4, AFTER_THE_MOVE])
    async def test_the_resident_cancelled_at_the_new_ref_once_the_record_arrived(
        self, redis: RedisClient, step: int | None
    ) -> None:
        """Its identity step finds the arrived member beside it (``KEPT``): the names stay with ``only``."""
        tenant = _tenant(f"resident-{step}")
        only, resident = await _merging(redis, tenant)
        scripts = Scripts(redis)
        cancelling = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))

        class ResidentCancelled(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                del sequence
                if done == step:
                    assert await cancelling.cancel(tenant, cancellation(resident, "req-resident")) == DUE_MS

        assert await move(redis, tenant, ResidentCancelled(scripts, step_by_step=True)) == "OK"
        if step is AFTER_THE_MOVE:
            assert await cancelling.cancel(tenant, cancellation(resident, "req-resident")) == DUE_MS
        keys = TenantKeys(tenant)
        assert {as_text(m) for m in await redis.smembers(keys.identity_accounts(NEW))} == {only}
        assert await redis.hget(keys.account(only), "identity") == NEW.encode()
        await _assert_the_name_is_held(redis, tenant)
        await _the_last_goes(redis, tenant, only, cancelled=resident)

    @pytest.mark.timeout(60)
    async def test_both_cancelled_mid_move_one_at_each_ref(self, redis: RedisClient) -> None:
        """``only`` on the marked old record, ``resident`` on the arrived new one: the settling step ends it.

        Neither cancellation's identity step finds the identity without a member; the settling step
        drops ``only`` from the merged record, finds no one left, and the names go.
        """
        tenant = _tenant("merge-both")
        only, resident = await _merging(redis, tenant)
        scripts = Scripts(redis)
        cancelling = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))

        class BothCancelled(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                del sequence
                if done == 1:
                    assert await cancelling.cancel(tenant, cancellation(only, "req-only")) == DUE_MS
                    await _assert_the_name_is_held(redis, tenant, "refused-mid-move")
                if done == 2:
                    assert await cancelling.cancel(tenant, cancellation(resident, "req-resident")) == DUE_MS

        assert await move(redis, tenant, BothCancelled(scripts, step_by_step=True)) == "OK"
        await _assert_last_cancelled(redis, tenant, only, also=[resident])


class TestTheIdentityStepOnTheMovingRecord:
    """A cancellation's identity step on the old record marked ``moving_to``, run again by a repair.

    While the record still holds the member, every run leaves the decision to the move's settling
    step; once the member left it before the move read it (the first run answered ``LAST``), the
    word that run left in the record moved with it, and a run leaves the decision there too.
    """

    @pytest.mark.timeout(120)
    @pytest.mark.parametrize("merge", [False, True])
    @pytest.mark.parametrize("nth", range(1, 5))
    async def test_an_identity_step_run_on_the_moving_record_then_repeated(
        self, redis: RedisClient, own_redis: RedisProcess, nth: int, merge: bool
    ) -> None:
        """Its worker died after the identity step ran on the marked old record; the repair runs it again.

        Both runs leave the decision to the move's settling step, which finds ``resident`` (the
        names stay) or, without a merge, no one (they go).
        """
        await _identity_step_on_the_moving_record(
            redis, own_redis, _tenant(f"repeated-{nth}-{merge}"), merge, cancelled_after=1, moved_after=nth
        )

    @pytest.mark.timeout(120)
    @pytest.mark.parametrize("merge", [False, True])
    @pytest.mark.parametrize("nth", range(1, 4))
    async def test_a_last_answered_before_the_move_is_left_to_the_settling_step(
        self, redis: RedisClient, own_redis: RedisProcess, nth: int, merge: bool
    ) -> None:
        """The cancellation emptied the old record and died before its names' step; the move read it empty.

        The move carries the record's word (its ``last:`` mark) to the new ref, where only the
        settling step sees the members of both: the repair's identity step on the marked record
        answers ``MOVING`` and drops nothing. Without a merge the settling step finds no one and
        the names go; with one, ``resident`` keeps them (a ``LAST`` here dropped them). The move
        was killed after its first (marked), second (arrived) or third (settled) step.
        """
        await _identity_step_on_the_moving_record(
            redis, own_redis, _tenant(f"last-before-{nth}-{merge}"), merge, cancelled_after=2, moved_after=nth
        )


async def _both_killed(
    own_redis: RedisProcess,
    tenant: str,
    only: str,
    *,
    cancelled_after: int,
    moved_after: int,
    forward_ms: int = 0,
) -> None:
    """``only``'s cancellation killed after its step ``cancelled_after``, the move after ``moved_after``."""
    await asyncio.to_thread(
        killed_after, own_redis.url, tenant, cancellation(only, "req-cancel"), cancelled_after
    )
    await asyncio.to_thread(moved_killed_after, own_redis.url, tenant, moved_after, forward_ms=forward_ms)


async def _identity_step_on_the_moving_record(
    redis: RedisClient,
    own_redis: RedisProcess,
    tenant: str,
    merge: bool,
    *,
    cancelled_after: int,
    moved_after: int,
) -> None:
    """The identity step run on the old record a move marked answers ``MOVING``, and so does its repair.

    The only member's cancellation was killed after ``cancelled_after`` steps, the move after
    ``moved_after``. The repair leaves the names to the settling step: gone without a merge, kept
    by the resident with one.
    """
    only = await _the_only_member(redis, tenant)
    resident = await _resident_at_new(redis, tenant) if merge else None
    await _both_killed(own_redis, tenant, only, cancelled_after=cancelled_after, moved_after=moved_after)
    keys = TenantKeys(tenant)
    assert await redis.hget(keys.identity(OLD), "moving_to") == NEW.encode()
    ran = await Scripts(redis).run(
        "cancel_identity",
        [keys.identity(OLD), keys.identity_accounts(OLD), keys.erasure_due()],
        [only, OLD, DUE_MS, TAG],
    )
    assert ran == [b"MOVING"]
    await _assert_the_name_is_held(redis, tenant, "refused-mid-move")
    repairer = BucketRepairer(_InOrder(redis, Scripts(redis), "unbind"))
    assert await repairer.repair(tenant) == 2
    if resident is None:
        await _assert_last_cancelled(redis, tenant, only)
    else:
        # Emptied before the move read it, the old record had queued its erasure, which moved along.
        await _assert_kept_by(redis, tenant, resident, cancelled=only, identity_due=cancelled_after == 2)
        await _the_last_goes(redis, tenant, resident, cancelled=only)


class TestALastKilledBeforeItsNames:
    """The last member's cancellation answered ``LAST`` on the old record and died before its names' step.

    A re-indexing then reads the record without members and moves it; the repair's identity step
    on the old ref finds the forwarding record or nothing (``GONE``). Whatever comes first (the
    move whole, or killed after each of its steps and repaired before or after the cancellation,
    with and without a forwarding record), the names go when no member of either ref is left, and
    stay while one is: an account of the organization already at the new ref (a merge), or one
    bound to the emptied record before the move read it.
    """

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("forward_ms", FORWARDING)
    async def test_the_move_finished_before_the_repair(
        self, redis: RedisClient, own_redis: RedisProcess, forward_ms: int
    ) -> None:
        tenant = _tenant(f"last-moved-{forward_ms}")
        only = await _the_only_member(redis, tenant)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, cancellation(only, "req-cancel"), 2)
        await _assert_the_name_is_held(redis, tenant, "refused-before-the-move")
        scripts = Scripts(redis)
        assert (
            await move(redis, tenant, StepRunner(scripts, step_by_step=True), forward_ms=forward_ms) == "OK"
        )
        assert await BucketRepairer(LaterRepairs(redis, scripts)).repair(tenant) == 1
        await _assert_last_cancelled(redis, tenant, only, forward_ms=forward_ms)

    @pytest.mark.timeout(120)
    @pytest.mark.parametrize("forward_ms", FORWARDING)
    @pytest.mark.parametrize("first", ["move", "unbind"])
    @pytest.mark.parametrize("nth", range(1, 5))
    async def test_both_killed_then_repaired(
        self, redis: RedisClient, own_redis: RedisProcess, nth: int, first: str, forward_ms: int
    ) -> None:
        """The move killed after its ``nth`` step: out, in, settled, the names' (the record's ``LAST``)."""
        tenant = _tenant(f"last-both-{nth}-{first}-{forward_ms}")
        only = await _the_only_member(redis, tenant)
        await _both_killed(own_redis, tenant, only, cancelled_after=2, moved_after=nth, forward_ms=forward_ms)
        intents = await redis.zcard(TenantKeys(tenant).intents())
        repairer = BucketRepairer(_InOrder(redis, Scripts(redis), first))
        assert await repairer.repair(tenant) == intents
        await _assert_last_cancelled(redis, tenant, only, forward_ms=forward_ms)
        assert await repairer.repair(tenant) == 0

    @pytest.mark.timeout(120)
    @pytest.mark.parametrize("forward_ms", FORWARDING)
    @pytest.mark.parametrize("first", ["move", "unbind"])
    @pytest.mark.parametrize("nth", range(1, 5))
    async def test_merged_into_a_member_the_names_stay(
        self, redis: RedisClient, own_redis: RedisProcess, nth: int, first: str, forward_ms: int
    ) -> None:
        """Into a record holding ``resident``: killed after out, in, settled or finished (4: done)."""
        tenant = _tenant(f"last-merge-{nth}-{first}-{forward_ms}")
        only, resident = await _merging(redis, tenant)
        await _both_killed(own_redis, tenant, only, cancelled_after=2, moved_after=nth, forward_ms=forward_ms)
        intents = await redis.zcard(TenantKeys(tenant).intents())
        repairer = BucketRepairer(_InOrder(redis, Scripts(redis), first))
        assert await repairer.repair(tenant) == intents
        await _assert_kept_by(
            redis, tenant, resident, cancelled=only, forward_ms=forward_ms, identity_due=True
        )
        assert await repairer.repair(tenant) == 0
        await _the_last_goes(redis, tenant, resident, cancelled=only)

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("forward_ms", FORWARDING)
    async def test_merged_into_a_record_without_members_the_names_go(
        self, redis: RedisClient, own_redis: RedisProcess, forward_ms: int
    ) -> None:
        """``NEW`` holds a record and no member, as a binding whose commit was refused leaves it.

        The old record's word merges into it (the record is not created anew), and the settling
        step finds neither ref's member.
        """
        tenant = _tenant(f"last-merge-empty-{forward_ms}")
        only = await _the_only_member(redis, tenant)
        keys = TenantKeys(tenant)
        await redis.hset(
            keys.identity(NEW), mapping={"name_binding": "binding-org", "pepper": "", "created_ms": "1"}
        )
        await asyncio.to_thread(killed_after, own_redis.url, tenant, cancellation(only, "req-cancel"), 2)
        scripts = Scripts(redis)
        assert (
            await move(redis, tenant, StepRunner(scripts, step_by_step=True), forward_ms=forward_ms) == "OK"
        )
        assert await BucketRepairer(LaterRepairs(redis, scripts)).repair(tenant) == 1
        await _assert_last_cancelled(redis, tenant, only, forward_ms=forward_ms)

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("forward_ms", FORWARDING)
    async def test_an_account_bound_to_the_emptied_record_keeps_the_names(
        self, redis: RedisClient, own_redis: RedisProcess, forward_ms: int
    ) -> None:
        """``newer`` binds to the emptied old record, indexing the names again, before the move reads it.

        The record's word from the cancellation stays in it and moves with it; the settling step
        finds ``newer`` and the names stay, as the repair's ``GONE`` leaves them.
        """
        tenant = _tenant(f"last-rebound-{forward_ms}")
        only = await _the_only_member(redis, tenant)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, cancellation(only, "req-cancel"), 2)
        newer = pseudonym(f"{tenant}-newer")
        await bind_accounts(redis, tenant, [newer])
        scripts = Scripts(redis)
        assert (
            await move(redis, tenant, StepRunner(scripts, step_by_step=True), forward_ms=forward_ms) == "OK"
        )
        assert await BucketRepairer(LaterRepairs(redis, scripts)).repair(tenant) == 1
        await _assert_kept_by(redis, tenant, newer, cancelled=only, forward_ms=forward_ms, identity_due=True)
        await _the_last_goes(redis, tenant, newer, cancelled=only)


async def _merging(redis: RedisClient, tenant: str) -> tuple[str, str]:
    """``only`` bound to ``OLD`` and ``resident`` to ``NEW``, both of the organization ``TAG``."""
    only = await _the_only_member(redis, tenant)
    return only, await _resident_at_new(redis, tenant)


async def _resident_at_new(redis: RedisClient, tenant: str) -> str:
    """An account of the organization bound to ``NEW`` before the move (a newer server's binding)."""
    resident = pseudonym(f"{tenant}-resident")
    await bind_accounts(redis, tenant, [resident], ref=NEW)
    return resident


async def _assert_kept_by(
    redis: RedisClient,
    tenant: str,
    resident: str,
    *,
    cancelled: str,
    forward_ms: int = 0,
    identity_due: bool = False,
) -> None:
    """The move and the cancellation of ``cancelled`` done; ``resident`` alone bound, at ``NEW``.

    No place left to ``cancelled`` at either ref, no intent, and the organization's name held. No
    erasure queued for the identity, unless ``identity_due``: the old record was left without
    members before the move read it, and its erasure moved with it (the identity's erasure keeps
    a record in use).
    """
    keys = TenantKeys(tenant)
    record = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(NEW))).items()}
    assert {k: v for k, v in record.items() if k.startswith("m:")} == {f"m:{resident}": f"b:{TAG}"}, record
    assert "incoming" not in record, record
    assert {as_text(m) for m in await redis.smembers(keys.identity_accounts(NEW))} == {resident}
    assert await redis.exists(keys.identity_accounts(OLD)) == 0
    old = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(OLD))).items()}
    assert old == ({"moved_to": NEW, "binding_was": "binding-org"} if forward_ms else {}), old
    assert not await redis.hexists(keys.account(cancelled), "identity")
    assert await redis.hget(keys.account(resident), "identity") == NEW.encode()
    queue = {as_text(m): int(s) for m, s in await redis.zrange(keys.erasure_due(), 0, -1, withscores=True)}
    assert queue == {f"a:{cancelled}": DUE_MS, **({f"i:{NEW}": DUE_MS} if identity_due else {})}, queue
    assert await redis.zcard(keys.intents()) == 0
    await _assert_the_name_is_held(redis, tenant)


async def _the_last_goes(redis: RedisClient, tenant: str, last: str, *, cancelled: str) -> None:
    """``last``, the identity's one member left, cancelled at ``NEW``: the names leave with it."""
    scripts = Scripts(redis)
    store = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))
    assert await store.cancel(tenant, cancellation(last, "req-last")) == DUE_MS
    keys = TenantKeys(tenant)
    assert await redis.scard(keys.identity_accounts(NEW)) == 0
    queue = {as_text(m): int(s) for m, s in await redis.zrange(keys.erasure_due(), 0, -1, withscores=True)}
    assert queue == {f"a:{cancelled}": DUE_MS, f"a:{last}": DUE_MS, f"i:{NEW}": DUE_MS}, queue
    assert await redis.zcard(keys.intents()) == 0
    await _assert_the_name_is_free(redis, tenant)


async def _assert_the_name_is_held(redis: RedisClient, tenant: str, newcomer: str = "refused") -> None:
    """``NAME_HASH`` is ``TAG``'s: a check finds it, and a new organization (``newcomer``) is refused it."""
    keys = TenantKeys(tenant)
    assert await redis.hget(keys.organization_names(), NAME_HASH) == TAG.encode()
    names = RedisDisplayNames(Scripts(redis))
    looked = await names.look_up(
        NameQuery(tenant, pseudonym(f"{tenant}-reader"), "caller", (NAME_HASH,), 100, 86_400_000)
    )
    assert not isinstance(looked, ChecksLimited)
    assert looked.hits == (NameHit(0, frozenset({TAG}), ""),)
    account = await _new_organization(redis, tenant, newcomer)
    approval = NamesApproval(tenant, account, (NAME_HASH,), (), AssuranceLevel.LOW, {"principal": "t/admin"})
    assert await names.approve(approval) == (Approval.NAME_TAKEN, 0)


async def _assert_last_cancelled(
    redis: RedisClient, tenant: str, only: str, *, forward_ms: int = 0, also: list[str] | None = None
) -> None:
    """The move and the cancellation of its last member (``only``, and ``also``) both done.

    No member at either ref, no ``incoming`` mark, the new record's erasure queued beside the
    accounts', ``OLD`` gone or a forwarding record, no intent; and the organization's name free.
    """
    keys = TenantKeys(tenant)
    cancelled = [only, *(also or [])]
    record = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(NEW))).items()}
    assert not [field for field in record if field.startswith("m:")], record
    assert "incoming" not in record, record
    assert await redis.scard(keys.identity_accounts(NEW)) == 0
    assert await redis.exists(keys.identity_accounts(OLD)) == 0
    old = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(OLD))).items()}
    assert old == ({"moved_to": NEW, "binding_was": "binding-org"} if forward_ms else {}), old
    for account_ps in cancelled:
        assert not await redis.hexists(keys.account(account_ps), "identity")
    queue = {as_text(m): int(s) for m, s in await redis.zrange(keys.erasure_due(), 0, -1, withscores=True)}
    assert queue == {**{f"a:{a}": DUE_MS for a in cancelled}, f"i:{NEW}": DUE_MS}, queue
    assert await redis.zcard(keys.intents()) == 0
    await _assert_the_name_is_free(redis, tenant)


async def _assert_the_name_is_free(redis: RedisClient, tenant: str) -> None:
    """``NAME_HASH`` is nobody's: a check finds nothing, and a new organization approves it."""
    keys = TenantKeys(tenant)
    assert not await redis.hexists(keys.organization_names(), NAME_HASH)
    assert not await redis.exists(keys.organization_own_names(TAG))
    names = RedisDisplayNames(Scripts(redis))
    looked = await names.look_up(
        NameQuery(tenant, pseudonym(f"{tenant}-reader"), "caller", (NAME_HASH,), 100, 86_400_000)
    )
    assert not isinstance(looked, ChecksLimited)
    assert looked.hits == ()
    newcomer = await _new_organization(redis, tenant, "newcomer")
    approval = NamesApproval(tenant, newcomer, (NAME_HASH,), (), AssuranceLevel.LOW, {"principal": "t/admin"})
    assert await names.approve(approval) == (Approval.APPROVED, 1)


async def _new_organization(redis: RedisClient, tenant: str, label: str) -> str:
    """An organization of another identity and tag, established with a name of its own; its account."""
    account_ps = pseudonym(f"{tenant}-{label}")
    name = {"name_tag": "tag-newcomer", "name_binding": "binding-newcomer", "org_names": "cd" * 16}
    record: VerificationRecord = replace(
        verification(account_ps, name, establishes=True),
        identity="ref-newcomer",
        kind=SubjectKind.ORGANIZATION,
    )
    vid = f"vf-{account_ps}"
    start = NewVerification(tenant, f"req-{vid}", vid, account_ps, record, 60_000, 3, "{}", "bind")

    async def unmoved(moved: bool) -> VerificationRecord:
        raise AssertionError(f"no identity moves here ({moved=})")

    done = await bind_crash.store_of(redis).commit(start, unmoved)
    assert done.record.status is Status.VERIFIED, done.record
    return account_ps

"""A right answer's binding as steps (docs/ARCHITECTURE.md, "3.1 Binding"), its intents and repairs.

Abuse first. A worker killed -9 after each step of a binding run one by one (the path a Cluster
takes, run here on a standalone redis-server through the test-only ``step_by_step`` runner) leaves
intents that the repairer finishes, never undoes: the verification VERIFIED, the account bound
once, its member ``b:``, no ``p:`` member and no intent left, each entry once. Many right answers
for one identity at once take exactly ``limit`` places. A planted ``bind:`` intent binds nothing;
planted ``p:`` members without their intents take no place.
On one node an answer is one atomic script that writes no intent, and its entries are those of
the steps, byte for byte.

CI runs ``CI_ROUNDS`` round of every boundary; ``IDVERIFY_CRASH_LOOPS=20`` runs the long loop (a
slow test, docs/RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from idverify.flows.bucket_repair import BucketRepairer, DueIntent, RepairOutcome
from idverify.flows.erasure import EraseOutcome, ErasureItem, ErasureKind
from idverify.flows.verification.port import WriteOutcome
from idverify.flows.verification.record import Status
from idverify.store.bucket_steps import StepRunner
from idverify.store.buckets import search_layout
from idverify.store.connection import RedisClient, as_text
from idverify.store.erasures import RedisErasureStore
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing import RedisProcess
from tests.bind_crash import (
    DIGEST,
    ESTABLISHED,
    ESTABLISHING,
    ORG_NAMES,
    OWNER,
    PLAIN,
    REF,
    SQUATTER,
    STARTED,
    answer,
    assert_bound_once,
    assert_nothing_pending,
    assert_refused_once,
    assert_superseded_once,
    bind,
    challenge,
    killed_after,
    names_indexed,
    started_id,
    store_of,
)
from tests.cancel_crash import DUE_MS, LaterRepairs, Watching, cancellation, entries, pseudonym
from tests.sequencer_crash import loop_rounds

CI_ROUNDS = 1
ROUNDS = loop_rounds(CI_ROUNDS)
# (whether the answer establishes a claim over a squatter, the steps that run before the kill): a
# plain binding runs judge, place, commit and confirm; an establishing one supersedes between.
BOUNDARIES = [(False, n) for n in (1, 2, 3)] + [(True, n) for n in (1, 2, 3, 4)]


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


def _tenant(label: str) -> str:
    return f"bind{pseudonym(label)[:8]}"


def _stepwise(redis: RedisClient) -> StepRunner:
    return StepRunner(Scripts(redis), step_by_step=True)


async def _squatted(redis: RedisClient, tenant: str) -> str:
    """A squatter bound under another name of the document; its account pseudonym."""
    squatter = pseudonym(f"{tenant}-squatter")
    await bind(redis, tenant, squatter, SQUATTER)
    return squatter


class TestAWorkerKilledBetweenStepsIsRepaired:
    """The worker killed -9 after each step; the repairer finishes, never undoes, once."""

    @pytest.mark.timeout(60 + 40 * ROUNDS)
    async def test_every_boundary_every_round(self, redis: RedisClient, own_redis: RedisProcess) -> None:
        later = BucketRepairer(LaterRepairs(redis, Scripts(redis)))
        for round_ in range(ROUNDS):
            for establishing, nth in BOUNDARIES:
                tenant = _tenant(f"{round_}-{establishing}-{nth}")
                squatter = await _squatted(redis, tenant) if establishing else ""
                target = pseudonym(f"{tenant}-a")
                vid = await challenge(redis, tenant, target, OWNER, establishes=establishing)
                where = f"round {round_}, killed after step {nth}, establishing: {establishing}"
                await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, nth)
                assert await redis.zcard(TenantKeys(tenant).intents()) >= 1, where
                assert await later.repair(tenant) >= 1, where
                await assert_bound_once(
                    redis,
                    tenant,
                    vid,
                    target,
                    OWNER["name_tag"],
                    types=ESTABLISHING if establishing else PLAIN,
                )
                if establishing:
                    await assert_superseded_once(redis, tenant, squatter, vid)
                # A second pass finds nothing: the repair is done once.
                assert await later.repair(tenant) == 0, where

    async def test_a_start_in_bind_mode_killed_after_each_step_is_repaired(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """A method without a challenge: the start is the account's step."""
        later = BucketRepairer(LaterRepairs(redis, Scripts(redis)))
        for nth in (1, 2, 3):
            tenant = _tenant(f"start-{nth}")
            target = pseudonym(f"{tenant}-a")
            await asyncio.to_thread(killed_after, own_redis.url, tenant, "", nth, start=target)
            assert await redis.zcard(TenantKeys(tenant).intents()) >= 1, nth
            assert await later.repair(tenant) >= 1, nth
            types = ["account.bound", "verification.verified"]
            vid = started_id(tenant, target)
            await assert_bound_once(
                redis, tenant, vid, target, OWNER["name_tag"], types=types, started=["verification.started"]
            )

    async def test_a_worker_that_lived_leaves_nothing_pending(self, redis: RedisClient) -> None:
        tenant = _tenant("lived")
        squatter = await _squatted(redis, tenant)
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER, establishes=True)
        written = await answer(store_of(redis, runner=_stepwise(redis)), tenant, vid)
        assert written.record.status is Status.VERIFIED, written
        await assert_bound_once(redis, tenant, vid, target, OWNER["name_tag"], types=ESTABLISHING)
        await assert_superseded_once(redis, tenant, squatter, vid)

    async def test_a_repeated_answer_during_a_pending_binding_finishes_it(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        tenant = _tenant("repeat")
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 2)
        written = await answer(store_of(redis, runner=_stepwise(redis)), tenant, vid)
        assert written.record.status is Status.VERIFIED, written
        await assert_bound_once(redis, tenant, vid, target, OWNER["name_tag"], types=PLAIN)

    async def test_a_cancellation_during_a_pending_binding_takes_the_place_back(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """The one undo: the account cancelled after the place was taken leaves no member."""
        tenant = _tenant("cancelled")
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 2)
        keys = TenantKeys(tenant)
        assert await redis.sismember(keys.identity_accounts(REF), target)  # the pending place
        await redis.hset(keys.account(target), "cancelled_ms", "1")
        assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) >= 1
        record = await redis.hgetall(keys.verification(vid))
        assert (record[b"status"], record[b"reason"]) == (b"REJECTED", b"ACCOUNT_CANCELLED")
        assert not await redis.sismember(keys.identity_accounts(REF), target)
        assert not await redis.hexists(keys.identity(REF), f"m:{target}")
        assert not await redis.hexists(keys.account(target), "identity")
        await assert_nothing_pending(redis, tenant)
        mine = [e["type"] for e in await entries(redis, tenant) if e["verification_id"] == vid]
        assert mine[len(STARTED) :] == ["challenge.passed", "binding.refused", "verification.rejected"]

    async def test_a_cancel_account_during_a_pending_binding_ends_it_once(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """CancelAccount's own steps end the verification in flight; the repair only clears up."""
        tenant = _tenant("cancel-account")
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER)
        keys = TenantKeys(tenant)
        # A start's admission lists the account's live verifications, which a cancellation ends.
        await redis.zadd(keys.account_verifications(target), {vid: DUE_MS})
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 2)
        await RedisErasureStore(redis, Scripts(redis)).cancel(tenant, cancellation(target, "cancel-1"))
        assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) == 2
        record = await redis.hgetall(keys.verification(vid))
        assert (record[b"status"], record[b"reason"]) == (b"REJECTED", b"ACCOUNT_CANCELLED")
        assert b"binding" not in record
        assert await redis.pttl(keys.verification(vid)) > 0
        assert not await redis.hexists(keys.account(target), "binding")
        assert not await redis.exists(keys.identity_accounts(REF))
        await assert_nothing_pending(redis, tenant)
        mine = [e["type"] for e in await entries(redis, tenant) if e["verification_id"] == vid]
        assert mine[len(STARTED) :] == ["challenge.passed", "verification.rejected"]

    async def test_a_place_is_left_alone_while_its_binding_is_to_finish(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """Taken first, the identity's intent neither confirms nor frees a place still binding."""
        tenant = _tenant("place-first")
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 2)
        keys = TenantKeys(tenant)
        repairs = LaterRepairs(redis, Scripts(redis))
        member = f"place:{vid}"
        score = int(await redis.zscore(keys.intents(), member) or 0)
        assert (await repairs.repair(tenant, DueIntent(member, score))).outcome is RepairOutcome.RACED
        pending = f"p:{OWNER['name_tag']}:{vid}".encode()
        assert await redis.hget(keys.identity(REF), f"m:{target}") == pending
        assert await BucketRepairer(repairs).repair(tenant) >= 1
        await assert_bound_once(redis, tenant, vid, target, OWNER["name_tag"], types=PLAIN)

    async def test_a_confirm_after_its_verification_is_gone_keeps_a_bound_place(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """Killed after the commit, repaired after the session ended: the account says it is bound.

        Reading the vanished verification as refused would free the place of a bound account,
        one binding over the limit.
        """
        tenant = _tenant("gone-bound")
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 3)  # judge, place, commit
        keys = TenantKeys(tenant)
        assert 0 < await redis.pttl(keys.verification(vid)) <= 1800 * 1000  # its session, not a day
        await redis.delete(keys.verification(vid))
        assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) >= 1
        assert await redis.hget(keys.identity(REF), f"m:{target}") == f"b:{OWNER['name_tag']}".encode()
        assert await redis.sismember(keys.identity_accounts(REF), target)
        assert await redis.hget(keys.account(target), "identity") == REF.encode()
        await assert_nothing_pending(redis, tenant)

    async def test_a_place_whose_verification_is_gone_unbound_is_freed(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        tenant = _tenant("gone-unbound")
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 2)  # judge, place
        keys = TenantKeys(tenant)
        await redis.delete(keys.verification(vid))
        await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant)
        assert not await redis.hexists(keys.identity(REF), f"m:{target}")
        assert not await redis.sismember(keys.identity_accounts(REF), target)
        assert not await redis.hexists(keys.account(target), "identity")
        await assert_nothing_pending(redis, tenant)


class TestARefusedClaimIsCountedOnce:
    """A place the binding limit refused counts against its name's claim refusals, in the counter's slot.

    Its count is a step of its own (``bind_count.lua``) before the commit: a worker killed after
    any step neither loses the count of a refusal it committed nor, repaired, counts it twice.
    """

    # The steps of a refused answer: judge, place, count, commit (then the confirm).
    REFUSED_BOUNDARIES = (1, 2, 3, 4)

    async def _refused_answer(self, redis: RedisClient, tenant: str) -> str:
        """The owner bound at a limit of 1; another account's answer to refuse, its id."""
        await bind(redis, tenant, pseudonym(f"{tenant}-owner"), OWNER, limit=1)
        return await challenge(redis, tenant, pseudonym(f"{tenant}-a"), OWNER)

    @pytest.mark.timeout(60 + 20 * ROUNDS)
    async def test_killed_after_each_step_it_is_counted_once(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        later = BucketRepairer(LaterRepairs(redis, Scripts(redis)))
        for round_ in range(ROUNDS):
            for nth in self.REFUSED_BOUNDARIES:
                tenant = _tenant(f"refused-{round_}-{nth}")
                vid = await self._refused_answer(redis, tenant)
                await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, nth, limit=1)
                assert await redis.zcard(TenantKeys(tenant).intents()) >= 1, nth
                assert await later.repair(tenant) >= 1, nth
                await assert_refused_once(redis, tenant, vid, OWNER["name_tag"])
                assert await later.repair(tenant) == 0, nth

    async def test_a_worker_that_lived_counts_it_with_its_marker(self, redis: RedisClient) -> None:
        tenant = _tenant("refused-lived")
        vid = await self._refused_answer(redis, tenant)
        written = await answer(store_of(redis, runner=_stepwise(redis)), tenant, vid, limit=1)
        assert (written.record.status, written.record.reason) == (Status.REJECTED, "BINDING_LIMIT_REACHED")
        await assert_refused_once(redis, tenant, vid, OWNER["name_tag"])

    async def test_the_count_repeated_counts_nothing(self, redis: RedisClient) -> None:
        """A repair's second run of the step, as after a kill just after it: the marker answers."""
        tenant = _tenant("refused-again")
        keys = TenantKeys(tenant)
        tag, vid = OWNER["name_tag"], pseudonym("refused-again-vf")
        step = [keys.rate_limit("claim_refusals", tag), keys.claim_refusal_counted(tag, vid)]
        scripts = Scripts(redis)
        assert [await scripts.run("bind_count", step, []) for _ in range(2)] == [[b"OK"], [b"DONE"]]
        assert await redis.get(keys.rate_limit("claim_refusals", tag)) == b"1"
        other = [keys.rate_limit("claim_refusals", tag), keys.claim_refusal_counted(tag, "another-vf")]
        assert await scripts.run("bind_count", other, []) == [b"OK"]
        assert await redis.get(keys.rate_limit("claim_refusals", tag)) == b"2"


class TestAnOrganizationsNamesAreIndexedOnceBound:
    """An answer that establishes an organization's claim indexes its names in a step of its own (T).

    After the commit, before the confirm, whose ``place:`` intent keeps the names until the step
    ran: a worker killed after any step leaves them to the repairer. An account cancelled between
    the commit and that step leaves no names behind (the confirm finds the record without members
    and drops them again), and a place removed as the identity's last drops those it kept.
    """

    # The steps of an establishing answer with nothing to supersede: judge, place, commit, names.
    NAMES_BOUNDARIES = (1, 2, 3, 4)

    async def _answer(self, redis: RedisClient, tenant: str, account_ps: str) -> str:
        return await challenge(
            redis, tenant, account_ps, OWNER, establishes=True, org_names=",".join(ORG_NAMES)
        )

    @pytest.mark.timeout(60 + 20 * ROUNDS)
    async def test_killed_after_each_step_its_names_are_indexed(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        later = BucketRepairer(LaterRepairs(redis, Scripts(redis)))
        tag = OWNER["name_tag"]
        for round_ in range(ROUNDS):
            for nth in self.NAMES_BOUNDARIES:
                tenant = _tenant(f"names-{round_}-{nth}")
                target = pseudonym(f"{tenant}-a")
                vid = await self._answer(redis, tenant, target)
                await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, nth)
                assert await redis.zcard(TenantKeys(tenant).intents()) >= 1, nth
                assert await later.repair(tenant) >= 1, nth
                await assert_bound_once(redis, tenant, vid, target, tag, types=ESTABLISHED)
                assert await names_indexed(redis, tenant, tag) == dict.fromkeys(ORG_NAMES, tag), nth
                assert await later.repair(tenant) == 0, nth

    async def test_a_cancellation_between_the_commit_and_the_names_leaves_none(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """The cancellation drops the names before the repair's names step indexes them: dropped again."""
        tenant = _tenant("names-cancelled")
        target = pseudonym(f"{tenant}-a")
        vid = await self._answer(redis, tenant, target)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 3)  # judge, place, commit
        keys = TenantKeys(tenant)
        assert await redis.hget(keys.account(target), "identity") == REF.encode()
        await RedisErasureStore(redis, Scripts(redis)).cancel(tenant, cancellation(target, "cancel-1"))
        assert not await redis.sismember(keys.identity_accounts(REF), target)
        assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) >= 1
        assert await names_indexed(redis, tenant, OWNER["name_tag"]) == {}
        assert not await redis.exists(keys.organization_names())
        assert not await redis.hexists(keys.identity(REF), f"m:{target}")
        await assert_nothing_pending(redis, tenant)

    async def test_the_identitys_erasure_waits_for_the_repair_and_leaves_no_names(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """As above, with the identity's erasure due before the repair: it waits for the place.

        Erased first, the repair's names step would index the names again and its confirm find no
        record (``MOVED``, as after a pepper move beyond its forwarding record): nothing would
        drop them. So the erasure answers ``GONE`` while the ``place:`` intent names the ref (the
        next round), the repair's confirm answers ``LAST`` on the record without members, and the
        erasure then goes through. Fails without the wait: the names stay indexed.
        """
        tenant = _tenant("names-erased")
        target = pseudonym(f"{tenant}-a")
        vid = await self._answer(redis, tenant, target)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 3)  # judge, place, commit
        keys, tag = TenantKeys(tenant), OWNER["name_tag"]
        scripts = Scripts(redis)
        erasures = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))
        await erasures.cancel(tenant, cancellation(target, "cancel-1", due_ms=1))
        identity = ErasureItem(ErasureKind.IDENTITY, REF)
        request = cancellation(target, "erase-1").request_json
        assert await erasures.erase(tenant, identity, request) is EraseOutcome.GONE  # waits
        assert await redis.exists(keys.identity(REF))
        assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) >= 1
        await erasures.erase(tenant, identity, request)
        assert not await redis.exists(keys.identity(REF))
        assert await names_indexed(redis, tenant, tag) == {}
        assert not await redis.exists(keys.organization_names())
        await assert_nothing_pending(redis, tenant)

    async def test_a_place_removed_as_the_last_member_drops_the_names(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """The bound account's cancellation keeps the names while a place is pending; its undo drops them.

        The pending account is cancelled too (before its commit): its place is the record's last
        member, and its confirm, not the first cancellation, left the record without members.
        """
        tenant = _tenant("names-last-place")
        keys, tag = TenantKeys(tenant), OWNER["name_tag"]
        first, second = pseudonym(f"{tenant}-a"), pseudonym(f"{tenant}-b")
        written = await answer(store_of(redis), tenant, await self._answer(redis, tenant, first))
        assert written.record.status is Status.VERIFIED, written.record
        vid = await challenge(redis, tenant, second, OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 2)  # judge, place
        assert await redis.hget(keys.identity(REF), f"m:{second}") == f"p:{tag}:{vid}".encode()
        erasures = RedisErasureStore(redis, Scripts(redis))
        await erasures.cancel(tenant, cancellation(first, "cancel-1"))
        assert await names_indexed(redis, tenant, tag) == dict.fromkeys(ORG_NAMES, tag)  # a place is left
        await erasures.cancel(tenant, cancellation(second, "cancel-2"))
        assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) >= 1
        assert await redis.hget(keys.verification(vid), "reason") == b"ACCOUNT_CANCELLED"
        assert await redis.scard(keys.identity_accounts(REF)) == 0
        assert await names_indexed(redis, tenant, tag) == {}
        await assert_nothing_pending(redis, tenant)


class _ReadThenRaced(Scripts):
    """Scripts whose first take of a ``place:`` intent runs ``race`` first: after the outcome's read.

    The read is in the account's bucket and the take in the identity's, so another writer may come
    between them (``intent_take.lua``, ``place_take``); this one always does.
    """

    def __init__(self, redis: RedisClient, race: Callable[[], Awaitable[None]]) -> None:
        super().__init__(redis)
        self._race: Callable[[], Awaitable[None]] | None = race

    async def run(self, name: str, keys: Sequence[str], args: Sequence[str | int | bytes]) -> Any:
        if name == "intent_take" and as_text(args[0]).startswith("place:") and self._race is not None:
            race, self._race = self._race, None
            await race()
        return await super().run(name, keys, args)


class TestAPlaceTakenOnAStaleRead:
    """The take of a ``place:`` intent acts on an outcome read before it, in another bucket."""

    async def test_an_answer_between_the_read_and_the_take_keeps_its_place(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """The account's step lost in a failover; the answer, repeated, is marked after the read.

        A verification not marked in flight may still bind, so its place waits: freed on the
        read's word, the answer's commit would bind the account with no member counted (one over
        the limit), as an outcome read ``REJECTED`` for it would.
        """
        tenant = _tenant("stale-live")
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 2)  # judge, place
        keys = TenantKeys(tenant)
        # What a failover without replicas leaves of the judge: nothing; the place stays.
        await redis.hdel(keys.verification(vid), "binding")
        await redis.hset(keys.verification(vid), "digest", DIGEST)
        await redis.pexpire(keys.verification(vid), 600_000)
        await redis.hdel(keys.account(target), "binding")
        await redis.zrem(keys.intents(), f"bind:{vid}")
        await redis.delete(keys.intent(f"bind:{vid}"))
        placed, taken = asyncio.Event(), asyncio.Event()
        answering: list[asyncio.Task[Any]] = []

        class PausedAfterPlace(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                if (sequence, done) == ("bind", 2):
                    placed.set()
                    await taken.wait()

        async def race() -> None:
            store = store_of(redis, runner=PausedAfterPlace(Scripts(redis), step_by_step=True))
            answering.append(asyncio.create_task(answer(store, tenant, vid)))
            await placed.wait()

        repairs = LaterRepairs(redis, _ReadThenRaced(redis, race))
        member = f"place:{vid}"
        score = int(await redis.zscore(keys.intents(), member) or 0)
        await repairs.repair(tenant, DueIntent(member, score))
        taken.set()
        written = await answering[0]
        assert written.record.status is Status.VERIFIED, written.record
        assert await redis.hget(keys.account(target), "identity") == REF.encode()
        assert await redis.hget(keys.identity(REF), f"m:{target}") == f"b:{OWNER['name_tag']}".encode()
        assert await redis.sismember(keys.identity_accounts(REF), target)
        await assert_nothing_pending(redis, tenant)

    async def test_an_account_cancelled_between_the_read_and_the_take_is_not_confirmed_back(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """Read VERIFIED, then cancelled: the cancellation removed the member, the stale confirm adds none."""
        tenant = _tenant("stale-verified")
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 3)  # judge, place, commit
        keys = TenantKeys(tenant)
        assert await redis.hget(keys.verification(vid), "status") == b"VERIFIED"

        async def race() -> None:
            await RedisErasureStore(redis, Scripts(redis)).cancel(tenant, cancellation(target, "cancel-1"))

        repairs = LaterRepairs(redis, _ReadThenRaced(redis, race))
        member = f"place:{vid}"
        score = int(await redis.zscore(keys.intents(), member) or 0)
        assert (await repairs.repair(tenant, DueIntent(member, score))).outcome is RepairOutcome.REPAIRED
        assert not await redis.hexists(keys.identity(REF), f"m:{target}")
        assert not await redis.sismember(keys.identity_accounts(REF), target)
        assert not await redis.hexists(keys.account(target), "identity")
        await assert_nothing_pending(redis, tenant)


class TestThePlacesOfOneIdentity:
    """Concurrent right answers step by step: the limit is counted over bound and pending places."""

    @pytest.mark.timeout(120)
    async def test_many_answers_at_once_take_exactly_the_limit(self, redis: RedisClient) -> None:
        tenant, limit, answers = _tenant("race"), 3, 24
        accounts = [pseudonym(f"race-{n}") for n in range(answers)]
        vids = [await challenge(redis, tenant, account, OWNER) for account in accounts]
        stores = [store_of(redis, runner=_stepwise(redis)) for _ in range(4)]
        written = await asyncio.gather(
            *(answer(stores[n % 4], tenant, vid, limit=limit) for n, vid in enumerate(vids))
        )
        statuses = [w.record.status for w in written]
        assert statuses.count(Status.VERIFIED) == limit, statuses
        refused = {w.record.reason for w in written if w.record.status is Status.REJECTED}
        assert refused == {"BINDING_LIMIT_REACHED"}
        keys = TenantKeys(tenant)
        bound = {a for a, w in zip(accounts, written, strict=True) if w.record.status is Status.VERIFIED}
        assert {as_text(m) for m in await redis.smembers(keys.identity_accounts(REF))} == bound
        await assert_nothing_pending(redis, tenant)

    async def test_a_pending_place_counts_against_the_limit(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        tenant = _tenant("pending")
        first, second = pseudonym(f"{tenant}-a"), pseudonym(f"{tenant}-b")
        vid = await challenge(redis, tenant, first, OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 2, limit=1)
        value = await redis.hget(TenantKeys(tenant).identity(REF), f"m:{first}")
        assert value == f"p:{OWNER['name_tag']}:{vid}".encode()
        other = await challenge(redis, tenant, second, OWNER)
        written = await answer(store_of(redis, runner=_stepwise(redis)), tenant, other, limit=1)
        assert (written.record.status, written.record.reason) == (Status.REJECTED, "BINDING_LIMIT_REACHED")


class TestPlantedIntents:
    """A thief or operator with write access plants intents; none binds anything."""

    async def test_a_planted_bind_intent_binds_nothing(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        tenant = _tenant("planted")
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER)  # a code sent, never answered
        keys = TenantKeys(tenant)
        member = f"bind:{vid}"
        fields = {"kind": "bind", "subject": vid, "acct": target, "ref": REF, "limit": "3", "request": "{}"}
        await redis.hset(keys.intent(member), mapping=fields)
        await redis.zadd(keys.intents(), {member: 0})
        before = await entries(redis, tenant)
        with caplog.at_level(logging.WARNING, logger="idverify.repair"):
            assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) == 0
        assert await redis.hget(keys.verification(vid), "status") == b"CHALLENGE_SENT"
        assert not await redis.hexists(keys.account(target), "identity")
        assert not await redis.exists(keys.identity_accounts(REF))
        assert await entries(redis, tenant) == before
        await assert_nothing_pending(redis, tenant)
        assert f"intent {keys.intent(member)} dropped: NOT_BINDING" in caplog.text

    async def test_a_planted_place_intent_removes_no_bound_member(self, redis: RedisClient) -> None:
        tenant = _tenant("planted-place")
        target = pseudonym(f"{tenant}-a")
        await bind(redis, tenant, target, OWNER)
        keys = TenantKeys(tenant)
        vid = pseudonym("no-such-verification")
        member = f"place:{vid}"
        fields = {"kind": "place", "subject": vid, "acct": target, "ref": REF, "request": "{}"}
        await redis.hset(keys.intent(member), mapping=fields)
        await redis.zadd(keys.intents(), {member: 0})
        assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) == 1
        assert await redis.hget(keys.identity(REF), f"m:{target}") == f"b:{OWNER['name_tag']}".encode()
        assert await redis.sismember(keys.identity_accounts(REF), target)
        await assert_nothing_pending(redis, tenant)

    async def test_malformed_binding_intents_are_logged_by_key_and_removed(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        tenant = _tenant("malformed")
        keys = TenantKeys(tenant)
        personal = "张三 11010519491231002X"
        vid = pseudonym("malformed-vf")
        planted = {
            f"bind:{vid}": {"kind": "bind", "subject": vid, "acct": personal, "ref": REF, "request": "{}"},
            f"place:{vid}": {"kind": "place", "subject": vid, "acct": "", "ref": REF, "request": "{}"},
            f"bind:{personal}": {"kind": "bind", "subject": personal, "acct": personal, "ref": personal},
        }
        for member, fields in planted.items():
            await redis.zadd(keys.intents(), {member: 0})
            await redis.hset(keys.intent(member), mapping=fields)
        with caplog.at_level(logging.WARNING, logger="idverify.repair"):
            assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) == 0
        await assert_nothing_pending(redis, tenant)
        assert "11010519491231002X" not in caplog.text
        assert f"intent {keys.intent(f'bind:{vid}')} dropped: MALFORMED" in caplog.text
        assert f"intent {keys.intent(f'place:{vid}')} dropped: MALFORMED" in caplog.text
        assert caplog.text.count("a key this release never writes") == 1


class TestPlantedPendingMembers:
    """A writer to Redis fills an identity's places with pending members that no binding took.

    A careless operator restoring half a backup, or a thief turned vandal, writes ``p:`` members
    (set and field, as a place writes them) without the ``place:`` intent a place writes with each:
    nothing would ever confirm or remove them. The owner's next signup must still bind.
    """

    @pytest.mark.parametrize("stepwise", [False, True], ids=["chained", "step-by-step"])
    async def test_pending_members_without_intents_take_no_place(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture, stepwise: bool
    ) -> None:
        tenant, limit = _tenant(f"planted-pending-{stepwise}"), 2
        keys = TenantKeys(tenant)
        planted = [pseudonym(f"{tenant}-planted-{n}") for n in range(limit)]
        for n, member in enumerate(planted):
            await redis.sadd(keys.identity_accounts(REF), member)
            value = f"p:{OWNER['name_tag']}:{pseudonym(f'{tenant}-no-such-verification-{n}')}"
            await redis.hset(keys.identity(REF), f"m:{member}", value)
        target = pseudonym(f"{tenant}-owner")
        vid = await challenge(redis, tenant, target, OWNER)
        store = store_of(redis, runner=_stepwise(redis) if stepwise else None)
        with caplog.at_level(logging.WARNING, logger="idverify.store"):
            written = await answer(store, tenant, vid, limit=limit)
        assert written.record.status is Status.VERIFIED, written.record
        await assert_bound_once(redis, tenant, vid, target, OWNER["name_tag"], types=PLAIN)
        assert {as_text(m) for m in await redis.smembers(keys.identity_accounts(REF))} == {target}
        if stepwise:
            # Logged by the identity's key and a count: the planted pseudonyms are a writer's text.
            line = f"identity {keys.identity(REF)}: 2 pending members without their intents removed"
            assert line in caplog.text
            assert planted[0] not in caplog.text

    async def test_a_pending_member_under_another_accounts_intent_takes_no_place(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """Planted under the id of a binding really in flight, for an account that binding is not."""
        tenant = _tenant("planted-borrowed")
        keys = TenantKeys(tenant)
        first, second = pseudonym(f"{tenant}-a"), pseudonym(f"{tenant}-b")
        vid = await challenge(redis, tenant, first, OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 2, limit=2)
        borrowed = pseudonym(f"{tenant}-planted")
        await redis.sadd(keys.identity_accounts(REF), borrowed)
        await redis.hset(keys.identity(REF), f"m:{borrowed}", f"p:{OWNER['name_tag']}:{vid}")
        other = await challenge(redis, tenant, second, OWNER)
        written = await answer(store_of(redis, runner=_stepwise(redis)), tenant, other, limit=2)
        assert written.record.status is Status.VERIFIED, written.record
        # The real pending place still counts, and its binding finishes.
        assert await redis.hget(keys.identity(REF), f"m:{first}") == f"p:{OWNER['name_tag']}:{vid}".encode()
        assert not await redis.sismember(keys.identity_accounts(REF), borrowed)
        assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) == 1
        await assert_bound_once(redis, tenant, vid, first, OWNER["name_tag"], types=PLAIN)


class TestOneNode:
    """On one node the steps are one script: no boundary, no intent, the entries of the steps."""

    async def test_an_answer_is_atomic_and_writes_no_intent(self, redis: RedisClient) -> None:
        tenant = _tenant("one-node")
        squatter = await _squatted(redis, tenant)
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER, establishes=True)
        watching = Watching(Scripts(redis))
        written = await answer(store_of(redis, runner=watching), tenant, vid)
        assert written.outcome is WriteOutcome.DONE
        assert watching.seen == []
        await assert_bound_once(redis, tenant, vid, target, OWNER["name_tag"], types=ESTABLISHING)
        await assert_superseded_once(redis, tenant, squatter, vid)

    async def test_the_entries_of_the_chain_and_of_the_steps_are_the_same_bytes(
        self, redis: RedisClient
    ) -> None:
        logs = []
        for label, runner in (("chained", None), ("stepwise", _stepwise(redis))):
            tenant = _tenant("bytes")  # the same ids in both, in two databases' worth of keys
            await redis.flushdb()
            await _squatted(redis, tenant)
            vid = await challenge(redis, tenant, pseudonym(f"{tenant}-a"), OWNER, establishes=True)
            await answer(store_of(redis, runner=runner), tenant, vid)
            raw = await redis.hgetall(TenantKeys(tenant).audit_log())
            logs.append([_timeless(raw[str(i).encode()]) for i in range(len(raw))])
            del label
        assert logs[0] == logs[1]

    async def test_a_refusal_counts_alike_chained_and_step_by_step(self, redis: RedisClient) -> None:
        """The entries byte for byte and one count either way; only the steps leave the count's marker."""
        seen = []
        for runner in (None, _stepwise(redis)):
            tenant = _tenant("refused-bytes")
            await redis.flushdb()
            await bind(redis, tenant, pseudonym(f"{tenant}-owner"), OWNER, limit=1)
            vid = await challenge(redis, tenant, pseudonym(f"{tenant}-a"), OWNER)
            written = await answer(store_of(redis, runner=runner), tenant, vid, limit=1)
            assert written.record.reason == "BINDING_LIMIT_REACHED", written.record
            keys = TenantKeys(tenant)
            raw = await redis.hgetall(keys.audit_log())
            marked = await redis.exists(keys.claim_refusal_counted(OWNER["name_tag"], vid))
            counted = await redis.get(keys.rate_limit("claim_refusals", OWNER["name_tag"]))
            seen.append(([_timeless(raw[str(i).encode()]) for i in range(len(raw))], counted, marked))
        assert seen[0][:2] == seen[1][:2]
        assert seen[0][1] == b"1"
        assert (seen[0][2], seen[1][2]) == (0, 1)

    async def test_an_organizations_names_are_indexed_alike_chained_and_step_by_step(
        self, redis: RedisClient
    ) -> None:
        seen = []
        for runner in (None, _stepwise(redis)):
            tenant = _tenant("names-bytes")
            await redis.flushdb()
            await _squatted(redis, tenant)
            vid = await challenge(
                redis,
                tenant,
                pseudonym(f"{tenant}-a"),
                OWNER,
                establishes=True,
                org_names=",".join(ORG_NAMES),
            )
            assert (
                await answer(store_of(redis, runner=runner), tenant, vid)
            ).record.status is Status.VERIFIED
            raw = await redis.hgetall(TenantKeys(tenant).audit_log())
            names = await names_indexed(redis, tenant, OWNER["name_tag"])
            seen.append(([_timeless(raw[str(i).encode()]) for i in range(len(raw))], names))
        assert seen[0] == seen[1]
        assert seen[0][1] == dict.fromkeys(ORG_NAMES, OWNER["name_tag"])


def _timeless(entry: bytes) -> bytes:
    """An entry's bytes without its time (the two runs are milliseconds apart)."""
    head, _, rest = entry.partition(b',"time_ms":')
    return head + rest[rest.index(b",") :]


class TestAMemberWithoutItsFieldInABucket:
    """The place names a field-less member's account from the identity's key only in the tenant's slot."""

    @staticmethod
    async def _place(redis: RedisClient, keys: TenantKeys) -> Any:
        """A place for a new account, beside a member bound (by 0.1.0) without its ``m:`` field."""
        await redis.sadd(keys.identity_accounts(REF), "old-member")
        await redis.hset(keys.identity(REF), mapping={"name_binding": "binding-owner", "pepper": "p1"})
        await redis.hset(f"{keys.identity(REF)[: -len(f'id:{REF}')]}acct:old-member", "name_tag", "tag-owner")
        inputs = ["BINDING", "vf-new", "new-member", REF, "binding-owner", "", "tag-owner", "1", "0"]
        identity = keys.identity(REF)
        return await Scripts(redis).run(
            "bind_place",
            [
                identity,
                keys.identity_accounts(REF),
                keys.intents(identity),
                keys.intent("place:vf-new", identity),
            ],
            [3, 60_000, "{}", *inputs, "p1", "low", "sms", ""],
        )

    async def test_in_a_bucket_it_is_refused_before_anything_is_written(self, redis: RedisClient) -> None:
        """Its account is another bucket's: UNWALKED, no field written, no place, no intent."""
        tenant = _tenant("unwalked-bucket")
        keys = TenantKeys(tenant, search_layout(tenant))
        assert await self._place(redis, keys) == [b"UNWALKED", b"1"]
        fields = await redis.hgetall(keys.identity(REF))
        assert not [name for name in fields if name.startswith(b"m:")], fields
        assert await redis.smembers(keys.identity_accounts(REF)) == {b"old-member"}
        assert await redis.zcard(keys.intents(keys.identity(REF))) == 0

    async def test_in_the_tenants_slot_its_account_is_read_as_before(self, redis: RedisClient) -> None:
        """Today's names: the member's field is written from its account, and the place taken."""
        keys = TenantKeys(_tenant("unwalked-flat"))
        assert (await self._place(redis, keys))[0] == b"PLACED"
        assert await redis.hget(keys.identity(REF), "m:old-member") == b"b:tag-owner"
        assert await redis.hget(keys.identity(REF), "m:new-member") == b"p:tag-owner:vf-new"

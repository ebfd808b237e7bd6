"""Step sequences, their intents and the repairer, with cancellation as their first user.

Abuse first. A worker killed -9 after each step of a cancellation run one by one (the path a
Cluster takes, run here on a standalone redis-server through the test-only ``step_by_step``
runner) leaves an intent that the repairer finishes: the account unbound and queued once, the
identity without it (queued, and its organization's names dropped, when it was the last), one
``account.cancelled`` entry naming the original request, no intent left. A thief or careless
operator with write access to Redis who plants an intent for a bound account cancels nothing; a
garbage intent is logged by its key (never its contents) and removed, and the loop goes on. On one
node, a cancellation is one atomic EVAL that writes no intent.

CI runs ``CI_ROUNDS`` round of every boundary; ``IDVERIFY_CRASH_LOOPS=20`` runs the long loop (a
slow test, docs/RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import pytest

from idverify.flows.bucket_repair import BucketRepairer, DueIntent, RepairOutcome, repair_forever
from idverify.flows.erasure import Cancellation, EraseOutcome, ErasureItem, ErasureKind
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text
from idverify.store.erasures import RedisErasureStore
from idverify.store.intent_repairs import RedisIntentRepairs
from idverify.store.keys import TenantKeys
from idverify.store.scripts import ChainStep, Scripts
from idverify.testing import RedisProcess
from tests.cancel_crash import (
    DUE_MS,
    NAME_HASH,
    REF,
    TAG,
    LaterRepairs,
    Watching,
    assert_cancelled_once,
    bind_accounts,
    cancellation,
    entries,
    killed_after,
    pseudonym,
)
from tests.sequencer_crash import loop_rounds

CI_ROUNDS = 1
ROUNDS = loop_rounds(CI_ROUNDS)
# (whether the cancelled account is its identity's last, the steps that run one by one before
# the intent's removal): the last runs the account's, the identity's and the names' steps.
BOUNDARIES = [(True, n) for n in (1, 2, 3)] + [(False, n) for n in (1, 2)]


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


def _tenant(label: str) -> str:
    return f"steps{pseudonym(label)[:8]}"


async def _killed_after_the_account_step(
    redis: RedisClient, url: str, label: str, request_id: str, *, due_ms: int = DUE_MS
) -> tuple[str, str, Cancellation]:
    """A tenant whose one bound account's cancellation was killed -9 after its first step."""
    tenant, target = _tenant(label), pseudonym(f"{label}-a")
    await bind_accounts(redis, tenant, [target])
    cancelled = cancellation(target, request_id, due_ms=due_ms)
    await asyncio.to_thread(killed_after, url, tenant, cancelled, 1)
    return tenant, target, cancelled


class TestAWorkerKilledBetweenStepsIsRepaired:
    """The worker killed -9 after each step; the repairer finishes, never undoes, once."""

    @pytest.mark.timeout(60 + 30 * ROUNDS)
    async def test_every_boundary_every_round(self, redis: RedisClient, own_redis: RedisProcess) -> None:
        now = BucketRepairer(RedisIntentRepairs(redis, Scripts(redis)))
        later = BucketRepairer(LaterRepairs(redis, Scripts(redis)))
        for round_ in range(ROUNDS):
            for last, nth in BOUNDARIES:
                tenant = _tenant(f"{round_}-{last}-{nth}")
                target, other = pseudonym(f"{tenant}-a"), pseudonym(f"{tenant}-b")
                others = [] if last else [other]
                await bind_accounts(redis, tenant, [target, *others])
                cancelled = cancellation(target, f"cancel-{round_}-{nth}")
                where = f"round {round_}, killed after step {nth}, {'last' if last else 'not last'}"
                await asyncio.to_thread(killed_after, own_redis.url, tenant, cancelled, nth)
                keys = TenantKeys(tenant)
                assert await redis.zcard(keys.intents()) == 1, where
                # Not before its retry time: a live worker would still be finishing it.
                assert await now.repair(tenant) == 0, where
                assert await redis.zcard(keys.intents()) == 1, where
                assert await later.repair(tenant) == 1, where
                await assert_cancelled_once(redis, tenant, cancelled, others)
                # A second pass finds nothing: the repair is done once.
                assert await later.repair(tenant) == 0, where
                await assert_cancelled_once(redis, tenant, cancelled, others)

    async def test_a_repeat_cancel_during_a_pending_intent_answers_the_first_due_time(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        tenant, target, first = await _killed_after_the_account_step(
            redis, own_redis.url, "repeat", "cancel-first"
        )
        scripts = Scripts(redis)
        store = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))
        again = cancellation(target, "cancel-again")
        assert await store.cancel(tenant, again) == DUE_MS
        # It wrote nothing more: the intent is still the first call's, for the repairer.
        assert await redis.zcard(TenantKeys(tenant).intents()) == 1
        assert await BucketRepairer(LaterRepairs(redis, scripts)).repair(tenant) == 1
        await assert_cancelled_once(redis, tenant, first, [])

    async def test_a_worker_that_lived_leaves_no_intent(self, redis: RedisClient) -> None:
        tenant = _tenant("lived")
        target, other = pseudonym("lived-a"), pseudonym("lived-b")
        await bind_accounts(redis, tenant, [target, other])
        scripts = Scripts(redis)
        store = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))
        assert await store.cancel(tenant, cancellation(target, "c1")) == DUE_MS
        await assert_cancelled_once(redis, tenant, cancellation(target, "c1"), [other])
        assert await store.cancel(tenant, cancellation(other, "c2")) == DUE_MS
        assert set(await redis.zrange(TenantKeys(tenant).erasure_due(), 0, -1)) == {
            f"a:{target}".encode(),
            f"a:{other}".encode(),
            f"i:{REF}".encode(),
        }
        assert await redis.zcard(TenantKeys(tenant).intents()) == 0

    async def test_the_accounts_erasure_waits_for_the_repair(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        """Erased first, it would leave a member its identity keeps and no repair could tell."""
        tenant, target, _ = await _killed_after_the_account_step(
            redis, own_redis.url, "erase-waits", "c1", due_ms=1
        )
        store = RedisErasureStore(redis, Scripts(redis))
        item, request = ErasureItem(ErasureKind.ACCOUNT, target), json.dumps({"principal": "idverify"})
        assert await store.erase(tenant, item, request) is EraseOutcome.GONE
        assert await redis.exists(TenantKeys(tenant).account(target))
        assert await BucketRepairer(LaterRepairs(redis, Scripts(redis))).repair(tenant) == 1
        assert await store.erase(tenant, item, request) is EraseOutcome.ERASED
        assert not await redis.exists(TenantKeys(tenant).account(target))
        assert await redis.scard(TenantKeys(tenant).identity_accounts(REF)) == 0


class TestOneNodeIsOneAtomicStep:
    """On one node the steps are one EVAL: no boundary, no intent."""

    async def test_a_cancellation_writes_no_intent(self, redis: RedisClient) -> None:
        tenant = _tenant("one-node")
        target = pseudonym("one-node-a")
        await bind_accounts(redis, tenant, [target])
        scripts = Scripts(redis)
        watching = Watching(scripts)
        store = RedisErasureStore(redis, scripts, steps=watching)
        assert store._cancellation._runner.chained  # the path under test
        assert await store.cancel(tenant, cancellation(target, "c1")) == DUE_MS
        assert watching.seen == []  # no boundary was crossed
        await assert_cancelled_once(redis, tenant, cancellation(target, "c1"), [])
        # Nor the LAST word a step-by-step identity step leaves for a re-indexing: the one EVAL
        # dropped the names itself, and the record is as the one script left it.
        fields = await redis.hkeys(TenantKeys(tenant).identity(REF))
        assert not [field for field in fields if field.startswith(b"last:")], fields

    async def test_the_runner_refuses_an_unacknowledged_step_before_the_last(
        self, redis: RedisClient
    ) -> None:
        runner = StepRunner(Scripts(redis), step_by_step=True)
        steps = [
            ChainStep("intent_done", ["k1", "k2"], ["m"], ("OK",)),
            ChainStep("intent_done", ["k1", "k2"], ["m"]),
        ]
        with pytest.raises(ValueError, match="acknowledged"):
            await runner.run("test", steps)


class TestHostileIntents:
    """A thief or operator with write access plants intents; none binds or unbinds anything."""

    async def test_a_planted_intent_for_a_bound_account_cancels_nothing(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        tenant = _tenant("planted")
        target, other = pseudonym("planted-a"), pseudonym("planted-b")
        await bind_accounts(redis, tenant, [target, other])
        keys = TenantKeys(tenant)
        member = f"unbind:{target}"
        fields = {"kind": "unbind", "subject": target, "ref": REF, "tag": TAG, "due_ms": str(DUE_MS)}
        await redis.hset(keys.intent(member), mapping=fields | {"principal": "thief", "request_id": "x"})
        await redis.zadd(keys.intents(), {member: 0})
        before = await entries(redis, tenant)
        with caplog.at_level(logging.WARNING, logger="idverify.repair"):
            assert await BucketRepairer(RedisIntentRepairs(redis, Scripts(redis))).repair(tenant) == 0
        assert await redis.hget(keys.account(target), "identity") == REF.encode()
        assert not await redis.hexists(keys.account(target), "cancelled_ms")
        assert {as_text(m) for m in await redis.smembers(keys.identity_accounts(REF))} == {target, other}
        assert await redis.hget(keys.identity(REF), f"m:{target}") == f"b:{TAG}".encode()
        assert await redis.hget(keys.organization_own_names(TAG), NAME_HASH) == b"v"
        assert await entries(redis, tenant) == before  # nothing written in anyone's name
        assert await redis.zcard(keys.intents()) == 0
        assert not await redis.exists(keys.intent(member))
        assert f"intent {keys.intent(member)} dropped: NOT_CANCELLED" in caplog.text

    async def test_an_intent_aimed_at_a_ref_that_is_none_queues_and_drops_nothing(
        self, redis: RedisClient
    ) -> None:
        """A cancelled account's planted intent naming a garbage ref and a real organization's tag."""
        tenant = _tenant("garbage-ref")
        bound, unbound = pseudonym("garbage-ref-a"), pseudonym("garbage-ref-unbound")
        await bind_accounts(redis, tenant, [bound])
        scripts = Scripts(redis)
        assert await RedisErasureStore(redis, scripts).cancel(tenant, cancellation(unbound, "c1")) == DUE_MS
        keys = TenantKeys(tenant)
        member = f"unbind:{unbound}"
        fields = {"kind": "unbind", "subject": unbound, "ref": "no-such-ref", "tag": TAG, "due_ms": "1"}
        await redis.hset(keys.intent(member), mapping=fields)
        await redis.zadd(keys.intents(), {member: 0})
        assert await BucketRepairer(RedisIntentRepairs(redis, scripts)).repair(tenant) == 1
        assert await redis.hget(keys.organization_own_names(TAG), NAME_HASH) == b"v"
        assert await redis.hget(keys.organization_names(), NAME_HASH) == TAG.encode()
        assert await redis.zrange(keys.erasure_due(), 0, -1) == [f"a:{unbound}".encode()]
        assert await redis.zcard(keys.intents()) == 0

    async def test_garbage_is_logged_by_key_never_contents_and_removed(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        tenant = _tenant("garbage")
        keys = TenantKeys(tenant)
        personal = "张三 11010519491231002X"
        nobody = pseudonym("garbage-nobody")
        planted = {
            f"unbind:{personal}": "NOT_CANCELLED",
            "rebind:" + "0" * 32: "UNKNOWN_KIND",
            "no colon at all": "UNKNOWN_KIND",
            f"unbind:{nobody}": "MALFORMED",
        }
        for member in planted:
            await redis.zadd(keys.intents(), {member: 0})
            await redis.hset(
                keys.intent(member), mapping={"kind": "unbind", "subject": personal, "ref": personal}
            )
        await redis.hset(keys.intent(f"unbind:{personal}"), mapping={"subject": personal, "due_ms": "5"})
        with caplog.at_level(logging.WARNING, logger="idverify.repair"):
            assert await BucketRepairer(RedisIntentRepairs(redis, Scripts(redis))).repair(tenant) == 0
        assert await redis.zcard(keys.intents()) == 0
        assert [k async for k in redis.scan_iter(match=keys.intent("*"))] == []
        assert personal not in caplog.text
        assert "11010519491231002X" not in caplog.text
        assert f"intent {keys.intent(f'unbind:{nobody}')} dropped: MALFORMED" in caplog.text
        assert caplog.text.count("a key this release never writes") == 3
        for reason in set(planted.values()):
            assert f"dropped: {reason}" in caplog.text

    async def test_the_loop_outlives_a_broken_store(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        tenant = _tenant("broken")
        keys = TenantKeys(tenant)
        await redis.set(keys.intents(), "not a sorted set")  # WRONGTYPE at every read
        healthy = _tenant("healthy")
        await redis.zadd(TenantKeys(healthy).intents(), {"garbage": 0})

        async def tenants() -> list[str]:
            return [tenant, healthy]

        repairs = RedisIntentRepairs(redis, Scripts(redis))
        with caplog.at_level(logging.INFO, logger="idverify.repair"):
            task = asyncio.create_task(
                repair_forever(BucketRepairer(repairs), tenants, interval_seconds=0.05)
            )
            try:
                await asyncio.sleep(0.5)
                assert not task.done()
                # The broken tenant holds back no other.
                assert await redis.zcard(TenantKeys(healthy).intents()) == 0
                await redis.delete(keys.intents())
                await redis.zadd(keys.intents(), {"garbage too": 0})
                await asyncio.sleep(0.5)
                assert not task.done()
                assert await redis.zcard(keys.intents()) == 0
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        assert f"intent repair of {tenant} failed: ResponseError" in caplog.text

    async def test_two_repairers_take_an_intent_once(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        tenant, _, cancelled = await _killed_after_the_account_step(redis, own_redis.url, "race", "c-race")
        keys = TenantKeys(tenant)
        ((member, score),) = await redis.zrange(keys.intents(), 0, -1, withscores=True)
        due = DueIntent(as_text(member), int(score))
        first, second = LaterRepairs(redis, Scripts(redis)), LaterRepairs(redis, Scripts(redis))
        assert (await first.repair(tenant, due)).outcome is RepairOutcome.REPAIRED
        assert (await second.repair(tenant, due)).outcome is RepairOutcome.RACED
        await assert_cancelled_once(redis, tenant, cancelled, [])

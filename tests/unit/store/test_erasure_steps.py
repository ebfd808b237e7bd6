"""An account's erasure as steps (the account's records, then the open minutes of reads), its repair.

Abuse first. A worker killed -9 at each boundary of an erasure run one by one (the path a Cluster
takes, run here on a standalone redis-server through the test-only ``step_by_step`` runner) leaves
an intent that the repairer finishes: no key tied to the account is left outside the audit log,
it is in no open minute, one ``account.erased`` entry, no intent. A thief or careless operator
with write access to Redis who plants an ``erase:`` intent for a live account erases nothing; a
garbage one is logged by its key and removed. On one node, the erasure is one atomic EVAL that
writes no intent.

CI runs ``CI_ROUNDS`` round of every boundary; ``IDVERIFY_CRASH_LOOPS=20`` runs the long loop (a
slow test, docs/RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis as sync_redis

from idverify.flows.bucket_repair import BucketRepairer
from idverify.flows.erasure import Cancellation, EraseOutcome, ErasureItem, ErasureKind
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text
from idverify.store.erasures import RedisErasureStore
from idverify.store.intent_repairs import RedisIntentRepairs
from idverify.store.keys import TenantKeys
from idverify.store.read_steps import ERASED_KEEP_MS
from idverify.store.scripts import Scripts
from idverify.testing import RedisProcess
from tests.cancel_crash import (
    LaterRepairs,
    Watching,
    bind_accounts,
    cancellation,
    entries,
    killed_after,
    pseudonym,
)
from tests.e2e.test_lifecycle_erasure import tied_keys
from tests.sequencer_crash import loop_rounds

CI_ROUNDS = 1
ROUNDS = loop_rounds(CI_ROUNDS)

# Two clients' minutes of reads not yet summarized, each listing the erased account and another.
MINUTES = ("29000000:c1", "29000001:c2")
# After the account's step, after the minutes' step, after the intent's removal.
BOUNDARIES = (1, 2, 3)


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


def _tenant(label: str) -> str:
    return f"erase{pseudonym(label)[:8]}"


def _item(cancelled: Cancellation) -> ErasureItem:
    return ErasureItem(ErasureKind.ACCOUNT, cancelled.account_pseudonym)


async def due_and_read(redis: RedisClient, tenant: str) -> tuple[Cancellation, str, set[bytes]]:
    """An account bound, read in two open minutes beside another, cancelled and due for erasure.

    Returns its cancellation, the other account, and the needles that name the account: its
    pseudonym (in its audit pseudonym and verification ids too), the sealed id for its events and
    its verifications' phone pseudonyms.
    """
    target, other = pseudonym(f"{tenant}-a"), pseudonym(f"{tenant}-b")
    await bind_accounts(redis, tenant, [target, other])
    keys = TenantKeys(tenant)
    # Its binding's verification listed as the admission lists it (consent_start.lua), which
    # bind_accounts passes by.
    await redis.zadd(keys.account_verifications(target), {f"vf-{target}": 4_000_000_000_000})
    for minute in MINUTES:
        await redis.zadd(keys.reads_open(), {minute: int(minute.split(":")[0])})
        await redis.sadd(keys.reads_minute_accounts(minute), target, other)
    cancelled = cancellation(target, f"cancel-{tenant}", due_ms=1)
    assert await RedisErasureStore(redis, Scripts(redis)).cancel(tenant, cancelled) == 1
    needles = {target.encode()}
    sealed = await redis.hget(keys.account(target), "event_account")
    if sealed:
        needles.add(sealed)
    for verification_id in await redis.zrange(keys.account_verifications(target), 0, -1):
        otp_ps = await redis.hget(keys.verification(as_text(verification_id)), "otp_ps")
        if otp_ps:
            needles.add(otp_ps)
    return cancelled, other, needles


async def _assert_erased_once(
    redis: RedisClient,
    url: str,
    tenant: str,
    cancelled: Cancellation,
    other: str,
    needles: set[bytes],
    *,
    step_by_step: bool = True,
) -> None:
    """Nothing tied to the account outside the audit log, in no open minute, erased once, no intent.

    Step by step, the account is named for the reads in flight a minute at most (its TTL),
    which leave it out of their accounting (``store.read_steps``); one node names it nowhere.
    """
    keys = TenantKeys(tenant)
    store = sync_redis.Redis.from_url(url)
    try:
        held = await asyncio.to_thread(tied_keys, store, needles)
    finally:
        store.close()
    audit = f"{keys.audit_log().rsplit(':', 1)[0]}:".encode()
    # The binding's request id key: bind_accounts names the request after the account (in
    # production a keyed hash of the platform's request id, never the account's), and it lasts
    # its idempotency window, as after any erasure.
    request = keys.request(f"req-{cancelled.account_pseudonym}")
    assert await redis.pttl(request) > 0
    erased_names = keys.reads_erased()
    if step_by_step:
        assert 0 < await redis.pttl(erased_names) <= ERASED_KEEP_MS
    else:
        assert not await redis.exists(erased_names)
    kept = {request.encode(), erased_names.encode()} if step_by_step else {request.encode()}
    assert {key for key in held if not key.startswith(audit)} == kept, held
    for minute in MINUTES:
        assert await redis.smembers(keys.reads_minute_accounts(minute)) == {other.encode()}
    erased = [e for e in await entries(redis, tenant) if e["type"] == "account.erased"]
    assert len(erased) == 1, erased
    assert erased[0]["account"] == cancelled.audit_pseudonym
    assert await redis.zcard(keys.intents()) == 0
    assert f"a:{cancelled.account_pseudonym}".encode() not in await redis.zrange(keys.erasure_due(), 0, -1)


class TestAWorkerKilledMidErasureIsRepaired:
    """The worker killed -9 after each step; the repairer finishes from the minutes' step, once."""

    @pytest.mark.timeout(60 + 30 * ROUNDS)
    async def test_every_boundary_every_round(self, redis: RedisClient, own_redis: RedisProcess) -> None:
        now = BucketRepairer(RedisIntentRepairs(redis, Scripts(redis)))
        later = BucketRepairer(LaterRepairs(redis, Scripts(redis)))
        store = RedisErasureStore(redis, Scripts(redis))
        for round_ in range(ROUNDS):
            for nth in BOUNDARIES:
                where = f"round {round_}, killed after step {nth}"
                tenant = _tenant(f"killed-{round_}-{nth}")
                cancelled, other, needles = await due_and_read(redis, tenant)
                await asyncio.to_thread(killed_after, own_redis.url, tenant, cancelled, nth, erase=True)
                keys = TenantKeys(tenant)
                # The account's step is done whatever the boundary: the account is gone.
                assert not await redis.exists(keys.account(cancelled.account_pseudonym)), where
                pending = 0 if nth == 3 else 1
                assert await redis.zcard(keys.intents()) == pending, where
                # Not before its retry time: a live worker would still be finishing it.
                assert await now.repair(tenant) == 0, where
                assert await later.repair(tenant) == pending, where
                await _assert_erased_once(redis, own_redis.url, tenant, cancelled, other, needles)
                # A second pass, and the erasure worker's next round, find nothing to do.
                assert await later.repair(tenant) == 0, where
                erased = await store.erase(tenant, _item(cancelled), cancelled.request_json)
                assert erased is EraseOutcome.GONE, where
                await _assert_erased_once(redis, own_redis.url, tenant, cancelled, other, needles)

    async def test_a_worker_that_lived_leaves_no_intent(
        self, redis: RedisClient, own_redis: RedisProcess
    ) -> None:
        tenant = _tenant("lived")
        cancelled, other, needles = await due_and_read(redis, tenant)
        scripts = Scripts(redis)
        store = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))
        assert await store.erase(tenant, _item(cancelled), cancelled.request_json) is EraseOutcome.ERASED
        await _assert_erased_once(redis, own_redis.url, tenant, cancelled, other, needles)


class TestOneNodeIsOneAtomicStep:
    async def test_an_erasure_writes_no_intent(self, redis: RedisClient, own_redis: RedisProcess) -> None:
        tenant = _tenant("one-node")
        cancelled, other, needles = await due_and_read(redis, tenant)
        scripts = Scripts(redis)
        watching = Watching(scripts)
        store = RedisErasureStore(redis, scripts, steps=watching)
        assert store._erasure._runner.chained  # the path under test
        assert await store.erase(tenant, _item(cancelled), cancelled.request_json) is EraseOutcome.ERASED
        assert watching.seen == []  # no boundary was crossed
        assert [k async for k in redis.scan_iter(match=TenantKeys(tenant).intent("*"))] == []
        await _assert_erased_once(redis, own_redis.url, tenant, cancelled, other, needles, step_by_step=False)


class TestHostileEraseIntents:
    """A planted ``erase:`` intent erases nothing, nor takes a live account out of any minute."""

    async def test_a_planted_intent_for_a_live_account_erases_nothing(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        tenant = _tenant("planted")
        cancelled, other, _ = await due_and_read(redis, tenant)
        target = cancelled.account_pseudonym
        keys = TenantKeys(tenant)
        member = f"erase:{target}"
        await redis.hset(keys.intent(member), mapping={"kind": "erase", "subject": target})
        await redis.zadd(keys.intents(), {member: 0})
        account = await redis.hgetall(keys.account(target))
        before = await entries(redis, tenant)
        with caplog.at_level(logging.WARNING, logger="idverify.repair"):
            assert await BucketRepairer(RedisIntentRepairs(redis, Scripts(redis))).repair(tenant) == 0
        assert await redis.hgetall(keys.account(target)) == account
        for minute in MINUTES:
            assert await redis.smembers(keys.reads_minute_accounts(minute)) == {
                target.encode(),
                other.encode(),
            }
        assert await entries(redis, tenant) == before
        assert await redis.zrange(keys.erasure_due(), 0, -1) == [f"a:{target}".encode()]
        assert await redis.zcard(keys.intents()) == 0
        assert not await redis.exists(keys.intent(member))
        assert f"intent {keys.intent(member)} dropped: NOT_ERASED" in caplog.text

    async def test_garbage_is_logged_by_key_and_removed(
        self, redis: RedisClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        tenant = _tenant("garbage")
        keys = TenantKeys(tenant)
        personal = "张三 11010519491231002X"
        nobody = pseudonym("garbage-nobody")
        planted = {
            f"erase:{personal}": "MALFORMED",  # a subject its record does not name
            f"erase:{nobody}": "MALFORMED",  # a record of another kind
        }
        for member in planted:
            await redis.zadd(keys.intents(), {member: 0})
        await redis.hset(keys.intent(f"erase:{nobody}"), mapping={"kind": "unbind", "subject": nobody})
        with caplog.at_level(logging.WARNING, logger="idverify.repair"):
            assert await BucketRepairer(RedisIntentRepairs(redis, Scripts(redis))).repair(tenant) == 0
        assert await redis.zcard(keys.intents()) == 0
        assert [k async for k in redis.scan_iter(match=keys.intent("*"))] == []
        assert "11010519491231002X" not in caplog.text
        assert f"intent {keys.intent(f'erase:{nobody}')} dropped: MALFORMED" in caplog.text
        assert caplog.text.count("a key this release never writes") == 1

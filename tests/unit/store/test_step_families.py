"""The other step sequences touch keys of one planned bucket a step too (docs/ARCHITECTURE.md, §6).

As ``test_binding_families.py`` for a binding: a cancellation (the last member's, with its
names' step), an account's and an identity's erasure (with the minutes of reads it leaves), a
re-indexing (and one whose last member is cancelled meanwhile, with the names' step it leads to),
the repairer finishing a cancellation, an erasure and a re-indexing after a worker killed midway,
the counters in two slots (a code send and CheckIdentity, past their limits so that a count is
given back), CheckDisplayName's lookup and SetApprovedNames' approval (the account read, then
the tenant's step: §3.5), and the reads followed by one write (GetVerification expiring a
challenge, GetIpLocations, a read recorded apart, §3.5), each run step by step on a real
redis-server with every script call's keys (and every plain command's), given and derived,
recorded and held to one bucket plus its entry's keys, but for the known crossings.
A cancellation's and an erasure's entries run in a tenant this release made, its log born walked
(``tests.tenant_births``): they read no legacy map, which they do in a tenant with older servers'
data (``test_legacy_moves``).
"""

from __future__ import annotations

import asyncio

import pytest

from idverify.domain.subjects import AssuranceLevel
from idverify.flows.bucket_repair import BucketRepairer
from idverify.flows.display_names import Approval, NameLookup, NameQuery, NamesApproval
from idverify.flows.erasure import EraseOutcome, ErasureItem, ErasureKind
from idverify.flows.identity_check import CheckStep
from idverify.flows.read_accounting import Category, Reader, read_spec
from idverify.flows.verification.record import Status
from idverify.store.accounts import RedisAccounts
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import CodeSendChains, RedisCodeSends
from idverify.store.connection import RedisClient
from idverify.store.display_names import RedisDisplayNames
from idverify.store.erasures import RedisErasureStore
from idverify.store.identity_checks import RedisIdentityChecks
from idverify.store.key_families import Family, family_of
from idverify.store.keys import TenantKeys
from idverify.store.read_records import RedisReadRecords
from idverify.store.verifications import RedisVerificationStore
from idverify.testing import RedisProcess
from idverify.testing.memory_code_sends import send_limits
from tests.bind_crash import REQUEST_JSON
from tests.cancel_crash import NAME_HASH, REF, LaterRepairs, bind_accounts, cancellation, pseudonym
from tests.cancel_crash import killed_after as cancel_killed_after
from tests.counter_crash import LIMITS, check_of, send_to
from tests.move_crash import MEMBERS, bound_identity, move, moved_killed_after
from tests.tenant_births import born_walked
from tests.touched_keys import ScriptMonitor
from tests.unit.store.test_binding_families import Recording


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


def _stepwise(recording: Recording) -> StepRunner:
    return StepRunner(recording, step_by_step=True)


async def _read_in_a_minute(redis: RedisClient, tenant: str, accounts: list[str]) -> None:
    """``accounts`` read by a client in a minute not summarized yet: an erasure's follow-up removes them."""
    keys = TenantKeys(tenant)
    minute = "29000000:c1"
    await redis.zadd(keys.reads_open(), {minute: 29_000_000})
    await redis.sadd(keys.reads_minute_accounts(minute), *accounts)


async def test_a_cancellation_then_the_erasures(redis: RedisClient, script_monitor: ScriptMonitor) -> None:
    tenant = f"famc{pseudonym('cancel')[:8]}"
    await born_walked(redis, tenant)
    accounts = [pseudonym(f"{tenant}-{n}") for n in range(2)]
    await bind_accounts(redis, tenant, accounts)
    await _read_in_a_minute(redis, tenant, accounts)
    recording = Recording(redis, script_monitor)
    store = RedisErasureStore(redis, recording, steps=_stepwise(recording))
    for n, account in enumerate(accounts):
        await store.cancel(tenant, cancellation(account, f"cancel-{n}", due_ms=1))  # due at once
    request = cancellation(accounts[0], "erase").request_json
    for account in accounts:
        assert (
            await store.erase(tenant, ErasureItem(ErasureKind.ACCOUNT, account), request)
            is EraseOutcome.ERASED
        )
    assert await store.erase(tenant, ErasureItem(ErasureKind.IDENTITY, REF), request) is EraseOutcome.ERASED
    recording.assert_one_bucket_each(
        "cancel_account",
        "cancel_identity",
        "drop_names",
        "intent_done",
        "erase_account",
        "erase_minutes",
        "erase_identity",
    )


@pytest.mark.timeout(60)
async def test_the_repairer_after_each_first_step(
    redis: RedisClient, script_monitor: ScriptMonitor, own_redis: RedisProcess
) -> None:
    """A worker killed after the first step of a cancellation, an erasure and a re-indexing: the repairs."""
    tenant = f"famr{pseudonym('repair')[:8]}"
    account = pseudonym(f"{tenant}-a")
    await bind_accounts(redis, tenant, [account])
    await _read_in_a_minute(redis, tenant, [account])
    cancelled = cancellation(account, "cancel-killed", due_ms=1)
    await asyncio.to_thread(cancel_killed_after, own_redis.url, tenant, cancelled, 1)
    recording = Recording(redis, script_monitor)
    repairer = BucketRepairer(LaterRepairs(redis, recording))
    assert await repairer.repair(tenant) == 1
    await asyncio.to_thread(cancel_killed_after, own_redis.url, tenant, cancelled, 1, erase=True)
    assert await repairer.repair(tenant) == 1
    moving = f"famr{pseudonym('repair-move')[:8]}"
    await bound_identity(redis, moving, [pseudonym(f"{moving}-{n}") for n in range(MEMBERS)])
    await asyncio.to_thread(moved_killed_after, own_redis.url, moving, 1)
    assert await repairer.repair(moving) == 1
    recording.assert_one_bucket_each(
        "intent_take",
        "cancel_identity",
        "drop_names",
        "erase_minutes",
        "intent_done",
        "move_in",
        "move_member",
        "move_settle",
        "move_finish",
    )


async def test_a_reindexing(redis: RedisClient, script_monitor: ScriptMonitor) -> None:
    tenant = f"famm{pseudonym('move')[:8]}"
    await bound_identity(redis, tenant, [pseudonym(f"{tenant}-{n}") for n in range(3)])
    recording = Recording(redis, script_monitor)
    assert await move(redis, tenant, _stepwise(recording)) == "OK"
    recording.assert_one_bucket_each("move_out", "move_in", "move_member", "move_settle", "move_finish")


async def test_a_reindexing_whose_last_member_is_cancelled_meanwhile(
    redis: RedisClient, script_monitor: ScriptMonitor
) -> None:
    """Its settling step leaves no member: the names' step follows it, in the tenant's keys alone."""
    tenant = f"famn{pseudonym('names')[:8]}"
    await born_walked(redis, tenant)
    only = pseudonym(f"{tenant}-only")
    await bound_identity(redis, tenant, [only])
    recording = Recording(redis, script_monitor)

    class MovedBetween(StepRunner):
        async def _reached(self, sequence: str, done: int) -> None:
            if (sequence, done) == ("cancel", 1):
                assert await move(redis, tenant, _stepwise(recording)) == "OK"

    store = RedisErasureStore(redis, recording, steps=MovedBetween(recording, step_by_step=True))
    await store.cancel(tenant, cancellation(only, "cancel"))
    recording.assert_one_bucket_each(
        "cancel_account",
        "move_settle",
        "drop_names",
        "move_finish",
        "cancel_identity",
    )
    called = [call.name for call in recording.calls]
    assert called.index("drop_names") == called.index("move_settle") + 1, called
    [names_keys] = [call.touched for call in recording.calls if call.name == "drop_names"]
    assert {family_of(key) for key in names_keys} == {Family.TENANT}


@pytest.mark.timeout(60)
async def test_a_reindexing_of_a_record_left_by_a_cancellation_killed_before_its_names(
    redis: RedisClient, script_monitor: ScriptMonitor, own_redis: RedisProcess
) -> None:
    """The record's ``LAST`` word moves with it: the names' step follows the settling, in T's keys."""
    tenant = f"famw{pseudonym('word')[:8]}"
    only = pseudonym(f"{tenant}-only")
    await bound_identity(redis, tenant, [only])
    await asyncio.to_thread(cancel_killed_after, own_redis.url, tenant, cancellation(only, "cancel"), 2)
    recording = Recording(redis, script_monitor)
    assert await move(redis, tenant, _stepwise(recording)) == "OK"
    assert await BucketRepairer(LaterRepairs(redis, recording)).repair(tenant) == 1
    recording.assert_one_bucket_each(
        "move_out", "move_in", "move_settle", "drop_names", "move_finish", "intent_take", "cancel_identity"
    )
    called = [call.name for call in recording.calls]
    assert called.index("drop_names") == called.index("move_settle") + 1, called
    [names_keys] = [call.touched for call in recording.calls if call.name == "drop_names"]
    assert {family_of(key) for key in names_keys} == {Family.TENANT}


async def test_the_counters_in_two_slots(redis: RedisClient, script_monitor: ScriptMonitor) -> None:
    tenant = "famcounters"
    recording = Recording(redis, script_monitor)
    sends = RedisCodeSends(recording, LIMITS, steps=_stepwise(recording))
    for _ in range(4):  # past the phone's window of 2: the budgets' counts are given back
        await sends.count_send(send_to(tenant, "+8613800000000"))
    checks = RedisIdentityChecks(redis, recording, steps=_stepwise(recording))
    for _ in range(4):  # past the account's limit of 2: the principal's counts are given back
        await checks.tally(check_of(tenant, "acct1"), CheckStep.MISMATCH)
    recording.assert_one_bucket_each(
        "send_phone_window", "send_windows", "check_count", "check_entry", "count_give_back"
    )


async def test_a_display_name_lookup_and_approvals(redis: RedisClient, script_monitor: ScriptMonitor) -> None:
    """The account read in its bucket, then the lookup, an approval and a NAME_TAKEN refusal in T's keys."""
    tenant = "famnames"
    account = pseudonym(f"{tenant}-a")
    await bind_accounts(redis, tenant, [account])
    taken = "ef" * 16
    await redis.hset(TenantKeys(tenant).organization_names(), taken, "tag-another-org")
    recording = Recording(redis, script_monitor)
    names = RedisDisplayNames(recording, steps=_stepwise(recording))
    looked = await names.look_up(NameQuery(tenant, account, "caller", (NAME_HASH, taken), 100, 60_000))
    assert isinstance(looked, NameLookup)
    assert len(looked.hits) == 2, looked
    audit = {"principal": "t/admin/a1", "request_id": "r1", "trace_id": "", "span": "", "account": ""}
    brand = NamesApproval(tenant, account, ("cd" * 16,), ("ce" * 16,), AssuranceLevel.LOW, audit)
    assert await names.approve(brand) == (Approval.APPROVED, 1)
    refused = NamesApproval(tenant, account, ("cf" * 16,), (taken,), AssuranceLevel.LOW, audit)
    assert await names.approve(refused) == (Approval.NAME_TAKEN, 0)
    recording.assert_one_bucket_each("account_facts", "display_name_index", "approved_names_index")


async def test_the_reads_followed_by_one_write(redis: RedisClient, script_monitor: ScriptMonitor) -> None:
    """Each read in its records' buckets, then its accounting in the tenant's keys alone.

    The reads are plain commands, or one script for a verification; nothing crosses, not even as
    an entry. Before the accounting was a step of its own, ``get`` touched the tenant's
    ``reads:*`` and ``readmin:*`` beside its verification, and ``reads`` was given accounts and
    the tenant's ``readmin:open`` at once.
    """
    tenant = f"famreads{pseudonym('reads')[:8]}"
    keys = TenantKeys(tenant)
    accounts = [pseudonym(f"{tenant}-{n}") for n in range(3)]
    await bind_accounts(redis, tenant, accounts)
    for account in accounts:
        await redis.hset(keys.account(account), "ip_wire", b"wire")
    # A challenge whose time is up: the read expires it, in the verification's bucket. It holds its
    # account's sealed id for its events, as this release's starts store it (an older one's
    # falls back to the legacy map: KNOWN_CROSSINGS' events:acct, gone once the tenant is walked).
    expiring = f"vf-live-{accounts[0]}"
    await redis.hset(
        keys.verification(expiring), mapping={"challenge_expires_ms": 1, "event_account": "sealed"}
    )
    recording = Recording(redis, script_monitor)
    steps = _stepwise(recording)
    verifications = RedisVerificationStore(
        redis, recording, CodeSendChains(recording, send_limits()), steps=steps
    )
    categories = (Category.VERIFICATION,)
    spec = read_spec(Reader("c1", "platform1", "GetVerification"), categories, 1)
    read = await verifications.read(tenant, expiring, REQUEST_JSON, spec)
    assert read.record.status is Status.EXPIRED, read.record
    reads = RedisReadRecords(redis, recording, steps=steps)
    reader = Reader("c1", "platform1", "GetAccount")
    assert await reads.record(tenant, reader, categories, 1, accounts, only_existing=True) == len(accounts)
    labels = RedisAccounts(redis, recording, 1, steps=steps)
    reader = Reader("c1", "platform1", "GetIpLocations")
    assert await labels.ip_labels(tenant, accounts, reader) == [b"wire"] * len(accounts)
    recording.assert_one_bucket_each("get_verification", "reads_record", "hget", "exists", "hmget")
    # The store clock's sample (in the global slot) aside, the reads and their accountings alone.
    assert {call.name for call in recording.calls} - {"clock"} == {
        "get_verification",
        "reads_record",
        "hget",
        "exists",
        "hmget",
    }
    accounting = ("reads:", "readmin:")
    for call in recording.calls:
        if call.name == "reads_record":  # the tenant's keys alone, and no entry among them
            assert {family_of(key) for key in call.touched} == {Family.TENANT}, call
            assert all(key.partition("}:")[2].startswith(accounting) for key in call.touched), call
        else:  # a read writes no accounting
            assert not [key for key in call.touched if key.partition("}:")[2].startswith(accounting)], call

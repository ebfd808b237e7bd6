"""The store on Redis Cluster: one hash slot per step, cluster-wide commands, failures, WAIT."""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path

import pytest
from redis.crc import key_slot

from idverify.domain.errors import StoreUnavailable
from idverify.domain.subjects import AssuranceLevel
from idverify.flows.bucket_repair import BucketRepairer
from idverify.flows.display_names import Approval, NameHit, NameLookup, NameQuery, NamesApproval
from idverify.flows.erasure import EraseOutcome, ErasureItem, ErasureKind
from idverify.flows.identity_check import CheckStep
from idverify.flows.read_accounting import Category, Reader, read_spec
from idverify.flows.verification.port import AnswerCount, WriteOutcome
from idverify.flows.verification.record import Status
from idverify.security.code_sends import Count
from idverify.store.accounts import RedisAccounts
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import CodeSendChains, RedisCodeSends
from idverify.store.connection import connect, translate_errors
from idverify.store.display_names import RedisDisplayNames
from idverify.store.erasures import RedisErasureStore
from idverify.store.identity_checks import RedisIdentityChecks
from idverify.store.keys import BucketKeys, GlobalKeys, PhoneKeys, TenantKeys
from idverify.store.local_topologies import LocalCluster
from idverify.store.read_records import RedisReadRecords
from idverify.store.scripts import SCRIPT_NAMES, Scripts
from idverify.store.topology import ReplicaAck, is_cluster
from idverify.store.verifications import RedisVerificationStore
from tests import admission_crash, bind_crash, cancel_crash, counter_crash, move_crash
from tests.unit.store import test_erasure_steps as erasure_steps
from tests.unit.usecases import test_verification_contract as contract

pytestmark = pytest.mark.slow


def every_key(keys: object) -> list[str]:
    """Every key constant of a key-schema object, and every key method called with a sample argument."""
    names = [name for name, _ in inspect.getmembers(keys, callable) if not name.startswith("_")]
    made = [value for name, value in inspect.getmembers(keys) if name.isupper() and isinstance(value, str)]
    for name in names:
        method = getattr(keys, name)
        arity = len(inspect.signature(method).parameters)
        made_by_name = method(*(["sample"] * arity))
        # Batch methods (TenantKeys.accounts) name a key per item of their argument.
        made += made_by_name if isinstance(made_by_name, list) else [made_by_name]
    return made


class TestHashSlots:
    def test_every_tenant_key_is_in_the_tenant_slot(self) -> None:
        """All keys of one tenant share a slot, so each step is one script on one shard."""
        for tenant in ("default", "t-2", "x"):
            slots = {key_slot(key.encode()) for key in every_key(TenantKeys(tenant))}
            assert len(slots) == 1, tenant

    def test_tenants_spread_over_slots_and_global_keys_share_one(self) -> None:
        """Different tenants land on different slots; the client keys are one slot of their own."""
        assert len({key_slot(TenantKeys(f"tenant-{n}").audit_log().encode()) for n in range(50)}) > 40
        assert len({key_slot(key.encode()) for key in every_key(GlobalKeys)}) == 1

    def test_a_tenants_buckets_spread_over_slots_of_their_own(self) -> None:
        """Each bucket's keys share a slot; a tenant's 64 buckets take many slots, none the tenant's."""
        buckets = [BucketKeys("t-2", n) for n in range(64)]
        assert all(len({key_slot(key.encode()) for key in every_key(bucket)}) == 1 for bucket in buckets)
        slots = {key_slot(bucket.audit_stage().encode()) for bucket in buckets}
        assert len(slots) > 55
        assert key_slot(TenantKeys("t-2").audit_log().encode()) not in slots

    def test_a_phones_counters_share_a_slot_of_their_own(self) -> None:
        """A phone's deployment-wide counters are one slot; phones spread over the slots."""
        phones = [PhoneKeys(f"{n:032x}") for n in range(50)]
        assert all(len({key_slot(key.encode()) for key in every_key(phone)}) == 1 for phone in phones)
        assert len({key_slot(phone.otp_failures().encode()) for phone in phones}) > 40


class TestOnCluster:
    async def test_the_commands_idverify_sends_work_on_a_cluster(self, redis_cluster: LocalCluster) -> None:
        """PING, TIME, single-key commands, scripts and same-slot pipelines all route on Cluster."""
        client = connect(redis_cluster.url)
        try:
            assert is_cluster(client)
            assert await client.ping()
            seconds, _ = await client.time()
            assert abs(seconds - time.time()) < 5
            keys = TenantKeys("cluster-check")
            scripts = Scripts(client)
            assert sorted(scripts._scripts) == sorted(SCRIPT_NAMES)
            counted = await scripts.run(
                "rate_limit", [keys.rate_limit("t", "p"), keys.audit_log()], [5, 60000, "{}"]
            )
            assert counted
            # A code send: the tenant's step in its slot, then the phone's in the phone's slot.
            budget = [keys.otp_failures("o"), *(keys.rate_limit("s", str(n)) for n in range(5))]
            assert (await scripts.run("send_budget", [*budget, keys.audit_log()], [5, 1, 1, 1, 1, 1, "{}"]))[
                0
            ] == b"OK"
            phone = PhoneKeys(f"{time.time_ns():032x}")  # its own: the cluster is shared
            shared = [phone.otp_failures(), phone.sends_this_hour(), phone.sends_this_day()]
            assert (await scripts.run("phone_send", shared, [5, 10, 20]))[0] == b"OK"
            assert (await scripts.run("phone_guess", [phone.otp_failures()], ["count", 5, 60000]))[0] == b"OK"
            # CheckDisplayName's lookup derives the organization's own key from the account's.
            looked_up = [keys.account("a0"), keys.organization_names(), keys.rate_limit("checks", "p")]
            assert (await scripts.run("display_name", looked_up, [5, 60000, "00" * 16]))[0] == b"OK"
            async with client.pipeline(transaction=False) as pipe:
                for n in range(20):
                    pipe.hmget(keys.account(f"a{n}"), ["identity"])
                assert await pipe.execute() == [[None]] * 20
            # A key of this test's own in the global slot: the cluster is shared with servers
            # that have bootstrapped on it already.
            probe = f"{GlobalKeys.BASE}:cluster-check:{time.time_ns()}"
            assert await client.set(probe, "x", nx=True, px=60_000)
            assert await client.exists(probe) == 1
        finally:
            await client.aclose()

    async def test_counts_in_two_slots_run_at_once_and_give_back_on_a_cluster(
        self, redis_cluster: LocalCluster
    ) -> None:
        """A code send's and a check's two counter steps, at once through the Cluster client."""
        client = connect(redis_cluster.url)
        try:
            scripts = Scripts(client)
            tenant = f"counters{time.time_ns()}"  # its own: the cluster is shared
            sends = RedisCodeSends(scripts, counter_crash.LIMITS)
            outcomes = [
                (await sends.count_send(counter_crash.send_to(tenant, "ph1"))).tenant.outcome
                for _ in range(3)
            ]
            assert outcomes == [Count.OK, Count.OK, Count.LIMITED]
            minute = TenantKeys(tenant).rate_limit("sends-principal-minute", counter_crash.PRINCIPAL)
            assert int(await client.get(minute) or 0) == 2  # the refused send's budget given back
            checks = RedisIdentityChecks(client, scripts)
            tally = counter_crash.check_of(tenant, "acct1")
            assert [await checks.tally(tally, CheckStep.MISMATCH) for _ in range(2)] == [None, None]
            limited = await checks.tally(tally, CheckStep.MISMATCH)
            assert limited is not None
            assert limited.reached == "CHECK_LIMIT_REACHED"
            principal = TenantKeys(tenant).check_mismatches("principal", counter_crash.PRINCIPAL)
            assert int(await client.get(principal) or 0) == 2
        finally:
            await client.aclose()

    async def test_an_answer_from_a_remembered_record_is_checked_before_its_count(
        self, redis_cluster: LocalCluster
    ) -> None:
        """On Cluster the check is a step of its own, still before the count in the phone's slot."""
        client = connect(redis_cluster.url)
        try:
            scripts = Scripts(client)
            store = RedisVerificationStore(client, scripts, CodeSendChains(scripts, contract.LIMITS))
            # The verification, its account and phone of this test's own: the cluster is shared.
            vid, account, phone = f"{time.time_ns():032x}", f"a{time.time_ns()}", f"{time.time_ns():032x}"
            await store.commit(contract.new(vid, contract.challenge(account), "challenge"), contract.unmoved)
            remembered = await store.record(contract.T, vid)
            assert remembered is not None
            wrong = AnswerCount(phone, wrong=True, lock_pseudonym=f"otp-{account}", request=contract.REQUEST)
            counted = await store.submit(
                contract.answer(vid, "00" * 16, count=wrong, expect=remembered), contract.as_read(remembered)
            )
            assert (counted.outcome, counted.record.attempts_left) == (WriteOutcome.DONE, 2)
            stale = await store.submit(
                contract.answer(vid, "00" * 16, count=wrong, expect=remembered), contract.as_read(remembered)
            )
            assert stale.outcome is WriteOutcome.STALE
            assert await client.get(PhoneKeys(phone).otp_failures()) == b"1"
            assert await store.record(contract.T, vid) == counted.record
        finally:
            await client.aclose()

    async def test_a_starts_admission_runs_step_by_step_and_is_killed_at_a_boundary(
        self, redis_cluster: LocalCluster
    ) -> None:
        """The reads with the claims' counter, the account's chain, the window; a kill leaves the TTL.

        Through the Cluster client, which runs it step by step with no argument
        (``store.admission_steps``): a full window refuses after the consents, the claims at their
        limit refuse after the reservation, and a process killed after the account's chain leaves
        the request id to its short TTL and no window count.
        """
        client = connect(redis_cluster.url)
        try:
            tenant = f"admission{time.time_ns()}"  # its own: the cluster is shared
            keys, store = TenantKeys(tenant), admission_crash.store_of(client)
            window = keys.rate_limit("identity", admission_crash.IDENTITY)
            read = await store.read_start(tenant, admission_crash.REQUEST, "tag")
            assert read.claim_refusals == 0
            answers = []
            for n in range(admission_crash.WINDOW_LIMIT + 1):
                attempt = admission_crash.attempt(
                    tenant, f"vf-{n}", 0, request=admission_crash.request_of(f"req-{n}")
                )
                answers.append(await store.admit(attempt))
            assert [answer.window_refusal is None for answer in answers] == [True, True, False]
            assert int(await client.get(window) or 0) == admission_crash.WINDOW_LIMIT + 1
            claims = keys.rate_limit("claim_refusals", admission_crash.NAME_TAG)
            await client.set(claims, admission_crash.CLAIMS_LIMIT, px=60_000)
            limited = await store.admit(
                admission_crash.attempt(tenant, "vf-c", None, request=admission_crash.request_of("req-c"))
            )
            assert limited.claims_refusal is not None
            assert limited.reservation.value == "reserved"
            await client.delete(window, claims)
            admission_crash.killed_after(redis_cluster.url, tenant, "read", 1)
            assert await client.get(window) is None
            held = keys.request(admission_crash.REQUEST.pseudonym)
            assert 0 < await client.pttl(held) <= admission_crash.RESERVATION_MS
        finally:
            await client.aclose()

    async def test_waiting_for_a_replica_that_does_not_exist_fails_as_unavailable(
        self, redis_cluster: LocalCluster
    ) -> None:
        """An acknowledged step on a primary without replicas times out into StoreUnavailable."""
        client = connect(redis_cluster.url)
        try:
            keys = TenantKeys("cluster-wait")
            scripts = Scripts(client, ack=ReplicaAck(replicas=1, timeout_ms=100))
            with pytest.raises(StoreUnavailable, match="0 of 1 replica"):
                await scripts.run(
                    "submit",
                    [keys.verification("v"), keys.audit_log(), *(keys.account(f"k{n}") for n in range(4))],
                    ["00", 1, 1000, "{}"],
                )
        finally:
            await client.aclose()


class TestClusterOutage:
    async def test_a_lost_shard_fails_fast_as_unavailable(self, tmp_path: Path) -> None:
        """With one primary down, calls on its slots answer StoreUnavailable within seconds."""
        with LocalCluster(tmp_path / "c", node_timeout_ms=1000) as cluster:
            client = connect(cluster.url)
            try:
                tenants = [f"tenant-{n}" for n in range(30)]
                for tenant in tenants:
                    await client.set(TenantKeys(tenant).rate_limit("x", "y"), 1)
                cluster.primary_nodes[0].stop(hard=True)
                failures = 0
                for tenant in tenants:
                    began = time.monotonic()
                    try:
                        async with translate_errors():
                            await client.get(TenantKeys(tenant).rate_limit("x", "y"))
                    except StoreUnavailable:
                        failures += 1
                    assert time.monotonic() - began < 4
                assert failures > 0
            finally:
                await client.aclose()


class TestDisplayNamesOnCluster:
    """A lookup and an approval: the account read in its slot, then the tenant's step (§3.5)."""

    async def test_a_lookup_and_an_approval_run_step_by_step(self, redis_cluster: LocalCluster) -> None:
        client = connect(redis_cluster.url)
        try:
            tenant = f"names-{time.time_ns()}"
            account = cancel_crash.pseudonym(f"{tenant}-a")
            await cancel_crash.bind_accounts(client, tenant, [account])
            scripts = Scripts(client)
            names = RedisDisplayNames(scripts)
            assert not StepRunner(scripts).chained
            looked = await names.look_up(
                NameQuery(tenant, account, "c1", (cancel_crash.NAME_HASH,), 5, 60_000)
            )
            assert isinstance(looked, NameLookup)
            assert looked.hits == (NameHit(0, frozenset({cancel_crash.TAG}), "v"),)
            audit = {"principal": "p", "request_id": "r", "trace_id": "", "span": "", "account": ""}
            brand = NamesApproval(tenant, account, ("cd" * 16,), (), AssuranceLevel.LOW, audit)
            assert await names.approve(brand) == (Approval.APPROVED, 1)
            own = await client.hgetall(TenantKeys(tenant).organization_own_names(cancel_crash.TAG))
            assert own == {cancel_crash.NAME_HASH.encode(): b"v", b"cd" * 16: b"a"}
            await RedisErasureStore(client, scripts).cancel(tenant, cancel_crash.cancellation(account, "c1"))
            assert await names.approve(brand) == (Approval.NOT_BOUND, 0)
            assert not await client.exists(TenantKeys(tenant).organization_own_names(cancel_crash.TAG))
        finally:
            await client.aclose()


class TestCancellationOnCluster:
    """A cancellation's steps run one by one on a Cluster, and a worker killed between them is repaired."""

    async def test_a_cancellation_runs_step_by_step_to_the_same_result(
        self, redis_cluster: LocalCluster
    ) -> None:
        client = connect(redis_cluster.url)
        try:
            tenant = f"cancel-{time.time_ns()}"
            target, other = cancel_crash.pseudonym(f"{tenant}-a"), cancel_crash.pseudonym(f"{tenant}-b")
            await cancel_crash.bind_accounts(client, tenant, [target, other])
            scripts = Scripts(client)
            store = RedisErasureStore(client, scripts)
            assert not StepRunner(scripts).chained
            first = cancel_crash.cancellation(target, "c1")
            assert await store.cancel(tenant, first) == cancel_crash.DUE_MS
            await cancel_crash.assert_cancelled_once(client, tenant, first, [other])
            last = cancel_crash.cancellation(other, "c2")
            assert await store.cancel(tenant, last) == cancel_crash.DUE_MS
            queue = await client.zrange(TenantKeys(tenant).erasure_due(), 0, -1)
            assert f"i:{cancel_crash.REF}".encode() in queue
            assert not await client.exists(TenantKeys(tenant).organization_own_names(cancel_crash.TAG))
        finally:
            await client.aclose()

    async def test_a_worker_killed_between_steps_is_repaired(self, redis_cluster: LocalCluster) -> None:
        client = connect(redis_cluster.url)
        try:
            tenant = f"cancel-kill-{time.time_ns()}"
            target = cancel_crash.pseudonym(f"{tenant}-a")
            await cancel_crash.bind_accounts(client, tenant, [target])
            cancelled = cancel_crash.cancellation(target, "c-killed")
            await asyncio.to_thread(cancel_crash.killed_after, redis_cluster.url, tenant, cancelled, 2)
            assert await client.zcard(TenantKeys(tenant).intents()) == 1
            repairer = BucketRepairer(cancel_crash.LaterRepairs(client, Scripts(client)))
            assert await repairer.repair(tenant) == 1
            await cancel_crash.assert_cancelled_once(client, tenant, cancelled, [])
        finally:
            await client.aclose()


class TestReindexOnCluster:
    """An identity's move runs its steps one by one on a Cluster; a worker killed between is repaired."""

    async def test_a_move_runs_step_by_step_to_the_same_result(self, redis_cluster: LocalCluster) -> None:
        client = connect(redis_cluster.url)
        try:
            tenant = f"move-{time.time_ns()}"
            accounts = [cancel_crash.pseudonym(f"{tenant}-{n}") for n in range(move_crash.MEMBERS)]
            await move_crash.bound_identity(client, tenant, accounts)
            runner = StepRunner(Scripts(client))
            assert not runner.chained
            assert await move_crash.move(client, tenant, runner) == "OK"
            await move_crash.assert_moved_once(client, tenant, accounts)
        finally:
            await client.aclose()

    async def test_a_worker_killed_between_steps_is_repaired(self, redis_cluster: LocalCluster) -> None:
        client = connect(redis_cluster.url)
        try:
            tenant = f"move-kill-{time.time_ns()}"
            accounts = [cancel_crash.pseudonym(f"{tenant}-{n}") for n in range(move_crash.MEMBERS)]
            await move_crash.bound_identity(client, tenant, accounts)
            await asyncio.to_thread(move_crash.moved_killed_after, redis_cluster.url, tenant, 3)
            assert await client.zcard(TenantKeys(tenant).intents()) == 1
            # The repairers visit the tenant: the move named it first.
            assert tenant in await RedisErasureStore(client, Scripts(client)).tenants()
            repairer = BucketRepairer(cancel_crash.LaterRepairs(client, Scripts(client)))
            assert await repairer.repair(tenant) == 1
            await move_crash.assert_moved_once(client, tenant, accounts)
        finally:
            await client.aclose()


class TestErasureOnCluster:
    """An account's erasure runs its steps one by one on a Cluster; a worker killed between is repaired."""

    async def test_an_erasure_killed_after_the_accounts_step_is_repaired(
        self, redis_cluster: LocalCluster
    ) -> None:
        client = connect(redis_cluster.url)
        try:
            tenant = f"erase-kill-{time.time_ns()}"
            cancelled, other, _ = await erasure_steps.due_and_read(client, tenant)
            await asyncio.to_thread(
                cancel_crash.killed_after, redis_cluster.url, tenant, cancelled, 1, erase=True
            )
            keys = TenantKeys(tenant)
            assert not await client.exists(keys.account(cancelled.account_pseudonym))
            assert await client.zcard(keys.intents()) == 1
            repairer = BucketRepairer(cancel_crash.LaterRepairs(client, Scripts(client)))
            assert await repairer.repair(tenant) == 1
            for minute in erasure_steps.MINUTES:
                assert await client.smembers(keys.reads_minute_accounts(minute)) == {other.encode()}
            entries = await cancel_crash.entries(client, tenant)
            assert [e["account"] for e in entries if e["type"] == "account.erased"] == [
                cancelled.audit_pseudonym
            ]
            assert await client.zcard(keys.intents()) == 0
            # The next one runs to the end in one call, leaving no intent either.
            again = cancel_crash.cancellation(other, "c-other", due_ms=1)
            store = RedisErasureStore(client, Scripts(client))
            assert await store.cancel(tenant, again) == 1
            item = ErasureItem(ErasureKind.ACCOUNT, other)
            assert await store.erase(tenant, item, again.request_json) is EraseOutcome.ERASED
            for minute in erasure_steps.MINUTES:
                assert await client.smembers(keys.reads_minute_accounts(minute)) == set()
            assert await client.zcard(keys.intents()) == 0
        finally:
            await client.aclose()

    async def test_an_identitys_erasure_waits_for_a_place_being_finished(
        self, redis_cluster: LocalCluster
    ) -> None:
        """The intents' key and the place intent's record it reads are in the identity's slot."""
        client = connect(redis_cluster.url)
        try:
            tenant = f"erase-place-{time.time_ns()}"
            keys = TenantKeys(tenant)
            target = cancel_crash.pseudonym(f"{tenant}-a")
            await cancel_crash.bind_accounts(client, tenant, [target])
            store = RedisErasureStore(client, Scripts(client))
            cancelled = cancel_crash.cancellation(target, "c-place", due_ms=1)
            assert await store.cancel(tenant, cancelled) == 1
            # What a binding of the identity killed after its commit leaves: its place's intent.
            await client.hset(
                keys.intent("place:vf-killed"), mapping={"kind": "place", "ref": cancel_crash.REF}
            )
            await client.zadd(keys.intents(), {"place:vf-killed": 1})
            item = ErasureItem(ErasureKind.IDENTITY, cancel_crash.REF)
            assert await store.erase(tenant, item, cancelled.request_json) is EraseOutcome.GONE
            assert await client.exists(keys.identity(cancel_crash.REF))
            await client.zrem(keys.intents(), "place:vf-killed")  # its repair done
            assert await store.erase(tenant, item, cancelled.request_json) is EraseOutcome.ERASED
            assert not await client.exists(keys.identity(cancel_crash.REF))
        finally:
            await client.aclose()


class TestBindingOnCluster:
    """A right answer's binding runs step by step on a Cluster; a worker killed between is repaired."""

    async def test_an_answer_that_establishes_a_claim_binds_step_by_step(
        self, redis_cluster: LocalCluster
    ) -> None:
        client = connect(redis_cluster.url)
        try:
            tenant = f"bind-{time.time_ns()}"
            squatter, target = cancel_crash.pseudonym(f"{tenant}-s"), cancel_crash.pseudonym(f"{tenant}-a")
            await bind_crash.bind(client, tenant, squatter, bind_crash.SQUATTER)
            names = ",".join(bind_crash.ORG_NAMES)
            vid = await bind_crash.challenge(
                client, tenant, target, bind_crash.OWNER, establishes=True, org_names=names
            )
            written = await bind_crash.answer(bind_crash.store_of(client), tenant, vid)
            assert written.record.status is Status.VERIFIED, written
            tag = bind_crash.OWNER["name_tag"]
            await bind_crash.assert_bound_once(
                client, tenant, vid, target, tag, types=bind_crash.ESTABLISHING
            )
            assert not await client.hexists(TenantKeys(tenant).account(squatter), "identity")
            # The organization's names, indexed by their own step.
            assert await bind_crash.names_indexed(client, tenant, tag) == dict.fromkeys(
                bind_crash.ORG_NAMES, tag
            )
        finally:
            await client.aclose()

    async def test_a_worker_killed_after_the_place_is_repaired(self, redis_cluster: LocalCluster) -> None:
        client = connect(redis_cluster.url)
        try:
            tenant = f"bind-kill-{time.time_ns()}"
            target = cancel_crash.pseudonym(f"{tenant}-a")
            vid = await bind_crash.challenge(client, tenant, target, bind_crash.OWNER)
            await asyncio.to_thread(bind_crash.killed_after, redis_cluster.url, tenant, vid, 2)
            assert await client.zcard(TenantKeys(tenant).intents()) == 2
            repairer = BucketRepairer(cancel_crash.LaterRepairs(client, Scripts(client)))
            assert await repairer.repair(tenant) >= 1
            await bind_crash.assert_bound_once(
                client, tenant, vid, target, bind_crash.OWNER["name_tag"], types=bind_crash.PLAIN
            )
        finally:
            await client.aclose()


class TestReadsOnCluster:
    """The reads followed by one write run step by step on a Cluster: the reads, then the accounting."""

    async def test_a_verification_labels_and_accounts_read_and_recorded(
        self, redis_cluster: LocalCluster
    ) -> None:
        client = connect(redis_cluster.url)
        try:
            tenant = f"reads-{time.time_ns()}"
            keys = TenantKeys(tenant)
            accounts = [cancel_crash.pseudonym(f"{tenant}-{n}") for n in range(3)]
            await cancel_crash.bind_accounts(client, tenant, accounts)
            await client.hset(keys.account(accounts[0]), "ip_wire", b"wire")
            scripts = Scripts(client)
            steps = StepRunner(scripts)
            assert not steps.chained
            reader = Reader("c1", "t/platform/c1", "GetVerification")
            spec = read_spec(reader, (Category.VERIFICATION,), 1)
            store = RedisVerificationStore(client, scripts, CodeSendChains(scripts, contract.LIMITS))
            read = await store.read(tenant, f"vf-{accounts[1]}", bind_crash.REQUEST_JSON, spec)
            assert read.record.status is Status.VERIFIED
            records = RedisReadRecords(client, scripts)
            counted = await records.record(
                tenant, reader, (Category.VERIFICATION,), 1, accounts, only_existing=True
            )
            assert counted == len(accounts)
            labels = await RedisAccounts(client, scripts, 1).ip_labels(tenant, accounts, reader)
            assert labels == [b"wire", None, None]
            [minute] = await client.zrange(keys.reads_open(), 0, -1)
            read_accounts = await client.smembers(keys.reads_minute_accounts(minute.decode()))
            assert read_accounts == {account.encode() for account in accounts}
            counts = await client.hgetall(keys.reads_minute_counts(minute.decode()))
            assert counts[b"calls:GetVerification"] == b"3"
            assert counts[b"accounts:GetVerification"] == b"5"  # 1 + 3 + the one label
        finally:
            await client.aclose()

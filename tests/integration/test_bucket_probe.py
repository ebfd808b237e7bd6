"""The step sequences on a real 3-primary Cluster with a bucketed tenant's keys (issue 26, §2, §6).

The family tests (``tests/unit/store/test_*_families.py``) judge each step's keys by their names
on today's layout. This probe names them as a bucketed tenant would (``TenantKeys(T, layout)``),
so that the Cluster itself says whether a sequence still works: a key derived in Lua from
another family's prefix, or two families given to one script, is an error here, not a name.

What cannot run so yet is :data:`PROBE_BLOCKED`, each entry with why, and each expected by
``test_what_is_blocked_is_still_blocked``: an entry whose blocker is gone fails that test, so the
list only shrinks (the way ``KNOWN_CROSSINGS`` works for the family tests).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from idverify.domain.subjects import AssuranceLevel
from idverify.flows.display_names import Approval, NameLookup, NameQuery, NamesApproval
from idverify.flows.identity_check import CheckStep
from idverify.store.admission_steps import AdmissionSteps
from idverify.store.binding_steps import BindingSteps
from idverify.store.bucket_steps import StepRunner
from idverify.store.buckets import search_layout
from idverify.store.cancellation_steps import CancellationSteps
from idverify.store.code_sends import RedisCodeSends
from idverify.store.connection import RedisClient, connect
from idverify.store.display_names import RedisDisplayNames
from idverify.store.erasure_steps import ErasureSteps
from idverify.store.erasures import RedisErasureStore
from idverify.store.identity_checks import RedisIdentityChecks
from idverify.store.identity_move_steps import IdentityMoveSteps
from idverify.store.intent_repairs import RedisIntentRepairs
from idverify.store.keys import TenantKeys
from idverify.store.local_topologies import LocalCluster
from idverify.store.scripts import Scripts
from idverify.store.verifications import RedisVerificationStore
from tests import counter_crash

pytestmark = pytest.mark.slow

ACCOUNT = "0123456789abcdef" * 2
REF = "probe-identity-ref"
TAG = "tag-probe-org"
NAME_HASH = "ab" * 16
TAKEN = "ef" * 16
BRAND = "cd" * 16
PHONE = "+8613800000000"
AUDIT = {"principal": "t/admin/a1", "request_id": "r1", "trace_id": "", "span": "", "account": ""}


@dataclass(frozen=True)
class Blocked:
    """A sequence the probe cannot run in buckets yet: why, and the stores that take no namer."""

    why: str
    flat_stores: tuple[type, ...] = ()


PROBE_BLOCKED: dict[str, Blocked] = {
    "code_send": Blocked(
        "a send to count (security.code_sends.SendToCount) carries no account pseudonym, so its "
        "wrong-code counter (otpfail, A) read beside the two counters' steps, and a lock's "
        "audited mark, cannot be named in the account's bucket: the namer refuses them"
    ),
    "binding": Blocked(
        "a right answer's binding (plain, and establishing a claim over a squatter) and the "
        "start in bind mode the other sequences are seeded with: their stores name every key "
        "in {t:T} and give the tenant's log to each step",
        (BindingSteps, RedisVerificationStore),
    ),
    "cancellation": Blocked(
        "the cancellation of the last member: its store names the intents and erasure:due of "
        "{t:T}, not beside the account's key",
        (CancellationSteps, RedisErasureStore),
    ),
    "erasure": Blocked(
        "an account's and an identity's erasure: as the cancellation's",
        (ErasureSteps, RedisErasureStore),
    ),
    "reindexing": Blocked(
        "a re-indexing move: its intent and the two identities' keys are named in {t:T}",
        (IdentityMoveSteps,),
    ),
    "admission": Blocked(
        "a start's admission: its reservation (req, released), consents, claims' count and "
        "window are named in {t:T} and given the tenant's log",
        (AdmissionSteps,),
    ),
    "repairer": Blocked(
        "the repairer reads one tenant-wide intents index, not each of 1,024 buckets'",
        (RedisIntentRepairs,),
    ),
}


@pytest.fixture
async def cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[RedisClient]:
    client = connect(redis_cluster.url)
    try:
        yield client
    finally:
        await client.aclose()


def bucketed(tenant: str) -> TenantKeys:
    """The namer of a bucketed ``tenant`` (its layout as searched; no verification id is named here)."""
    return TenantKeys(tenant, search_layout(tenant))


async def _organization(client: RedisClient, keys: TenantKeys) -> None:
    """A bound organization account holding one verified name, and a name another organization holds."""
    await client.hset(
        keys.account(ACCOUNT),
        mapping={
            "identity": REF,
            "kind": "organization",
            "assurance": "high",
            "name_tag": TAG,
            "audit": "aud1",
        },
    )
    await client.hset(keys.organization_names(), mapping={NAME_HASH: TAG, TAKEN: "tag-another-org"})
    await client.hset(keys.organization_own_names(TAG), NAME_HASH, "v")


async def _names_sequence(
    client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys]
) -> tuple[NameLookup, tuple[Approval, int], tuple[Approval, int]]:
    """CheckDisplayName's lookup, an approval and a NAME_TAKEN refusal, step by step (§3.5)."""
    await _organization(client, namer(tenant))
    scripts = Scripts(client)
    names = RedisDisplayNames(scripts, steps=StepRunner(scripts, step_by_step=True), keys=namer)
    looked = await names.look_up(NameQuery(tenant, ACCOUNT, "caller", (NAME_HASH, TAKEN), 100, 60_000))
    assert isinstance(looked, NameLookup)
    approved = await names.approve(
        NamesApproval(tenant, ACCOUNT, (BRAND,), ("ce" * 16,), AssuranceLevel.LOW, AUDIT)
    )
    refused = await names.approve(
        NamesApproval(tenant, ACCOUNT, ("cf" * 16,), (TAKEN,), AssuranceLevel.LOW, AUDIT)
    )
    return looked, approved, refused


class TestRunsClean:
    async def test_a_display_names_lookup_and_approvals_answer_as_on_todays_layout(
        self, cluster_client: RedisClient
    ) -> None:
        """The account read in its bucket, then the tenant's step: today's answers, and no slot crossed."""
        stamp = time.time_ns()  # tenants of its own: the cluster is shared
        flat_tenant, bucketed_tenant = f"probeflat{stamp}", f"probebkt{stamp}"
        assert bucketed(bucketed_tenant).account(ACCOUNT) != TenantKeys(bucketed_tenant).account(ACCOUNT)
        today = await _names_sequence(cluster_client, flat_tenant, TenantKeys)
        in_buckets = await _names_sequence(cluster_client, bucketed_tenant, bucketed)
        assert in_buckets == today
        looked, approved, refused = in_buckets
        assert looked.bound
        assert looked.name_tag == TAG
        assert len(looked.hits) == 2
        assert approved == (Approval.APPROVED, 1)
        assert refused == (Approval.NAME_TAKEN, 0)
        # The approval's writes went to the tenant's keys, the account's read to its bucket alone.
        keys = bucketed(bucketed_tenant)
        assert await cluster_client.hget(keys.organization_own_names(TAG), BRAND) == b"a"
        assert await cluster_client.hget(keys.audit_head(), "size") == b"2"

    async def test_identity_checks_counters_in_two_slots_answer_as_on_todays_layout(
        self, cluster_client: RedisClient
    ) -> None:
        """The account's counter in its bucket, the caller's in T's, a refused count given back beside it."""
        stamp = time.time_ns()
        flat_tenant, bucketed_tenant = f"probeflatc{stamp}", f"probebktc{stamp}"
        today = await _checks_past_their_limit(cluster_client, flat_tenant, TenantKeys)
        in_buckets = await _checks_past_their_limit(cluster_client, bucketed_tenant, bucketed)
        assert in_buckets == today
        assert today[:2] == [None, None]
        assert None not in today[2:]
        keys = bucketed(bucketed_tenant)
        account_counter = keys.check_mismatches("acct", ACCOUNT)
        assert account_counter != TenantKeys(bucketed_tenant).check_mismatches("acct", ACCOUNT)
        # Each refused count was given back: the counters hold the two admitted mismatches.
        assert await cluster_client.get(account_counter) == b"2"
        assert await cluster_client.get(keys.check_mismatches("principal", counter_crash.PRINCIPAL)) == b"2"
        # Each check's entry is the tenant's step's, in the log: two counted, two refused.
        assert await cluster_client.hget(keys.audit_head(), "size") == b"4"

    async def test_a_counters_entry_is_staged_in_its_bucket_in_the_bytes_the_log_holds(
        self, cluster_client: RedisClient
    ) -> None:
        """A phone's window reached: its mark (C) and its entry in one step, the entry staged beside it."""
        stamp = time.time_ns()
        flat_tenant, bucketed_tenant = f"probeflate{stamp}", f"probebkte{stamp}"
        scripts = Scripts(cluster_client)
        for each, naming in ((flat_tenant, TenantKeys), (bucketed_tenant, bucketed)):
            sends = RedisCodeSends(scripts, counter_crash.LIMITS, keys=naming)
            await sends.audit_phone_limited(counter_crash.send_to(each, PHONE), 60_000)
        [logged] = (await cluster_client.hgetall(TenantKeys(flat_tenant).audit_log())).values()
        keys = bucketed(bucketed_tenant)
        marker = keys.rate_limit(
            "phone_all_tenants_audited", counter_crash.send_to(bucketed_tenant, PHONE).names.tenant_phone
        )
        stage = keys.audit_entries(marker)
        assert stage.endswith(":audit:stage")
        assert await cluster_client.exists(keys.audit_log()) == 0
        [(_, staged)] = await cluster_client.xrange(stage)
        # The entry's bytes after its number and time are the staged body, tenant and all alike.
        body = staged[b"b"].replace(bucketed_tenant.encode(), flat_tenant.encode())
        assert logged.endswith(body)
        assert logged.startswith(b'{"v":1,"seq":0,"time_ms":')


async def _checks_past_their_limit(
    client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys]
) -> list[str | None]:
    """Four wrong claims against one account, limited at two: each tally's refusal (what it reached)."""
    scripts = Scripts(client)
    checks = RedisIdentityChecks(client, scripts, steps=StepRunner(scripts, step_by_step=True), keys=namer)
    answers = [
        await checks.tally(counter_crash.check_of(tenant, ACCOUNT), CheckStep.MISMATCH) for _ in range(4)
    ]
    return [answer.reached if answer is not None else None for answer in answers]


class TestBlocked:
    @pytest.mark.parametrize("sequence", sorted(PROBE_BLOCKED))
    async def test_what_is_blocked_is_still_blocked(self, cluster_client: RedisClient, sequence: str) -> None:
        """Each entry's blocker still happens: once it does not, the entry goes (the list only shrinks)."""
        blocked = PROBE_BLOCKED[sequence]
        taking = [
            store.__name__ for store in blocked.flat_stores if "keys" in inspect.signature(store).parameters
        ]
        assert taking == [], f"{taking} take a namer now: probe {sequence} and shrink its entry"
        if sequence == "code_send":
            sends = RedisCodeSends(Scripts(cluster_client), counter_crash.LIMITS, keys=bucketed)
            with pytest.raises(ValueError, match="otpfail key is named with its account"):
                await sends.count_send(counter_crash.send_to(f"probesend{time.time_ns()}", PHONE))
        else:
            assert blocked.flat_stores, f"{sequence}: an entry says what blocks it"

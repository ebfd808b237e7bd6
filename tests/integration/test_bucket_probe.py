"""The step sequences on a real 3-primary Cluster with a bucketed tenant's keys (issue 26, §2, §6).

The family tests (``tests/unit/store/test_*_families.py``) judge each step's keys by their names
on today's layout. This probe names them as a bucketed tenant would (``TenantKeys(T, layout)``),
so that the Cluster itself says whether a sequence still works: a key derived in Lua from
another family's prefix, or two families given to one script, is an error here, not a name.
Each sequence runs in a tenant on today's names and in a bucketed one, and must answer and store
the same: the display names', CheckIdentity's counters, a counter's staged entry, and a signup's
(``TestSignupsRunClean``: admission, code send, right answers plain and establishing, a wrong and
an expired answer, a start in ``bind`` mode, a guardian's consent).

The sequences of several buckets run step by step (``TestRunsCleanStepByStep``: a last member's
cancellation, the erasures after it, a re-indexing), whole and with their worker stopped dead
after each step, then finished by the repairer reading every bucket's intents. The list of what
could not run so yet (``PROBE_BLOCKED``) is gone, its last entries with the stores that now take
a namer. A signup's staged entries are folded into the log by one pass of a sequencer given the
namer, which reads the labels' stages (``TestSignupsSequenced``); what the probe does not meet
yet is in docs/ARCHITECTURE.md, §6.

A bucketed tenant's key walks (``TestTheKeyWalksFindTheBuckets``): after its signups, a
cancellation and the erasures, an incident's holdings count what today's names' count, and a
tenant's removal erases every key of every bucket, no other tenant's.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import merkle
from idverify.audit.checkpoint import TreeHead, TreeHeadSigner, verify_signed_head
from idverify.audit.integrator import TreeIntegrator
from idverify.audit.sequencer import PositionState
from idverify.domain.birth_dates import AgeSource
from idverify.domain.buckets import bucket_of
from idverify.domain.errors import FailedPrecondition
from idverify.domain.subjects import AgeBand, AssuranceLevel
from idverify.flows.bucket_repair import BucketRepairer
from idverify.flows.consent import ConsentAdmission
from idverify.flows.display_names import Approval, NameLookup, NameQuery, NamesApproval
from idverify.flows.erasure import EraseOutcome, ErasureItem, ErasureKind
from idverify.flows.identity_check import CheckStep
from idverify.flows.verification.port import (
    GUARDIAN_FIELDS,
    Admission,
    ChallengeAnswer,
    ClaimsCheck,
    CodeSend,
    GuardianGrant,
    NewVerification,
    RequestRef,
    WindowCount,
    Written,
)
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.privacy.keyring import Keyring
from idverify.privacy.verification_ids import new_verification_id, verification_id_bucket
from idverify.store.audit_stages import RedisAuditStages, stage_sequencer
from idverify.store.audit_store import AuditStore
from idverify.store.bucket_steps import StepRunner
from idverify.store.buckets import search_layout
from idverify.store.code_sends import CodeSendChains, RedisCodeSends
from idverify.store.connection import RedisClient, as_text, connect
from idverify.store.display_names import RedisDisplayNames
from idverify.store.erasures import RedisErasureStore
from idverify.store.identity_checks import RedisIdentityChecks
from idverify.store.identity_move_steps import IdentityMoveSteps, MoveRecord
from idverify.store.incident_reads import RedisIncidentStore
from idverify.store.keys import TenantKeys
from idverify.store.local_topologies import LocalCluster
from idverify.store.scripts import Scripts, hash_fields
from idverify.store.tenant_removals import RedisRemovalStore
from idverify.store.verifications import RedisVerificationStore
from idverify.testing.memory_code_sends import send_limits
from tests import cancel_crash, counter_crash, rfc6962
from tests.bind_crash import DIGEST, OWNER, REQUEST_JSON, SQUATTER
from tests.cancel_crash import pseudonym
from tests.unit.store.test_identity_accounts import REF as SIGNUP_REF
from tests.unit.store.test_identity_accounts import verification

pytestmark = pytest.mark.slow

ACCOUNT = "0123456789abcdef" * 2
REF = "probe-identity-ref"
TAG = "tag-probe-org"
NAME_HASH = "ab" * 16
TAKEN = "ef" * 16
BRAND = "cd" * 16
PHONE = "+8613800000000"
AUDIT = {"principal": "t/admin/a1", "request_id": "r1", "trace_id": "", "span": "", "account": ""}


@pytest.fixture
async def cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[RedisClient]:
    client = connect(redis_cluster.url)
    try:
        yield client
    finally:
        await client.aclose()


# A layout is searched once a tenant, as a server reads a tenant's stored one once.
_layout_of = functools.cache(search_layout)


def bucketed(tenant: str) -> TenantKeys:
    """The namer of a bucketed ``tenant`` (its layout as searched; no verification id is named here)."""
    return TenantKeys(tenant, _layout_of(tenant))


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


# The cancellation, erasures and re-indexing below run step by step, as on any Cluster, and
# each may be stopped dead after a step (nothing after it runs, as after a SIGKILL of its
# worker) and finished by the repairer, reading the intents of every bucket.
LONG_DUE_MS = 1_000  # an erasure due from the start: the worker takes it at once
NEW_REF = "probe-identity-ref-new"
OLD_BINDING, NEW_BINDING = "binding-org", "binding-org-new"
_ENTRY_HEAD = re.compile(rb'^\{"v":1,"seq":\d+,"time_ms":\d+')


class Killed(BaseException):
    """The worker stopped dead at a step boundary: nothing of it runs after (as after a SIGKILL)."""


class KilledAfter(StepRunner):
    """Step by step, and the worker dies once its ``nth`` step answered (``None``: it never does)."""

    def __init__(self, scripts: Scripts, nth: int | None) -> None:
        super().__init__(scripts, step_by_step=True)
        self._nth = nth

    async def _reached(self, sequence: str, done: int) -> None:
        if done == self._nth:
            raise Killed(f"{sequence} after its step {done}")


async def _run_or_repair(
    client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys], call: Any, killed_after: int | None
) -> Any:
    """``call``'s answer; when its worker died, None once a later repairer pass finished its sequence."""
    try:
        answer = await call
    except Killed:
        assert killed_after is not None
    else:
        assert killed_after is None, f"no step {killed_after} to be killed after"
        return answer
    repairs = cancel_crash.LaterRepairs(client, Scripts(client), keys=namer)
    finished = await BucketRepairer(repairs).repair(tenant)
    left = await _intents_left(client, tenant, namer)
    assert (finished, left) == (1, 0)
    return None


async def _seed_bound_organization(client: RedisClient, keys: TenantKeys, ref: str = REF) -> None:
    """ACCOUNT bound to ``ref``, its identity's only member, its organization holding one name."""
    await client.hset(
        keys.account(ACCOUNT),
        mapping={
            "identity": ref,
            "kind": "organization",
            "assurance": "high",
            "name_tag": TAG,
            "audit": "aud1",
        },
    )
    await client.hset(keys.identity(ref), mapping={"name_binding": OLD_BINDING, f"m:{ACCOUNT}": f"b:{TAG}"})
    await client.sadd(keys.identity_accounts(ref), ACCOUNT)
    await client.hset(keys.organization_names(), NAME_HASH, TAG)
    await client.hset(keys.organization_own_names(TAG), NAME_HASH, "v")


async def _entries(client: RedisClient, tenant: str, keys: TenantKeys) -> list[bytes]:
    """Every entry's body (after its number and time), the log's and every bucket's stage's, sorted."""
    logged = await client.hgetall(keys.audit_log())
    bodies = [_ENTRY_HEAD.sub(b"", entry) for entry in logged.values()]
    if keys.bucketed:
        async with client.pipeline(transaction=False) as pipe:
            for prefix in keys.bucket_prefixes():
                pipe.xrange(keys.audit_entries(prefix))
            for stage in await pipe.execute():
                bodies.extend(record[b"b"] for _, record in stage)
    return sorted(body.replace(tenant.encode(), b"<tenant>") for body in bodies)


async def _intents_left(client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys]) -> int:
    """Intents of every bucket, due or not."""
    return len(await cancel_crash.LaterRepairs(client, Scripts(client), keys=namer).due(tenant, 2**62, 64))


async def _outcome(client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys]) -> dict[str, Any]:
    """What the sequences leave, tenant-free: the records, the queue, the names, the intents, the entries."""
    keys = namer(tenant)
    account = hash_fields(await client.hgetall(keys.account(ACCOUNT)))
    records = {}
    for ref in (REF, NEW_REF):
        record = hash_fields(await client.hgetall(keys.identity(ref)))
        members = sorted(as_text(m) for m in await client.smembers(keys.identity_accounts(ref)))
        records[ref] = (record, members)
    queue = await RedisErasureStore(client, Scripts(client), keys=namer).scheduled(tenant)
    return {
        "account": {k: v for k, v in account.items() if k != "cancelled_ms"},
        "records": records,
        "queue": [(each.item.kind.value, each.item.subject, each.due_ms) for each in queue],
        "names": await client.hget(keys.organization_names(), NAME_HASH),
        "own_names": await client.hgetall(keys.organization_own_names(TAG)),
        "intents": await _intents_left(client, tenant, namer),
        "entries": await _entries(client, tenant, keys),
    }


async def _cancellation(
    client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys], killed_after: int | None
) -> tuple[int | None, dict[str, Any]]:
    """The last member's cancellation (account, identity's LAST, names, intent removed): answer, outcome."""
    await _seed_bound_organization(client, namer(tenant))
    scripts = Scripts(client)
    store = RedisErasureStore(client, scripts, steps=KilledAfter(scripts, killed_after), keys=namer)
    cancelled = cancel_crash.cancellation(ACCOUNT, "c1", due_ms=LONG_DUE_MS)
    answer = await _run_or_repair(client, tenant, namer, store.cancel(tenant, cancelled), killed_after)
    return answer, await _outcome(client, tenant, namer)


async def _erasures(
    client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys], killed_after: int | None
) -> tuple[list[EraseOutcome | None], dict[str, Any]]:
    """A cancellation, then the worker's erasures of the account and its identity, found in their buckets."""
    await _cancellation(client, tenant, namer, None)
    scripts = Scripts(client)
    store = RedisErasureStore(client, scripts, steps=KilledAfter(scripts, killed_after), keys=namer)
    due = await store.due(tenant, await scripts.clock.now_ms(), 64)
    assert due == [ErasureItem(ErasureKind.ACCOUNT, ACCOUNT), ErasureItem(ErasureKind.IDENTITY, REF)]
    request = json.dumps(AUDIT)
    # An identity's erasure is one script: only the account's has steps to be killed after.
    outcomes = [
        await _run_or_repair(
            client,
            tenant,
            namer,
            store.erase(tenant, item, request),
            killed_after if item.kind is ErasureKind.ACCOUNT else None,
        )
        for item in due
    ]
    return outcomes, await _outcome(client, tenant, namer)


async def _reindexing(
    client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys], killed_after: int | None
) -> tuple[str | None, dict[str, Any]]:
    """The identity's record moved to a new ref with its member (out, in, its account, settled, finished)."""
    keys = namer(tenant)
    await _seed_bound_organization(client, keys)
    fields = hash_fields(await client.hgetall(keys.identity(REF)))
    read = json.dumps({"fields": fields, "members": [ACCOUNT], "due": ""})
    move = json.dumps({"binding": NEW_BINDING, "pepper": "", "forward_ms": 600_000})
    steps = IdentityMoveSteps(KilledAfter(Scripts(client), killed_after), keys=namer)
    moving = steps.move(tenant, MoveRecord(REF, NEW_REF, read, move))
    answer = await _run_or_repair(client, tenant, namer, moving, killed_after)
    return answer, await _outcome(client, tenant, namer)


def _tenants(label: str) -> tuple[str, str]:
    """Two fresh tenants, one on today's names and one bucketed (the Cluster is shared)."""
    stamp = time.time_ns()
    return f"probeflat{label}{stamp}", f"probebkt{label}{stamp}"


class TestRunsCleanStepByStep:
    def test_the_probed_records_are_in_buckets_of_their_own(self) -> None:
        """The account and the two refs are three buckets, none the tenant's: every sequence crosses."""
        keys = bucketed("probetenant")
        assert len({bucket_of(ACCOUNT), bucket_of(REF), bucket_of(NEW_REF)}) == 3
        assert keys.account(ACCOUNT).split("}")[0] != keys.identity(REF).split("}")[0]
        assert keys.identity(REF).split("}")[0] != keys.identity(NEW_REF).split("}")[0]

    @pytest.mark.parametrize("killed_after", [None, 1, 2, 3])
    async def test_a_last_members_cancellation_answers_and_ends_as_on_todays_layout(
        self, cluster_client: RedisClient, killed_after: int | None
    ) -> None:
        """Account, identity (LAST), names: whole, or killed after a step and finished by the repairer."""
        flat_tenant, bucketed_tenant = _tenants(f"cancel{killed_after or 0}")
        today = await _cancellation(cluster_client, flat_tenant, TenantKeys, killed_after)
        in_buckets = await _cancellation(cluster_client, bucketed_tenant, bucketed, killed_after)
        assert in_buckets == today
        answer, outcome = in_buckets
        assert answer == (LONG_DUE_MS if killed_after is None else None)
        assert outcome["account"] == {
            "audit": "aud1",
            "erase_due_ms": str(LONG_DUE_MS),
        }
        # Step by step the identity's LAST is left in its record, for a move to carry (§3.2).
        assert outcome["records"][REF] == ({"name_binding": OLD_BINDING, f"last:{TAG}": "1"}, [])
        assert outcome["queue"] == [("account", ACCOUNT, LONG_DUE_MS), ("identity", REF, LONG_DUE_MS)]
        assert outcome["names"] is None
        assert outcome["own_names"] == {}
        assert outcome["intents"] == 0
        assert [json.loads(b'{"v":1' + body)["type"] for body in outcome["entries"]] == ["account.cancelled"]
        # In buckets, the account's step staged its entry in the account's bucket; nothing is in the log.
        keys = bucketed(bucketed_tenant)
        assert await cluster_client.exists(keys.audit_log()) == 0
        assert await cluster_client.xlen(keys.audit_entries(keys.account(ACCOUNT))) == 1

    @pytest.mark.parametrize("killed_after", [None, 1, 2])
    async def test_an_accounts_and_an_identitys_erasure_answer_and_end_as_on_todays_layout(
        self, cluster_client: RedisClient, killed_after: int | None
    ) -> None:
        """Each queue member found in its bucket's queue and erased; the account's killed and repaired."""
        flat_tenant, bucketed_tenant = _tenants(f"erase{killed_after or 0}")
        today = await _erasures(cluster_client, flat_tenant, TenantKeys, killed_after)
        in_buckets = await _erasures(cluster_client, bucketed_tenant, bucketed, killed_after)
        assert in_buckets == today
        outcomes, outcome = in_buckets
        account_erased = EraseOutcome.ERASED if killed_after is None else None
        assert outcomes == [account_erased, EraseOutcome.ERASED]
        assert outcome["account"] == {}
        assert outcome["records"][REF] == ({}, [])
        assert outcome["queue"] == []
        assert outcome["intents"] == 0
        types = sorted(json.loads(b'{"v":1' + body)["type"] for body in outcome["entries"])
        assert types == ["account.cancelled", "account.erased", "identity.erased"]

    @pytest.mark.parametrize("killed_after", [None, 1, 2, 3, 4])
    async def test_a_reindexing_moves_the_record_as_on_todays_layout(
        self, cluster_client: RedisClient, killed_after: int | None
    ) -> None:
        """Out, in, the member's account, settled, finished: whole, or killed after a step and repaired."""
        flat_tenant, bucketed_tenant = _tenants(f"move{killed_after or 0}")
        today = await _reindexing(cluster_client, flat_tenant, TenantKeys, killed_after)
        in_buckets = await _reindexing(cluster_client, bucketed_tenant, bucketed, killed_after)
        assert in_buckets == today
        answer, outcome = in_buckets
        assert answer == ("OK" if killed_after is None else None)
        assert outcome["account"]["identity"] == NEW_REF
        assert outcome["records"][REF] == ({"moved_to": NEW_REF, "binding_was": OLD_BINDING}, [])
        assert outcome["records"][NEW_REF] == (
            {"name_binding": NEW_BINDING, f"m:{ACCOUNT}": f"b:{TAG}"},
            [ACCOUNT],
        )
        assert outcome["names"] == TAG.encode()
        assert outcome["intents"] == 0
        assert outcome["entries"] == []


KEYRING = Keyring.generate()
OWNER_PS = pseudonym("probe-owner")
SQUATTER_PS = pseudonym("probe-squatter")
PLAIN_PS = pseudonym("probe-plain")
WRONG_PS = pseudonym("probe-wrong")
LATE_PS = pseudonym("probe-late")
MINOR_PS = pseudonym("probe-minor")
GUARDIAN_PS = pseudonym("probe-guardian")
GUARDIAN_REF = "probe-guardian-ref"
GUARDIAN_NAME = {"name_tag": "tag-guardian", "name_binding": "binding-guardian"}
SEND_REQUEST = {"principal": "t/registrar/c1", "request_id": "answer-1", "trace_id": "", "span": ""}


@functools.cache
def bucketed_ids(tenant: str) -> TenantKeys:
    """A bucketed tenant's namer that also names verifications, by the bucket their ids carry."""
    return TenantKeys(
        tenant,
        search_layout(tenant),
        verification_bucket=functools.partial(verification_id_bucket, KEYRING, tenant),
    )


def _vid(tenant: str, account_ps: str) -> str:
    """A fresh verification id of ``account_ps``, naming its account's bucket, as a start mints it."""
    return new_verification_id(KEYRING, tenant, bucket_of(account_ps))


class _Signups:
    """One tenant's store step by step on the Cluster, named by ``namer``, and what each call answered."""

    def __init__(self, client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys]) -> None:
        self.tenant = tenant
        self.answers: list[object] = []
        scripts = Scripts(client)
        self.store = RedisVerificationStore(
            client,
            scripts,
            CodeSendChains(scripts, send_limits(), keys=namer),
            steps=StepRunner(scripts, step_by_step=True),
            keys=namer,
        )

    def note(self, written: Written) -> Written:
        """Keeps what a write answered that does not name the tenant's ids: outcome, status, reason."""
        record = written.record
        self.answers.append(
            (written.outcome, record.status, record.reason, record.attempts_left_now) if record else written
        )
        return written

    async def start(self, account_ps: str, record: VerificationRecord, mode: str) -> str:
        """A start of ``record`` in ``mode`` (its admission and reads not included); its id."""
        vid = _vid(self.tenant, account_ps)
        start = NewVerification(
            self.tenant, f"req-{vid}", vid, account_ps, record, 600_000, 3, REQUEST_JSON, mode
        )
        self.note(await self.store.commit(start, _as_is(record)))
        return vid

    async def challenged(
        self,
        account_ps: str,
        name: dict[str, str],
        *,
        establishes: bool = False,
        ttl_ms: int = 60_000,
    ) -> str:
        """A start that sent a code (``DIGEST``), its code live for ``ttl_ms``."""
        record = replace(
            verification(account_ps, name, establishes=establishes),
            status=Status.CHALLENGE_SENT,
            step_verifier="sms_otp",
            digest=DIGEST,
            challenge_ttl_ms=ttl_ms,
            max_attempts=5,
        )
        return await self.start(account_ps, record, "challenge")

    async def answer(self, vid: str, digest: str = DIGEST) -> Written:
        store = self.store

        async def point(moved: bool) -> VerificationRecord:
            assert not moved
            record = await store.record(self.tenant, vid)
            assert record is not None
            return record

        answer = ChallengeAnswer(self.tenant, vid, digest, 3, 60_000, REQUEST_JSON)
        return self.note(await store.submit(answer, point))


def _as_is(record: VerificationRecord) -> Callable[[bool], Awaitable[VerificationRecord]]:
    async def point(moved: bool) -> VerificationRecord:
        assert not moved, "no identity moves here"
        return record

    return point


async def _admitted_and_sent(probe: _Signups) -> None:
    """A start's reads, admission (reservation, claims, consents, window), code send and confirmation."""
    store, tenant = probe.store, probe.tenant
    request = RequestRef(OWNER_PS, pseudonym(f"{tenant}-req"), pseudonym(f"{tenant}-legacy-req"))
    read = await store.read_start(tenant, request, OWNER["name_tag"])
    probe.answers.append((read.holder, read.consent.revision, read.claim_refusals))
    vid = _vid(tenant, OWNER_PS)
    admitted = await store.admit(
        Admission(
            tenant,
            request,
            vid,
            30_000,
            ClaimsCheck(OWNER["name_tag"], 3, SEND_REQUEST, refusals_read=read.claim_refusals),
            ConsentAdmission(
                OWNER_PS,
                f"audit-{OWNER_PS}",
                vid,
                600_000,
                read.consent.revision,
                (("identity_verification", "v1"),),
                REQUEST_JSON,
                "sms",
            ),
            WindowCount(pseudonym(f"{tenant}-person"), 5, 3600, SEND_REQUEST),
        )
    )
    probe.answers.append(
        (
            admitted.reservation,
            admitted.holder,
            admitted.consent,
            admitted.window_counted,
            admitted.window_refusal,
        )
    )
    sent = await store.count_send(
        CodeSend(
            tenant,
            account_phone=f"otp-{OWNER_PS}",
            tenant_phone=pseudonym(f"{tenant}-phone"),
            phone=pseudonym("probe-phone"),
            principal="t/registrar/c1",
            max_attempts=5,
            request=SEND_REQUEST,
            account_pseudonym=OWNER_PS,
        )
    )
    probe.answers.append((sent.verdict, sent.failures))
    await store.confirm(tenant, request)
    held = await store.holder(tenant, request)
    probe.answers.append(held is not None and (held.verification_id, held.legacy) == (vid, False))


async def _signups(client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys]) -> _Signups:
    """Every sequence of a signup, step by step, in ``tenant`` named by ``namer``: what each answered.

    A start's admission and code send; a squatter bound by a start in ``bind`` mode; the owner's
    right answer establishing its claim over it; a plain right answer of another account; a wrong
    answer; an expired one; a guardian's consent for a minor.
    """
    probe = _Signups(client, tenant, namer)
    await _admitted_and_sent(probe)
    await probe.start(SQUATTER_PS, verification(SQUATTER_PS, SQUATTER), "bind")
    establishing = await probe.challenged(OWNER_PS, OWNER, establishes=True)
    await probe.answer(establishing)
    plain = await probe.challenged(PLAIN_PS, OWNER)
    await probe.answer(plain)
    wrong = await probe.challenged(WRONG_PS, OWNER)
    await probe.answer(wrong, "0" * 64)
    late = await probe.challenged(LATE_PS, OWNER, ttl_ms=1)
    await asyncio.sleep(0.01)
    await probe.answer(late)
    await _guardians_consent(probe)
    return probe


async def _guardians_consent(probe: _Signups) -> None:
    """A minor waiting for a guardian's consent, given by an adult bound to another identity."""
    adult = replace(verification(GUARDIAN_PS, GUARDIAN_NAME), identity=GUARDIAN_REF)
    await probe.start(GUARDIAN_PS, adult, "bind")
    minor = replace(
        verification(MINOR_PS, OWNER),
        status=Status.NEEDS_GUARDIAN_CONSENT,
        next_step="guardian_consent",
        minor=True,
        age_band=AgeBand.FROM_14_TO_17,
        age_source=AgeSource.DOCUMENT,
    )
    vid = await probe.start(MINOR_PS, minor, "guardian")
    store = probe.store
    judged = await store.account_fields(probe.tenant, GUARDIAN_PS, GUARDIAN_FIELDS)
    grant = GuardianGrant(
        probe.tenant, vid, MINOR_PS, GUARDIAN_PS, 3, REQUEST_JSON, "v1", "parent", judged, ""
    )
    probe.note(await store.grant_guardian(grant, _as_is(minor)))


async def _stored(client: RedisClient, keys: TenantKeys) -> list[object]:
    """What the signups leave: each account's binding, the identities' members and claim."""
    accounts = [
        {
            # A supersession's time is the store clock's: only whether it happened is compared.
            as_text(name): "set" if name == b"superseded_ms" else as_text(value)
            for name, value in (await client.hgetall(keys.account(ps))).items()
            if name in {b"identity", b"name_tag", b"binding", b"kind", b"age_band", b"superseded_ms"}
        }
        for ps in (OWNER_PS, SQUATTER_PS, PLAIN_PS, WRONG_PS, LATE_PS, MINOR_PS, GUARDIAN_PS)
    ]
    identities = [
        {
            as_text(name): as_text(value)
            for name, value in (await client.hgetall(keys.identity(ref))).items()
            if name.startswith(b"m:") or name in {b"established", b"claim_tag"}
        }
        for ref in (SIGNUP_REF, GUARDIAN_REF)
    ]
    members = [
        sorted(as_text(m) for m in await client.smembers(keys.identity_accounts(ref)))
        for ref in (SIGNUP_REF, GUARDIAN_REF)
    ]
    return [accounts, identities, members]


async def _entry_types(client: RedisClient, keys: TenantKeys) -> list[str]:
    """The types of the entries the signups wrote: the log's, or every bucket's stage they went to."""
    log = await client.hgetall(keys.audit_log())
    bodies = [as_text(body) for body in log.values()]
    if keys.bucketed:
        beside = [
            keys.account(ps)
            for ps in (OWNER_PS, SQUATTER_PS, PLAIN_PS, WRONG_PS, LATE_PS, MINOR_PS, GUARDIAN_PS)
        ]
        beside += [keys.identity(SIGNUP_REF), keys.identity(GUARDIAN_REF)]
        for stage in sorted({keys.audit_entries(key) for key in beside}):
            bodies += ["{" + as_text(record[b"b"])[1:] for _, record in await client.xrange(stage)]
    return sorted(json.loads(body)["type"] for body in bodies)


async def _staged_bodies(client: RedisClient, keys: TenantKeys) -> list[list[bytes]]:
    """Each labelled bucket's staged bodies, in stream order (buckets that staged nothing left out)."""
    async with client.pipeline(transaction=False) as pipe:
        for prefix in keys.bucket_prefixes():
            pipe.xrange(keys.audit_entries(prefix))
        stages = await pipe.execute()
    return [[record[b"b"] for _, record in stage] for stage in stages if stage]


def _in_order(wanted: list[bytes], bodies: list[bytes]) -> bool:
    """Whether ``wanted`` appears in ``bodies`` in its own order (a subsequence)."""
    rest = iter(bodies)
    return all(any(body == one for one in rest) for body in wanted)


async def _signed_head_proves_each(client: RedisClient, tenant: str) -> int:
    """Integrates the log, signs its head and checks every entry's inclusion proof against it; the size."""
    store = AuditStore(client, Scripts(client))
    state = await TreeIntegrator(store).integrate(tenant)
    signer = TreeHeadSigner(Ed25519PrivateKey.generate())
    signed = signer.sign(TreeHead(f"idverify/{tenant}", state.size, state.root, int(time.time() * 1000)))
    verify_signed_head(signed, signer.public_key)
    entries = await store.entries(tenant, list(range(state.size)))
    leaves = [rfc6962.leaf(entry) for entry in entries if entry is not None]
    assert len(leaves) == state.size
    for index, leaf in enumerate(leaves):
        plan = merkle.inclusion_plan(index, state.size)
        proof = plan.assemble(await store.read_nodes(tenant, plan.nodes))
        assert rfc6962.proves_inclusion(leaf, index, state.size, proof, signed.head.root_hash), index
        assert not rfc6962.proves_inclusion(
            rfc6962.leaf(b"forged"), index, state.size, proof, signed.head.root_hash
        )
    return state.size


class TestSignupsSequenced:
    async def test_one_pass_folds_every_entry_a_signup_staged_in_labelled_buckets(
        self, cluster_client: RedisClient
    ) -> None:
        """The sequencer given the tenant's namer reads its labels' stages: every entry once, in order.

        Without the namer it reads the numbered ``{t:T:<n>}`` streams, which hold nothing here.
        """
        tenant = f"probeseq{time.time_ns()}"
        keys = bucketed_ids(tenant)
        await _signups(cluster_client, tenant, bucketed_ids)
        logged_before = await cluster_client.hlen(keys.audit_log())
        staged = await _staged_bodies(cluster_client, keys)
        assert len(staged) > 1, "the signup's entries are staged in several buckets"
        # A staged position is answered pending from its label's stream (GetStagedEntry's read).
        stages = RedisAuditStages(cluster_client, Scripts(cluster_client), keys=bucketed_ids)
        bucket = bucket_of(OWNER_PS)
        [(first_id, first), *_] = await cluster_client.xrange(keys.audit_entries(keys.account(OWNER_PS)))
        assert (await stages.position(tenant, bucket, as_text(first_id))).state is PositionState.PENDING
        read = await stages.read_staged(tenant, bucket, 100)
        assert read.views[0].stream_id == as_text(first_id)
        assert read.views[0].body == first[b"b"]
        sequencer = stage_sequencer(cluster_client, Scripts(cluster_client), 16, keys=bucketed_ids)
        assert sequencer is not None
        assert sequencer.buckets_of(tenant) == _layout_of(tenant).count
        report = await sequencer.sequence(tenant)
        assert report.appended == sum(map(len, staged))
        assert not report.refused
        assert not report.damaged
        assert await _staged_bodies(cluster_client, keys) == []
        raw = await cluster_client.hgetall(keys.audit_log())
        entries = [raw[str(i).encode()] for i in range(len(raw))]
        appended = entries[logged_before:]
        parsed = [json.loads(entry) for entry in entries]
        assert [entry["seq"] for entry in parsed] == list(range(len(entries)))
        times = [entry["time_ms"] for entry in parsed]
        assert times == sorted(times)
        bodies = [_ENTRY_HEAD.sub(b"", entry) for entry in appended]
        assert sorted(bodies) == sorted(body for stage in staged for body in stage)
        for stage in staged:  # each bucket's entries in its stream's order
            assert _in_order(stage, bodies)
        sequenced = await stages.position(tenant, bucket, as_text(first_id))
        assert sequenced.state is PositionState.SEQUENCED
        assert sequenced.index is not None
        assert _ENTRY_HEAD.sub(b"", entries[sequenced.index]) == first[b"b"]
        assert await _signed_head_proves_each(cluster_client, tenant) == len(entries)


class TestSignupsRunClean:
    async def test_a_signups_sequences_answer_and_store_as_on_todays_layout(
        self, cluster_client: RedisClient
    ) -> None:
        """A start's admission and send, right answers, a wrong and a late one, a guardian's: as today."""
        stamp = time.time_ns()
        flat_tenant, bucketed_tenant = f"probeflats{stamp}", f"probebkts{stamp}"
        today = await _signups(cluster_client, flat_tenant, TenantKeys)
        in_buckets = await _signups(cluster_client, bucketed_tenant, bucketed_ids)
        assert in_buckets.answers == today.answers
        statuses = [
            answer[1]
            for answer in today.answers
            if isinstance(answer, tuple) and isinstance(answer[1], Status)
        ]
        assert statuses == [
            Status.VERIFIED,  # the squatter, bound by a start in bind mode
            Status.CHALLENGE_SENT,
            Status.VERIFIED,  # the owner's claim established over the squatter
            Status.CHALLENGE_SENT,
            Status.VERIFIED,  # a plain right answer
            Status.CHALLENGE_SENT,
            Status.CHALLENGE_SENT,  # a wrong answer: one attempt fewer
            Status.CHALLENGE_SENT,
            Status.EXPIRED,
            Status.VERIFIED,  # the guardian, bound by a start in bind mode
            Status.NEEDS_GUARDIAN_CONSENT,
            Status.VERIFIED,  # the minor, once its guardian consented
        ]
        keys = bucketed_ids(bucketed_tenant)
        stored = await _stored(cluster_client, TenantKeys(flat_tenant))
        assert await _stored(cluster_client, keys) == stored
        _, [claimed, _], [members, _] = stored
        assert claimed[f"m:{OWNER_PS}"] == "b:tag-owner"
        assert claimed["claim_tag"] == "tag-owner"
        assert members == sorted([OWNER_PS, PLAIN_PS, MINOR_PS])  # the squatter superseded
        assert await _entry_types(cluster_client, keys) == await _entry_types(
            cluster_client, TenantKeys(flat_tenant)
        )
        # Nothing pending in either: every intent went with its sequence, in its bucket.
        for key in (keys.account(OWNER_PS), keys.identity(SIGNUP_REF), keys.account(MINOR_PS)):
            assert await cluster_client.zcard(keys.intents(key)) == 0

    async def test_a_member_an_older_server_bound_is_refused_in_buckets_not_read_as_absent(
        self, cluster_client: RedisClient
    ) -> None:
        """Its account is another bucket's: the place refuses (FAILED_PRECONDITION), taking no place."""
        tenant = f"probebktu{time.time_ns()}"
        probe = _Signups(cluster_client, tenant, bucketed_ids)
        vid = await probe.challenged(OWNER_PS, OWNER)
        keys = bucketed_ids(tenant)
        await cluster_client.sadd(keys.identity_accounts(SIGNUP_REF), SQUATTER_PS)  # 0.1.0's, no field
        with pytest.raises(FailedPrecondition) as refused:
            await probe.answer(vid)
        assert refused.value.reason == "LEGACY_MEMBERS_NOT_WALKED"
        assert not [
            name for name in await cluster_client.hkeys(keys.identity(SIGNUP_REF)) if name.startswith(b"m:")
        ]
        # The verification stays in flight with its intent, for the repairer once the tenant is walked.
        assert await cluster_client.hget(keys.verification(vid), "binding") == b"1"
        account = keys.account(OWNER_PS)
        assert await cluster_client.zscore(keys.intents(account), f"bind:{vid}") is not None


async def _bound_in_bind_mode(
    client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys], killed_after: int | None
) -> dict[str, Any]:
    """A start in ``bind`` mode step by step, whole or killed after a step and repaired: what it leaves."""
    scripts = Scripts(client)
    store = RedisVerificationStore(
        client,
        scripts,
        CodeSendChains(scripts, send_limits(), keys=namer),
        steps=KilledAfter(scripts, killed_after),
        keys=namer,
    )
    vid = _vid(tenant, SQUATTER_PS)
    record = verification(SQUATTER_PS, SQUATTER)
    start = NewVerification(tenant, f"req-{vid}", vid, SQUATTER_PS, record, 600_000, 3, REQUEST_JSON, "bind")
    written = await _run_or_repair(client, tenant, namer, store.commit(start, _as_is(record)), killed_after)
    keys = namer(tenant)
    ref = as_text(await client.hget(keys.account(SQUATTER_PS), "identity") or b"")
    return {
        "answer": written is None or written.record.status,
        "status": await client.hget(keys.verification(vid), "status"),
        "bound_to": ref,
        "member": await client.hget(keys.identity(ref), f"m:{SQUATTER_PS}") if ref else None,
        "members": sorted(as_text(m) for m in await client.smembers(keys.identity_accounts(ref)))
        if ref
        else [],
        "intents": await _intents_left(client, tenant, namer),
    }


class TestAPlantedIntent:
    @pytest.mark.parametrize("kind", ["unbind", "erase", "move", "bind"])
    async def test_an_intent_naming_another_buckets_key_is_dropped_not_failing_the_round(
        self, cluster_client: RedisClient, kind: str
    ) -> None:
        """Written into a bucket its subject is not in: the take drops it, and the pass goes on."""
        _, tenant = _tenants(f"plant{kind}")
        keys = bucketed_ids(tenant)
        subject = ACCOUNT if kind in {"unbind", "erase"} else _vid(tenant, ACCOUNT)
        member = f"{kind}:{subject}"
        elsewhere = keys.bucket_prefixes()[(bucket_of(ACCOUNT) + 1) % len(keys.bucket_prefixes())]
        record = {"kind": kind, "subject": subject, "ref": REF, "due_ms": "1", "old": REF, "new": NEW_REF}
        await cluster_client.hset(
            keys.intent(member, beside=elsewhere), mapping={**record, "read": "{}", "move": "{}"}
        )
        await cluster_client.zadd(keys.intents(beside=elsewhere), {member: 1})
        repairs = cancel_crash.LaterRepairs(cluster_client, Scripts(cluster_client), keys=bucketed_ids)
        assert await BucketRepairer(repairs).repair(tenant) == 0
        assert await _intents_left(cluster_client, tenant, bucketed_ids) == 0


class TestABindingRepairedInBuckets:
    # Its last step removes the intent: killed after it, nothing is left to finish.
    @pytest.mark.parametrize("killed_after", [1, 2, 3])
    async def test_a_start_in_bind_mode_killed_after_a_step_is_finished_as_on_todays_layout(
        self, cluster_client: RedisClient, killed_after: int
    ) -> None:
        """The repairer takes the intent in its bucket and ends the binding: bound, a member, none left."""
        flat_tenant, bucketed_tenant = _tenants(f"bind{killed_after}")
        whole = await _bound_in_bind_mode(cluster_client, f"{flat_tenant}w", TenantKeys, None)
        today = await _bound_in_bind_mode(cluster_client, flat_tenant, TenantKeys, killed_after)
        in_buckets = await _bound_in_bind_mode(cluster_client, bucketed_tenant, bucketed_ids, killed_after)
        assert in_buckets == today
        assert {**today, "answer": True} == {**whole, "answer": True}
        assert whole["status"] == b"VERIFIED"
        assert whole["bound_to"] == SIGNUP_REF
        assert whole["members"] == [SQUATTER_PS]
        assert whole["intents"] == 0


async def _signed_up_and_erased(client: RedisClient, tenant: str, namer: Callable[[str], TenantKeys]) -> None:
    """A signup's every sequence, then a last member's cancellation and the erasures after it."""
    await _signups(client, tenant, namer)
    await _erasures(client, tenant, namer, None)


async def _keys_of(client: RedisClient, tenant: str) -> set[bytes]:
    """Every key of every node whose tag is the tenant's or one of its buckets' (none of another's)."""
    found = set()
    async for key in client.scan_iter(match=f"iv1:{{t:{tenant}*", count=1000):
        tag = key.partition(b"}")[0]
        if tag == f"iv1:{{t:{tenant}".encode() or tag.startswith(f"iv1:{{t:{tenant}:".encode()):
            found.add(key)
    return found


class TestTheKeyWalksFindTheBuckets:
    async def test_an_incidents_holdings_count_a_bucketed_tenants_records_as_todays(
        self, cluster_client: RedisClient
    ) -> None:
        """Accounts, verifications, consents and each field: the same counts, found in the buckets."""
        flat_tenant, bucketed_tenant = _tenants("holdings")
        await _signed_up_and_erased(cluster_client, flat_tenant, TenantKeys)
        await _signed_up_and_erased(cluster_client, bucketed_tenant, bucketed_ids)
        scripts = Scripts(cluster_client)
        today = await RedisIncidentStore(cluster_client, scripts).holdings(flat_tenant)
        in_buckets = await RedisIncidentStore(cluster_client, scripts, keys=bucketed_ids).holdings(
            bucketed_tenant
        )
        # The keys walked differ (staged entries and each bucket's indexes), and what is audited
        # is counted from the log's account index, which the staged entries join when sequenced.
        assert today.accounts
        assert today.verifications
        assert today.consents
        assert (in_buckets.accounts, in_buckets.verifications, in_buckets.consents, in_buckets.fields) == (
            today.accounts,
            today.verifications,
            today.consents,
            today.fields,
        )

    async def test_a_tenants_removal_erases_every_key_of_every_bucket_and_no_other_tenants(
        self, cluster_client: RedisClient
    ) -> None:
        """Every node scanned after the erasure: the log's keys alone are left, the others' as they were."""
        flat_tenant, bucketed_tenant = _tenants("removal")
        # A tenant whose name begins with the removed one's: its buckets' tags match its SCAN too.
        longer = f"{bucketed_tenant}0"
        for tenant, namer in (
            (bucketed_tenant, bucketed_ids),
            (longer, bucketed_ids),
            (flat_tenant, TenantKeys),
        ):
            await _signed_up_and_erased(cluster_client, tenant, namer)
        others = {tenant: await _keys_of(cluster_client, tenant) for tenant in (longer, flat_tenant)}
        store = RedisRemovalStore(cluster_client, Scripts(cluster_client), keys=bucketed_ids)
        held = await _keys_of(cluster_client, bucketed_tenant)
        kept = {key for key in held if key.startswith(f"iv1:{{t:{bucketed_tenant}}}:audit:".encode())}
        in_buckets = {key for key in held if key.startswith(f"iv1:{{t:{bucketed_tenant}:".encode())}
        assert len({key.partition(b"}")[0] for key in in_buckets}) > 5
        assert await store.count_remaining(bucketed_tenant) == len(held - kept)
        erased = [page.erased async for page in store.erase_pages(bucketed_tenant, 0, 50)]
        assert sum(erased) == len(held - kept)
        # The removal record (the log's) holds the erasure's cursor and count.
        removal = bucketed_ids(bucketed_tenant).removal().encode()
        assert await _keys_of(cluster_client, bucketed_tenant) == kept | {removal}
        assert await store.count_remaining(bucketed_tenant) == 0
        assert {tenant: await _keys_of(cluster_client, tenant) for tenant in others} == others

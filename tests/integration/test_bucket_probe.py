"""The step sequences on a real 3-primary Cluster with a bucketed tenant's keys (issue 26, §2, §6).

The family tests (``tests/unit/store/test_*_families.py``) judge each step's keys by their names
on today's layout. This probe names them as a bucketed tenant would (``TenantKeys(T, layout)``),
so that the Cluster itself says whether a sequence still works: a key derived in Lua from
another family's prefix, or two families given to one script, is an error here, not a name.
Each sequence runs in a tenant on today's names and in a bucketed one, and must answer and store
the same: the display names', CheckIdentity's counters, a counter's staged entry, and a signup's
(``TestSignupsRunClean``: admission, code send, right answers plain and establishing, a wrong and
an expired answer, a start in ``bind`` mode, a guardian's consent).

What cannot run so yet is :data:`PROBE_BLOCKED`, each entry with why, and each expected by
``test_what_is_blocked_is_still_blocked``: an entry whose blocker is gone fails that test, so the
list only shrinks (the way ``KNOWN_CROSSINGS`` works for the family tests).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import pytest

from idverify.domain.birth_dates import AgeSource
from idverify.domain.buckets import bucket_of
from idverify.domain.errors import FailedPrecondition
from idverify.domain.subjects import AgeBand, AssuranceLevel
from idverify.flows.consent import ConsentAdmission
from idverify.flows.display_names import Approval, NameLookup, NameQuery, NamesApproval
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
from idverify.store.bucket_steps import StepRunner
from idverify.store.buckets import search_layout
from idverify.store.cancellation_steps import CancellationSteps
from idverify.store.code_sends import CodeSendChains, RedisCodeSends
from idverify.store.connection import RedisClient, as_text, connect
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
from idverify.testing.memory_code_sends import send_limits
from tests import counter_crash
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


@dataclass(frozen=True)
class Blocked:
    """A sequence the probe cannot run in buckets yet: why, and the stores that take no namer."""

    why: str
    flat_stores: tuple[type, ...] = ()


PROBE_BLOCKED: dict[str, Blocked] = {
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
    def test_what_is_blocked_is_still_blocked(self, sequence: str) -> None:
        """Each entry's blocker still happens: once it does not, the entry goes (the list only shrinks)."""
        blocked = PROBE_BLOCKED[sequence]
        taking = [
            store.__name__ for store in blocked.flat_stores if "keys" in inspect.signature(store).parameters
        ]
        assert taking == [], f"{taking} take a namer now: probe {sequence} and shrink its entry"
        assert blocked.flat_stores, f"{sequence}: an entry says what blocks it"


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

"""Every other store call a service makes touches keys of one planned bucket (docs/ARCHITECTURE.md, §1, §6).

``test_binding_families.py`` and ``test_step_families.py`` hold the step sequences (bindings,
cancellations, erasures, moves, the counters in two slots) to one bucket a call. These tests hold
the rest of what the use cases ask of the store, through its adapters as the server builds them,
on the path a Cluster takes (steps one by one, on a plain redis-server here): a start's admission
and its counts, its release and confirmation, a wrong answer and an expired one, the reads that
record themselves (``get``, ``reads``, ``ip_labels``), CheckDisplayName and SetApprovedNames, an
account's own writes (a login's label, consents granted and withdrawn with live verifications, a
re-sealing, an export's entry, CheckIdentity's counts), an incident's report, the audit log's
scripts, the tenant-wide records (clients, console sessions, webhooks, event streams, the
outbox, read minutes) and a tenant's removal.

Each script call's keys, given and derived inside Lua (``tests.touched_keys`` sees them with
MONITOR), are held to ``key_families.bucket_crossings``: one bucket (one family, one account,
identity or counter where the key's name says which), beside no tenant key but its audit entry's,
or the tenant's keys alone (T). What still crosses is :data:`SERVICE_CROSSINGS`, each entry
expected by name by the test that meets it, so that a new crossing fails and so does an entry
whose crossing is gone: the list only shrinks, and whoever removes a crossing deletes its entry.
Calls whose entries have outbox records run in a tenant this release made with no older server
reporting in, its log born walked (``tests.tenant_births``); the legacy map's entries meet a
tenant with older servers' data that ``migrate legacy`` has not walked.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from idverify.audit.sequencer import StageSequencer
from idverify.audit.tree_state import StoredHead
from idverify.console.sessions import SessionRecord
from idverify.domain.errors import RateLimited
from idverify.domain.subjects import AssuranceLevel, SubjectKind
from idverify.flows.accounts import LoginLabel
from idverify.flows.consent import ConsentAdmission, ConsentGrant, ConsentWithdrawal
from idverify.flows.display_names import NameQuery, NamesApproval
from idverify.flows.identity_check import CheckStep
from idverify.flows.incident import ReportEntry
from idverify.flows.read_accounting import Category, Reader, read_spec
from idverify.flows.reindex import RecordKind, SealedRecord
from idverify.flows.verification import port
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.security.clients import NewClient
from idverify.security.principals import Role
from idverify.security.rate_limits import LockoutAuditor
from idverify.store.account_exports import RedisAccountExports
from idverify.store.accounts import RedisAccounts
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.bucket_steps import StepRunner
from idverify.store.clients import RedisClientStore
from idverify.store.code_sends import CodeSendChains
from idverify.store.connection import RedisClient
from idverify.store.consents import RedisConsentStore
from idverify.store.console_sessions import RedisConsoleSessions
from idverify.store.display_names import RedisDisplayNames
from idverify.store.identity_checks import RedisIdentityChecks
from idverify.store.identity_records import RedisIdentityRecords
from idverify.store.incident_reads import RedisIncidentStore
from idverify.store.keys import TenantKeys
from idverify.store.legacy_moves import RedisLegacyMove
from idverify.store.outbox import RedisOutbox
from idverify.store.rate_limits import RedisRateWindows
from idverify.store.read_records import RedisReadRecords
from idverify.store.scripts import Scripts
from idverify.store.sealed_records import RedisSealedRecords
from idverify.store.stream_leases import RedisStreamLeases
from idverify.store.synthetic_audit import SyntheticStager
from idverify.store.tenant_removals import RedisRemovalStore
from idverify.store.verifications import RedisVerificationStore
from idverify.store.webhook_deliveries import RedisDeliveryStore
from idverify.store.webhook_subscriptions import RedisSubscriptionStore
from idverify.testing.memory_code_sends import send_limits
from idverify.webhooks.delivery_port import Lease
from idverify.webhooks.subscriptions import NewSubscription
from tests import bind_crash
from tests.bind_crash import DIGEST, OWNER, REQUEST_JSON, challenge
from tests.cancel_crash import NAME_HASH, pseudonym
from tests.counter_crash import check_of
from tests.sequencer_crash import event
from tests.tenant_births import born_walked, made_with_legacy_data
from tests.touched_keys import RecordingScripts, ScriptMonitor
from tests.unit.store.test_binding_families import KnownCrossing, assert_only_known_crossings
from tests.unit.store.test_identity_accounts import REF, verification
from tests.unit.store.test_legacy_moves import as_0_1_0_bound

_LEGACY_MAP = (
    "audit() falls back to older servers' events:acct map for an entry's outbox record, in a tenant "
    "whose log was created unmarked (by 0.1.0, or beside a server of an older release) that "
    "`idverify migrate legacy` has not walked: the walk moves the map into the accounts and marks the "
    "log's head, after which no step reads it; a log created with no older server reporting in is "
    "born marked (as KNOWN_CROSSINGS' map entries)"
)

# One entry a block: the test that meets it names it, and whoever removes the crossing deletes both.
EXPIRY_LEGACY_MAP = KnownCrossing("bind_judge", "T", "events:acct", _LEGACY_MAP)
GRANT_LEGACY_MAP = KnownCrossing("consent_grant", "T", "events:acct", _LEGACY_MAP)
WITHDRAW_LEGACY_MAP = KnownCrossing("consent_withdraw", "T", "events:acct", _LEGACY_MAP)
HOLDINGS_PAGE = KnownCrossing(
    "incident_holdings",
    "*",
    "*",
    "a SCAN page's records of every family (accounts, identities, verifications) counted in one "
    "script, placed in whichever bucket the page's first record names; it only reads, so a page "
    "per bucket (a SCAN of each bucket's tag, as a tenant's removal needs, §6) will do",
)
SERVICE_CROSSINGS = (
    EXPIRY_LEGACY_MAP,
    GRANT_LEGACY_MAP,
    WITHDRAW_LEGACY_MAP,
    HOLDINGS_PAGE,
)
"""The crossings the service's other calls still make, each allowed where a test expects it."""

TENANT = "svc"
KEYS = TenantKeys(TENANT)
PHONE = "0123456789abcdef" * 2  # a phone's deployment-wide pseudonym
REQUEST = {"principal": "t/registrar/c1", "request_id": "r1", "trace_id": ""}
READER = Reader("c1", "t/platform/c1", "GetAccount")
RETENTION_DAYS = 30
# The send windows of tests.counter_crash, and the phone's wrong codes counted too (phone_guess).
LIMITS = send_limits(
    per_phone_per_hour=2, per_principal_per_minute=4, phone_failure_limit=5, failure_window_ms=60_000
)


class ServiceRecording(RecordingScripts):
    """Script calls recorded with their keys; steps acknowledged, as where a replica is configured.

    ``confirm_request`` runs only where acknowledged steps wait for replicas; none wait here.
    """

    def __init__(self, redis: RedisClient, monitor: ScriptMonitor) -> None:
        super().__init__(redis, monitor)
        self.redis = redis

    @property
    def acknowledges(self) -> bool:
        return True

    def assert_one_bucket_each(self, *expected: str, known: tuple[KnownCrossing, ...] = ()) -> None:
        """Each call in one bucket but for the crossings ``known`` (each seen); ``expected`` called."""
        assert_only_known_crossings(self.calls, expected, SERVICE_CROSSINGS, "SERVICE_CROSSINGS", known=known)


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


@pytest.fixture
def recording(redis: RedisClient, script_monitor: ScriptMonitor) -> ServiceRecording:
    return ServiceRecording(redis, script_monitor)


def _verifications(recording: ServiceRecording) -> RedisVerificationStore:
    """The verification store as a Cluster runs it: steps one by one, sends counted in two slots."""
    steps = StepRunner(recording, step_by_step=True)
    return RedisVerificationStore(
        recording.redis, recording, CodeSendChains(recording, LIMITS, steps=steps), steps=steps
    )


def _as_read(record: VerificationRecord | None) -> port.Point:
    assert record is not None

    async def point(moved: bool) -> VerificationRecord:
        assert not moved, "no identity moves here"
        return record

    return point


def _admission(account: str, verification_id: str) -> ConsentAdmission:
    return ConsentAdmission(account, f"audit-{account}", verification_id, 60_000, "", (), REQUEST_JSON, "sms")


def _window() -> port.WindowCount:
    return port.WindowCount(pseudonym("person"), 5, 3600, REQUEST)


async def test_a_start_its_counts_and_its_answers(recording: ServiceRecording) -> None:
    """A start's calls but its binding's, and its answers but a right one's.

    The admission's steps (the reservation and consents as one chain in the account's bucket, or
    each alone around the claims' check when the reads found the claims at their limit, then the
    identity's window), a readmission, the window alone, the release and confirmation, the
    send's counts; a wrong answer judged from a remembered record (its check and its phone's
    count), an expired one. On this path no script reads the identity's bindings (``hget_each``
    runs only in one node's chain).
    """
    redis = recording.redis
    await born_walked(redis, TENANT)
    account = pseudonym("a")
    wrong = await challenge(redis, TENANT, pseudonym("wrong"), OWNER)
    late = await challenge(redis, TENANT, pseudonym("late"), OWNER)
    store = _verifications(recording)
    # The account's key and the legacy one, which the confirmation is given too (both A, no subject).
    request = port.RequestRef(account, pseudonym("req"), pseudonym("req-legacy"))
    read = await store.read_start(TENANT, request, OWNER["name_tag"])
    assert read.claim_refusals == 0, read  # below the limit: the reservation and consents together
    claims = port.ClaimsCheck(OWNER["name_tag"], 3, REQUEST, refusals_read=read.claim_refusals)
    admitted = await store.admit(
        port.Admission(TENANT, request, "vf-new", 60_000, claims, _admission(account, "vf-new"), _window())
    )
    assert admitted.reservation is port.Reservation.RESERVED, admitted
    assert admitted.window_counted, admitted
    # Read at the limit (the counter gone since): the reservation, the check, the consents alone.
    at_limit = replace(claims, refusals_read=claims.limit)
    admitted = await store.admit(
        port.Admission(
            TENANT,
            port.RequestRef(account, pseudonym("req2"), pseudonym("req2-legacy")),
            "vf-2",
            60_000,
            at_limit,
            _admission(account, "vf-2"),
            _window(),
        )
    )
    assert admitted.reservation is port.Reservation.RESERVED, admitted
    assert admitted.window_counted, admitted
    readmitted = await store.readmit(TENANT, _admission(account, "vf-new"), _window())
    assert readmitted.window_counted, readmitted
    await store.count_window(TENANT, _window())
    await store.release(TENANT, request, "vf-new", 60_000)
    await store.confirm(TENANT, request)
    send = port.CodeSend(
        TENANT, "acct-phone", "tenant-phone", PHONE, "p", 3, REQUEST, identity_keys=[KEYS.identity("ref-1")]
    )
    for _ in range(2):
        await store.count_send(send)
    with pytest.raises(RateLimited):  # past the phone's window of 2: the budgets' count is given back
        await store.count_send(send)
    record = await store.record(TENANT, wrong)
    count = port.AnswerCount(PHONE, wrong=True, lock_pseudonym="acct-phone", request=REQUEST)
    answer = port.ChallengeAnswer(
        TENANT, wrong, "00" * 32, 3, 60_000, REQUEST_JSON, count=count, expect=record
    )
    judged = await store.submit(answer, _as_read(record))
    assert judged.record is not None
    assert judged.record.reason == "OTP_MISMATCH", judged
    await redis.hset(KEYS.verification(late), "challenge_expires_ms", 1)
    expired = port.ChallengeAnswer(TENANT, late, DIGEST, 3, 60_000, REQUEST_JSON)
    judged = await store.submit(expired, _as_read(await store.record(TENANT, late)))
    assert judged.record is not None
    assert judged.record.status is Status.EXPIRED, judged
    assert "hget_each" not in {call.name for call in recording.calls}
    recording.assert_one_bucket_each(
        "reserve_request+consent_start",
        "reserve_request",
        "refuse_counted",
        "consent_start",
        "rate_limit",
        "release_request",
        "confirm_request",
        "send_phone_window",
        "send_windows",
        "count_give_back",
        "phone_send",
        "fields_unchanged",
        "phone_guess",
        "bind_judge",
    )


@pytest.mark.parametrize("tenant", ["born walked", "with legacy data, walked", "with legacy data"])
async def test_the_legacy_map_is_read_only_in_a_tenant_not_walked(
    recording: ServiceRecording, tenant: str
) -> None:
    """A consent granted and withdrawn, an expiry: their entries read the map only in a tenant not walked.

    A tenant this release made with no older server reporting in is born walked. One with older
    servers' data (its log unmarked, an older build's map, a member 0.1.0 bound) reads the map
    until ``migrate legacy`` walks it.
    """
    redis = recording.redis
    if tenant == "born walked":
        await born_walked(redis, TENANT)
    else:
        await made_with_legacy_data(redis, TENANT)
    [account] = await _bound(redis, 1)
    late = await challenge(redis, TENANT, pseudonym("late"), OWNER)
    if tenant != "born walked":
        await as_0_1_0_bound(redis, TENANT, REF, account)
    if tenant == "with legacy data, walked":
        counts = await RedisLegacyMove(redis, Scripts(redis)).run(TENANT, lambda _: None)
        assert (counts.fields_written, counts.ids_moved, counts.ids_dropped) == (1, 1, 1), counts
    consents = RedisConsentStore(redis, recording)
    assert await consents.grant(
        TENANT, ConsentGrant(account, f"audit-{account}", "phone", "v1", REQUEST_JSON, audit=True)
    )
    assert await consents.withdraw(
        TENANT, ConsentWithdrawal(account, f"audit-{account}", "phone", REQUEST_JSON)
    )
    await redis.hset(KEYS.verification(late), "challenge_expires_ms", 1)
    store = _verifications(recording)
    expired = port.ChallengeAnswer(TENANT, late, DIGEST, 3, 60_000, REQUEST_JSON)
    await store.submit(expired, _as_read(await store.record(TENANT, late)))
    known = (GRANT_LEGACY_MAP, WITHDRAW_LEGACY_MAP, EXPIRY_LEGACY_MAP) if tenant == "with legacy data" else ()
    recording.assert_one_bucket_each("consent_grant", "consent_withdraw", "bind_judge", known=known)


async def test_a_verifications_read(recording: ServiceRecording) -> None:
    vid = await challenge(recording.redis, TENANT, pseudonym("a"), OWNER)
    spec = read_spec(READER, (Category.VERIFICATION,), RETENTION_DAYS)
    read = await _verifications(recording).read(TENANT, vid, REQUEST_JSON, spec)
    assert read.outcome is port.WriteOutcome.DONE, read
    recording.assert_one_bucket_each("get_verification", "reads_record")


async def test_reads_recorded(recording: ServiceRecording) -> None:
    accounts = await _bound(recording.redis, 2)
    records = RedisReadRecords(recording.redis, recording, steps=StepRunner(recording, step_by_step=True))
    counted = await records.record(
        TENANT, READER, [Category.VERIFICATION], RETENTION_DAYS, accounts, only_existing=True
    )
    assert counted == len(accounts)
    recording.assert_one_bucket_each("hget", "exists", "reads_record")


async def test_ip_labels(recording: ServiceRecording) -> None:
    accounts = await _bound(recording.redis, 2)
    steps = StepRunner(recording, step_by_step=True)
    labels = await RedisAccounts(recording.redis, recording, RETENTION_DAYS, steps=steps).ip_labels(
        TENANT, accounts, READER
    )
    assert len(labels) == len(accounts)
    recording.assert_one_bucket_each("hmget", "reads_record")


async def test_a_display_names_check(recording: ServiceRecording) -> None:
    [account] = await _bound(recording.redis, 1)
    names = RedisDisplayNames(recording, steps=StepRunner(recording, step_by_step=True))
    await names.look_up(NameQuery(TENANT, account, "caller", (NAME_HASH,), 10, 60_000))
    recording.assert_one_bucket_each("account_facts", "display_name_index")


async def test_an_organizations_approved_names(recording: ServiceRecording) -> None:
    organization = await _organization(recording.redis)
    approval = NamesApproval(TENANT, organization, ("cd" * 16,), ("ef" * 16,), AssuranceLevel.LOW, REQUEST)
    names = RedisDisplayNames(recording, steps=StepRunner(recording, step_by_step=True))
    outcome, approved = await names.approve(approval)
    assert (outcome.value, approved) == ("OK", 1)
    recording.assert_one_bucket_each("account_facts", "approved_names_index")


async def test_an_accounts_own_writes(recording: ServiceRecording) -> None:
    """An account's records written: each call in the account's bucket, or T's alone.

    A login's label, consents granted and withdrawn (over live verifications), re-sealings, an
    export's entry, CheckIdentity's counts, a principal's lock-out audited.
    """
    redis = recording.redis
    await born_walked(redis, TENANT)
    [account] = await _bound(redis, 1)
    live = [await challenge(redis, TENANT, account, OWNER)]
    consents = RedisConsentStore(redis, recording)
    await consents.admit(TENANT, _admission(account, live[0]))  # listed among the account's live ones
    await RedisAccounts(redis, recording, RETENTION_DAYS).record_login_label(
        TENANT, account, LoginLabel("Beijing", "Beijing", "CN", "BJ", "geo", "2026-01-01", b"wire"), REQUEST
    )
    grant = ConsentGrant(account, f"audit-{account}", "phone", "v1", REQUEST_JSON, audit=True)
    assert await consents.grant(TENANT, grant) is not None
    assert await redis.zcard(KEYS.account_verifications(account)) >= len(live)
    withdrawal = ConsentWithdrawal(account, f"audit-{account}", "phone", REQUEST_JSON)
    assert await consents.withdraw(TENANT, withdrawal) is not None
    changes = {"pepper": ("pepper-1", "pepper-2")}
    assert await RedisIdentityRecords(redis, recording).reseal_verification(TENANT, live[0], changes)
    sealed = SealedRecord(RecordKind.ACCOUNT, TENANT, account)
    assert await RedisSealedRecords(redis, recording).reseal(sealed, {"identity": ("ref-1", "ref-1")})
    await RedisAccountExports(redis, recording).append_export(
        TENANT, json.dumps(REQUEST), f"audit-{account}", 0
    )
    checks = RedisIdentityChecks(redis, recording, steps=StepRunner(recording, step_by_step=True))
    await checks.tally(check_of(TENANT, account), CheckStep.MISMATCH)
    await LockoutAuditor(RedisRateWindows(recording)).record(TENANT, "c1", REQUEST)
    recording.assert_one_bucket_each(
        "consent_start",
        "login_ip",
        "consent_grant",
        "consent_withdraw",
        "reseal_verification",
        "account_export",
        "check_count",
        "check_entry",
        "rate_limit",
    )


async def test_an_incident_report(recording: ServiceRecording) -> None:
    redis = recording.redis
    await _bound(redis, 2)
    incidents = RedisIncidentStore(redis, recording)
    holdings = await incidents.holdings(TENANT)
    assert holdings.accounts == 2, holdings
    await incidents.append_report(TENANT, ReportEntry(json.dumps(REQUEST), "reads", 0, 1, 1))
    recording.assert_one_bucket_each("incident_holdings", "incident_report", known=(HOLDINGS_PAGE,))


async def test_the_audit_log(recording: ServiceRecording) -> None:
    """Staged entries sequenced and trimmed, the tree integrated, a head signed, seeks, a trim."""
    redis = recording.redis
    await _bound(redis, 1)
    await SyntheticStager(redis).stage(TENANT, 3, [event("staged-1"), event("staged-2")])
    stages = RedisAuditStages(redis, recording)
    assert len((await stages.read_staged(TENANT, 3, 10)).views) == 2  # QueryEvents' pending entries
    await StageSequencer(stages, 8).sequence(TENANT)
    log = RedisAuditLog(redis, recording)
    state = await log.integrate(TENANT)
    assert state.size > 0, state
    assert await log.replace_signed_head(TENANT, None, StoredHead(b"checkpoint", "key-1", b"signature"))
    assert await log.seek_times(TENANT, [0]) == [0]
    assert await log.trim(TENANT, 1, 1) == 1
    # `idverify audit rotate-key`'s entry, as the command writes it into each tenant's log.
    await recording.run(
        "audit_key", [KEYS.audit_signing_key(), KEYS.audit_log()], ["key-2", "key-1", json.dumps(REQUEST)]
    )
    recording.assert_one_bucket_each(
        "audit_stage_read",
        "audit_sequence",
        "audit_stage_trim",
        "audit_integrate",
        "audit_head",
        "audit_seek",
        "audit_trim",
        "audit_key",
    )


async def test_the_tenant_wide_records(recording: ServiceRecording) -> None:
    """Clients, console sessions, webhooks and their deliveries, event streams, the outbox, a read minute."""
    redis = recording.redis
    await _bound(redis, 1)
    request_json = json.dumps(REQUEST)
    clients = RedisClientStore(redis, recording)
    await clients.create(NewClient(TENANT, "c9", Role.PLATFORM, "reads", "mac", request_json))
    assert await clients.revoke(TENANT, "c9", request_json)
    sessions = RedisConsoleSessions(redis, recording)
    await sessions.open(TENANT, "digest", SessionRecord("auditor", "c1", 9_999_999_999_999), 60_000, REQUEST)
    await sessions.close(TENANT, "digest", REQUEST)
    hooks = RedisSubscriptionStore(redis, recording)
    await hooks.create(
        TENANT, NewSubscription("w1", "https://hooks.test/w1", frozenset(), "sealed", 1000, "", 1), REQUEST
    )
    subscription = await hooks.read(TENANT, "w1")
    assert subscription is not None
    lease, deliveries = Lease(TENANT, "w1", "token"), RedisDeliveryStore(recording)
    assert await deliveries.take(lease, 10_000)
    assert await deliveries.renew(lease, 10_000)
    batch = await deliveries.next_batch(lease, subscription.generation, "", "", 10)
    assert batch, batch
    assert await deliveries.advance(lease, subscription.generation, batch[-1].cursor)
    await deliveries.failed(lease, subscription.generation, "refused")
    await hooks.mark_failing(subscription, "refused", 1, REQUEST)
    await deliveries.give(lease)
    assert await hooks.update(TENANT, "w1", "rotate_secret", "sealed-again", REQUEST)
    assert await hooks.replay(TENANT, "w1", "", REQUEST)
    assert await hooks.delete(TENANT, "w1", REQUEST)
    leases = RedisStreamLeases(recording)
    assert await leases.take(TENANT, "c1", "token", limit=2, lease_ms=1000)
    await leases.give(TENANT, "c1", "token")
    await RedisOutbox(redis, recording).trim(TENANT, 1)
    minute = "29000000:c1"
    await redis.zadd(KEYS.reads_open(), {minute: 29_000_000})
    await RedisReadRecords(redis, recording).close_minute(TENANT, minute, 0, "", 0)
    recording.assert_one_bucket_each(
        "client",
        "console_session",
        "webhook_manage",
        "webhook_delivery",
        "event_stream_lease",
        "events_trim",
        "reads_close",
    )


async def test_a_tenants_removal(recording: ServiceRecording) -> None:
    await _bound(recording.redis, 1)
    removals = RedisRemovalStore(recording.redis, recording)
    await removals.schedule(TENANT, REQUEST, 1, 0)
    await removals.cancel(TENANT, REQUEST)
    await removals.schedule(TENANT, REQUEST, 1, 0)
    await removals.close(TENANT, REQUEST)
    recording.assert_one_bucket_each("tenant_removal")


class TestTheChecksCanFail:
    """A call crossing as none of the service's do today, and an allow-list entry that did not happen."""

    async def test_a_call_given_two_accounts_keys(self, recording: ServiceRecording) -> None:
        first, second = await _bound(recording.redis, 2)
        grant = ConsentGrant(first, f"audit-{first}", "phone", "v1", REQUEST_JSON, audit=True)
        await recording.run(
            "consent_grant",
            [KEYS.account(first), KEYS.consent(second), KEYS.audit_log()],
            [grant.purpose, grant.text_version, grant.request_json, grant.audit_pseudonym, "1"],
        )
        with pytest.raises(AssertionError, match=r"no entry of SERVICE_CROSSINGS allows.*consent:"):
            recording.assert_one_bucket_each("consent_grant", known=(GRANT_LEGACY_MAP,))

    async def test_a_key_derived_in_lua(self, recording: ServiceRecording) -> None:
        """One node's ``get`` (its read and accounting one script) is caught by the keys its Lua derives.

        None of them is given: a Cluster runs the two as steps of their own (§3.5).
        """
        vid = await challenge(recording.redis, TENANT, pseudonym("a"), OWNER)
        spec = read_spec(READER, (Category.VERIFICATION,), RETENTION_DAYS)
        one_node = RedisVerificationStore(recording.redis, recording, CodeSendChains(recording, LIMITS))
        await one_node.read(TENANT, vid, REQUEST_JSON, spec)
        assert not [key for call in recording.calls for key in call.given if ":read" in key]
        with pytest.raises(AssertionError, match=r"no entry of SERVICE_CROSSINGS allows.*readmin:"):
            assert_only_known_crossings(recording.calls, ["get"], (), "SERVICE_CROSSINGS", known=())

    async def test_an_entry_whose_crossing_is_gone(self, recording: ServiceRecording) -> None:
        vid = await challenge(recording.redis, TENANT, pseudonym("a"), OWNER)
        await _verifications(recording).read(TENANT, vid, REQUEST_JSON, None)  # no expiry: no entry
        with pytest.raises(AssertionError, match="no longer happen"):
            recording.assert_one_bucket_each("get_verification", known=(EXPIRY_LEGACY_MAP,))


async def _bound(redis: RedisClient, count: int) -> list[str]:
    """``count`` accounts bound to one identity."""
    accounts = [pseudonym(f"bound-{n}") for n in range(count)]
    for account in accounts:
        await bind_crash.bind(redis, TENANT, account, OWNER, limit=count + 1)
    return accounts


async def _organization(redis: RedisClient) -> str:
    """An organization's account bound in ``bind`` mode, its claim established with its names indexed."""
    organization = pseudonym("organization")
    record = replace(
        verification(organization, OWNER, establishes=True),
        kind=SubjectKind.ORGANIZATION,
        org_names=NAME_HASH,
    )
    vid = pseudonym("organization-vf")
    start = port.NewVerification(
        TENANT, f"req-{vid}", vid, organization, record, 60_000, 3, REQUEST_JSON, "bind"
    )
    written = await bind_crash.store_of(redis).commit(start, _as_read(record))
    assert written.record is not None
    assert written.record.status is Status.VERIFIED, written
    return organization

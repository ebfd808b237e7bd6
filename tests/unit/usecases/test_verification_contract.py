"""The VerificationStore port's contract, on the in-memory store and on Redis alike.

``testing.memory_verifications.MemoryVerificationStore`` (what ``test_verification_usecase.py``
runs the flow on) and ``store.verifications.RedisVerificationStore`` over a real redis-server
(``reserve_request``, ``start``, ``submit``, ``guardian``, ``get`` and the counters' scripts)
answer every assertion here the same way: the request id's reservation and release, a start's
modes and its binding limits, answers and their counts, a guardian's consent, expiry, and the
retry when key rotation moved an identity.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any, Protocol

import pytest

from idverify.domain.birth_dates import AgeSource
from idverify.domain.errors import RateLimited, StoreUnavailable
from idverify.domain.subjects import AgeBand, AssuranceLevel, SubjectKind
from idverify.flows.consent import AdmitOutcome, ConsentAdmission
from idverify.flows.context import RequestInfo
from idverify.flows.verification.port import (
    Admission,
    AnswerCount,
    ChallengeAnswer,
    ClaimsCheck,
    CodeSend,
    GuardianGrant,
    Held,
    NewVerification,
    Point,
    RequestRef,
    Reservation,
    SendVerdict,
    VerificationStore,
    WindowCount,
    WriteOutcome,
)
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import CodeSendChains
from idverify.store.connection import RedisClient, as_text
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.verifications import RedisVerificationStore
from idverify.testing.memory_code_sends import send_limits
from idverify.testing.memory_consents import MemoryConsentStore
from idverify.testing.memory_verifications import MemoryVerificationStore
from tests.unit.usecases.contract import Contract, port_on_each

T = "acme"
REQUEST = RequestInfo(principal="registrar01").audit_fields()
REQUEST_JSON = json.dumps(REQUEST)
LIMITS = send_limits(per_phone_per_hour=2, phone_failure_limit=2, failure_window_ms=60_000)
CODE = "ab" * 16
PHONE = "0123456789abcdef" * 2  # a deployment-wide phone pseudonym
# Account a1's request "req-1", and the key its request id alone named before (legacy).
REQ = RequestRef("a1", "req-1", "legacy-1")


class World(Protocol):
    """What the port does not write itself, and what it leaves behind."""

    async def bind(self, account_ps: str, fields: dict[str, str]) -> None: ...

    async def move(self, ref: str, to: str) -> None: ...

    async def bound(self, ref: str) -> set[str]: ...

    async def wait(self, ms: int) -> None: ...

    async def legacy_request(self, pseudonym: str, verification_id: str) -> None:
        """A request id's key as older releases wrote it (the request id's pseudonym alone)."""
        ...


class MemoryWorld:
    def __init__(self, store: MemoryVerificationStore) -> None:
        self._store = store

    async def bind(self, account_ps: str, fields: dict[str, str]) -> None:
        self._store.accounts.setdefault((T, account_ps), {}).update(fields)

    async def move(self, ref: str, to: str) -> None:
        self._store.move_identity(T, ref, to)

    async def bound(self, ref: str) -> set[str]:
        identity = self._store.identities.get((T, ref))
        return set(identity.accounts) if identity else set()

    async def wait(self, ms: int) -> None:
        self._store.consents.now += ms

    async def legacy_request(self, pseudonym: str, verification_id: str) -> None:
        self._store.requests[(T, pseudonym)] = verification_id


class RedisWorld:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._keys = TenantKeys(T)

    async def bind(self, account_ps: str, fields: dict[str, str]) -> None:
        await self._redis.hset(self._keys.account(account_ps), mapping=fields)  # type: ignore[arg-type]

    async def move(self, ref: str, to: str) -> None:
        await self._redis.hset(self._keys.identity(ref), "moved_to", to)

    async def bound(self, ref: str) -> set[str]:
        return {as_text(m) for m in await self._redis.smembers(self._keys.identity_accounts(ref))}  # type: ignore[misc]

    async def wait(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000)

    async def legacy_request(self, pseudonym: str, verification_id: str) -> None:
        await self._redis.set(self._keys.request(pseudonym), verification_id, px=60_000)


Port = Contract[VerificationStore, World]


def memory_port() -> Port:
    memory = MemoryVerificationStore(MemoryConsentStore(), LIMITS)
    return Port(memory, MemoryWorld(memory))


def redis_port(redis: RedisClient) -> Port:
    scripts = Scripts(redis)
    return Port(RedisVerificationStore(redis, scripts, CodeSendChains(scripts, LIMITS)), RedisWorld(redis))


def redis_step_by_step_port(redis: RedisClient) -> Port:
    """Redis's, with a binding's steps run one by one as on a Cluster (store.binding_steps)."""
    scripts = Scripts(redis)
    steps = StepRunner(scripts, step_by_step=True)
    store = RedisVerificationStore(redis, scripts, CodeSendChains(scripts, LIMITS), steps=steps)
    return Port(store, RedisWorld(redis))


port = port_on_each(memory_port, redis_port, step_by_step=redis_step_by_step_port)


def record(account_ps: str = "a1", identity: str = "id-1", **fields: Any) -> VerificationRecord:
    """A start's record as the flow builds it (pseudonyms and sealed values stand in as names)."""
    built = VerificationRecord(
        method="sms",
        assurance=AssuranceLevel.LOW,
        kind=SubjectKind.PERSON,
        acct=account_ps,
        acct_audit=f"audit-{account_ps}",
        name_tag="tag-1",
        otp_ps=f"otp-{account_ps}",
        identity=identity,
        name_binding="binding-1",
        pepper="pepper-1",
        age_band=AgeBand.ADULT,
        age_source=AgeSource.DOCUMENT,
    )
    return replace(built, **fields)


def challenge(account_ps: str = "a1", ttl_ms: int = 60_000, **fields: Any) -> VerificationRecord:
    """A start's record waiting for an answer (three attempts) to a code or a vendor's verdict."""
    waiting = {
        "status": Status.CHALLENGE_SENT,
        "next_step": "submit_challenge",
        "step_verifier": "sms_otp",
        "digest": CODE,
        "challenge_ttl_ms": ttl_ms,
        "max_attempts": 3,
        "attempts_left": 3,
    }
    return record(account_ps, **{**waiting, **fields})


def new(
    vid: str, fields: VerificationRecord, mode: str, request_ps: str = "", limit: int = 1
) -> NewVerification:
    return NewVerification(
        T, request_ps or f"req-{vid}", vid, fields.acct, fields, 60_000, limit, REQUEST_JSON, mode
    )


def answer(vid: str, digest: str = CODE, **fields: object) -> ChallengeAnswer:
    return replace(ChallengeAnswer(T, vid, digest, 1, 60_000, REQUEST_JSON), **fields)  # type: ignore[arg-type]


async def unmoved(moved: bool) -> VerificationRecord:
    """The point of a start whose identity never moves: never called."""
    raise AssertionError(f"no identity moved, yet pointed ({moved=})")


def as_read(read: VerificationRecord) -> Point:
    """The point of a write whose identity never moves: the record as read."""

    async def point(moved: bool) -> VerificationRecord:
        assert not moved, "no identity moved"
        return read

    return point


def admission(vid: str, *, request: RequestRef = REQ, claims: int = 0, window: int = 0) -> Admission:
    consent = ConsentAdmission("a1", "audit-a1", vid, 90_000, "", (), REQUEST_JSON, "sms")
    return Admission(
        T,
        request,
        vid,
        30_000,
        ClaimsCheck("tag-1", claims, REQUEST),
        consent,
        WindowCount("ident-1", window, 3600, REQUEST) if window else None,
    )


async def test_contract_a_request_id_is_reserved_once_and_released_for_its_retry(port: Port) -> None:
    store = port.store
    read = await store.read_start(T, REQ, "tag-1")
    assert (read.holder, dict(read.consent.states), read.consent.cancelled) == (None, {}, False)
    first = await store.admit(admission("v1"))
    assert first.reservation is Reservation.RESERVED
    assert first.consent is not None
    assert first.consent.outcome is AdmitOutcome.ADMITTED
    assert (first.claims_refusal, first.window_counted, first.window_refusal) == (None, False, None)
    assert (await store.read_start(T, REQ, "tag-1")).holder == Held("v1")
    assert await store.holder(T, REQ) == Held("v1")
    held = await store.admit(admission("v2"))
    assert (held.reservation, held.holder) == (Reservation.HELD, "v1")
    await store.release(T, REQ, "v1", 30_000)
    assert await store.holder(T, REQ) is None
    # The released attempt's own late writes take nothing; the retry's reservation does.
    assert (await store.admit(admission("v1"))).reservation is Reservation.RELEASED
    late = await store.commit(new("v1", challenge(), "challenge", "req-1"), unmoved)
    assert late.outcome is WriteOutcome.RELEASED
    assert (await store.admit(admission("v3"))).reservation is Reservation.RESERVED
    await store.confirm(T, REQ)


async def test_contract_a_legacy_key_is_read_where_the_accounts_is_absent_and_never_written(
    port: Port,
) -> None:
    """Older releases keyed a request id alone: read as the fallback, marked, and left as it is."""
    store, world = port.store, port.world
    await world.legacy_request(REQ.legacy_pseudonym, "v-old")
    assert (await store.read_start(T, REQ, "tag-1")).holder == Held("v-old", legacy=True)
    assert await store.holder(T, REQ) == Held("v-old", legacy=True)
    await store.confirm(T, REQ)
    # Another account's request under the same id reads the legacy key too: the flow judges it.
    other = RequestRef("a2", "req-2", REQ.legacy_pseudonym)
    assert await store.holder(T, other) == Held("v-old", legacy=True)
    # The account's own key answers first, and a release frees it alone.
    assert (await store.admit(admission("v1"))).reservation is Reservation.RESERVED
    assert (await store.read_start(T, REQ, "tag-1")).holder == Held("v1")
    await store.release(T, REQ, "v1", 30_000)
    assert await store.holder(T, REQ) == Held("v-old", legacy=True)


async def test_contract_a_committed_start_keeps_its_request_id(port: Port) -> None:
    store = port.store
    assert (await store.admit(admission("v1"))).reservation is Reservation.RESERVED
    stored = await store.commit(new("v1", challenge(), "challenge", "req-1"), unmoved)
    assert stored.outcome is WriteOutcome.DONE
    assert (stored.record.status, stored.record.id) == (Status.CHALLENGE_SENT, "v1")
    created = stored.record.created_ms
    assert stored.record.expires_ms == created + 60_000
    assert stored.record.challenge_expires_ms == created + 60_000
    await store.release(T, REQ, "v1", 30_000)  # a lost reply: the retry must find it
    assert await store.holder(T, REQ) == Held("v1")
    again = await store.commit(new("v2", challenge(), "challenge", "req-1"), unmoved)
    assert (again.outcome, again.detail) == (WriteOutcome.EXISTS, "v1")
    assert await store.record(T, "v1") == stored.record
    assert await store.record(T, "v2") is None


async def test_contract_claims_refused_at_their_limit_and_the_identity_window(port: Port) -> None:
    store = port.store
    bound = await store.commit(new("v1", record("a1"), "bind"), unmoved)
    assert bound.record.status == Status.VERIFIED
    # The binding limit (1) refuses a second account, and counts a refused claim for its name.
    refused = await store.commit(new("v2", record("a2"), "bind"), unmoved)
    assert (refused.record.status, refused.record.reason) == (Status.REJECTED, "BINDING_LIMIT_REACHED")
    limited = await store.admit(admission("v3", claims=1))
    assert limited.reservation is Reservation.RESERVED
    assert limited.claims_refusal is not None
    assert limited.claims_refusal.reason == "CLAIM_REFUSALS_LIMIT_REACHED"
    assert limited.consent is None
    counted = await store.admit(
        admission("v4", request=RequestRef("a1", "req-2", "legacy-2"), claims=2, window=1)
    )
    assert (counted.window_counted, counted.window_refusal) == (True, None)
    over = await store.admit(admission("v5", request=RequestRef("a1", "req-3", "legacy-3"), window=1))
    assert over.window_counted
    assert over.window_refusal is not None
    assert over.window_refusal.reason == "IDENTITY_RATE_LIMITED"
    with pytest.raises(RateLimited):
        await store.count_window(T, WindowCount("ident-1", 1, 3600, REQUEST))
    await store.count_window(T, WindowCount("ident-2", 1, 3600, REQUEST))


async def test_contract_a_changed_consent_record_is_answered_and_admitted_again(port: Port) -> None:
    store = port.store
    stale = replace(admission("v1").consent, revision="7")
    changed = await store.admit(replace(admission("v1", window=5), consent=stale))
    assert changed.consent is not None
    assert changed.consent.outcome is AdmitOutcome.CHANGED
    assert not changed.window_counted
    again = await store.readmit(T, admission("v1").consent, WindowCount("ident-1", 5, 3600, REQUEST))
    assert again.consent.outcome is AdmitOutcome.ADMITTED
    assert (again.window_counted, again.window_refusal) == (True, None)


async def test_contract_binding_an_account_and_refusing_another_identity(port: Port) -> None:
    store, world = port.store, port.world
    bound = await store.commit(new("v1", record("a1", "id-1"), "bind"), unmoved)
    assert (bound.record.status, bound.record.reason) == (Status.VERIFIED, "")
    assert await world.bound("id-1") == {"a1"}
    fields = await store.account_fields(T, "a1", ("identity", "age_source", "nothing"))
    assert fields == {"identity": "id-1", "age_source": "document"}
    other = await store.commit(new("v2", record("a1", "id-2"), "bind"), unmoved)
    assert (other.record.status, other.record.reason) == (Status.REJECTED, "ACCOUNT_BOUND_TO_OTHER_IDENTITY")
    again = await store.commit(new("v3", record("a1", "id-1"), "bind"), unmoved)
    assert again.record.status == Status.VERIFIED
    rejected = await store.commit(new("v4", record("a3", reason="DOCUMENT_INVALID"), "rejected"), unmoved)
    assert (rejected.record.status, rejected.record.reason) == (Status.REJECTED, "DOCUMENT_INVALID")
    assert await world.bound("id-1") == {"a1"}


async def test_contract_a_start_whose_identity_moved_is_pointed_again(port: Port) -> None:
    store, world = port.store, port.world
    await world.move("id-old", "id-new")
    fields = record("a1", "id-old")
    calls: list[bool] = []

    async def point(moved: bool) -> VerificationRecord:
        calls.append(moved)
        return replace(fields, identity="id-new")

    bound = await store.commit(new("v1", fields, "bind"), point)
    assert calls == [True]
    assert (bound.record.status, bound.record.identity) == (Status.VERIFIED, "id-new")
    assert await world.bound("id-new") == {"a1"}

    async def nowhere(moved: bool) -> VerificationRecord:
        assert moved
        return record("a2", "id-old")

    with pytest.raises(StoreUnavailable) as kept_moving:
        await store.commit(new("v2", record("a2", "id-old"), "bind"), nowhere)
    assert kept_moving.value.reason == "CONTENDED"


async def test_contract_wrong_codes_count_down_to_a_rejection(port: Port) -> None:
    store = port.store
    await store.commit(new("v1", challenge(), "challenge"), unmoved)
    wrong = await store.submit(answer("v1", "00" * 16), as_read(challenge()))
    assert (wrong.record.status, wrong.record.attempts_left, wrong.record.reason) == (
        Status.CHALLENGE_SENT,
        2,
        "OTP_MISMATCH",
    )
    await store.submit(answer("v1", "00" * 16), as_read(challenge()))
    last = await store.submit(answer("v1", "00" * 16), as_read(challenge()))
    assert (last.record.status, last.record.reason, last.record.attempts_left) == (
        Status.REJECTED,
        "OTP_ATTEMPTS_EXHAUSTED",
        0,
    )
    late = await store.submit(answer("v1"), as_read(challenge()))
    assert (late.outcome, late.record.status) == (WriteOutcome.STATE, Status.REJECTED)
    # The account + phone used up its wrong codes: a new code is not sent.
    send = CodeSend(T, "otp-a1", "tphone-1", PHONE, "registrar01", 3, REQUEST)
    locked = await store.count_send(send)
    assert (locked.verdict, locked.failures) == (SendVerdict.OTP_LOCKED, 3)


async def test_contract_the_right_code_binds_and_only_once(port: Port) -> None:
    store, world = port.store, port.world
    await store.commit(new("v1", challenge(), "challenge"), unmoved)
    right = await store.submit(answer("v1"), as_read(challenge()))
    assert (right.outcome, right.record.status, right.record.reason) == (
        WriteOutcome.DONE,
        Status.VERIFIED,
        "",
    )
    assert right.record.digest == ""
    assert await world.bound("id-1") == {"a1"}
    again = await store.submit(answer("v1"), as_read(challenge()))
    assert again.outcome is WriteOutcome.STATE
    unknown = await store.submit(answer("f" * 32), as_read(challenge()))
    assert unknown.outcome is WriteOutcome.NOT_FOUND
    assert (await store.read(T, "f" * 32, REQUEST_JSON, None)).outcome is WriteOutcome.NOT_FOUND


async def test_contract_a_minor_waits_for_a_guardian(port: Port) -> None:
    store, world = port.store, port.world
    minor = challenge(minor=True)
    await store.commit(new("v1", minor, "challenge"), unmoved)
    waiting = await store.submit(answer("v1"), as_read(minor))
    assert (waiting.record.status, waiting.record.next_step) == (
        Status.NEEDS_GUARDIAN_CONSENT,
        "guardian_consent",
    )
    guardian = {"identity": "id-9", "age_source": "document", "age_band": "adult"}
    grant = GuardianGrant(T, "v1", "a1", "g1", 1, REQUEST_JSON, "text-1", "parent", guardian, "")
    assert (await store.grant_guardian(grant, as_read(minor))).detail == "GUARDIAN_NOT_VERIFIED"
    await world.bind("g1", {**guardian, "birth_sealed": "sealed"})
    assert (await store.grant_guardian(grant, as_read(minor))).outcome is WriteOutcome.GUARDIAN_CHANGED
    grant = replace(grant, guardian_fields={**guardian, "birth_sealed": "sealed"})
    refused = await store.grant_guardian(replace(grant, refusal="GUARDIAN_NOT_ADULT"), as_read(minor))
    assert (refused.outcome, refused.detail) == (WriteOutcome.GUARDIAN_REFUSED, "GUARDIAN_NOT_ADULT")
    granted = await store.grant_guardian(grant, as_read(minor))
    assert (granted.outcome, granted.record.status) == (WriteOutcome.DONE, Status.VERIFIED)
    assert await world.bound("id-1") == {"a1"}
    assert (await store.grant_guardian(grant, as_read(minor))).outcome is WriteOutcome.STATE


async def test_contract_a_challenge_expires_when_read_or_answered(port: Port) -> None:
    store, world = port.store, port.world
    await store.commit(new("v1", challenge(ttl_ms=50), "challenge"), unmoved)
    await store.commit(new("v2", challenge("a2", ttl_ms=50), "challenge"), unmoved)
    assert (await store.read(T, "v1", REQUEST_JSON, None)).record.status is Status.CHALLENGE_SENT
    await world.wait(120)
    read = await store.read(T, "v1", REQUEST_JSON, None)
    assert (read.outcome, read.record.status, read.record.reason) == (
        WriteOutcome.DONE,
        Status.EXPIRED,
        "OTP_EXPIRED",
    )
    late = await store.submit(answer("v2"), as_read(challenge("a2")))
    assert (late.record.status, late.record.reason) == (Status.EXPIRED, "OTP_EXPIRED")


async def test_contract_a_vendors_verdict_stands_only_for_a_vendor_run_challenge(port: Port) -> None:
    store = port.store
    vendor = challenge(digest="", step_verifier="face_liveness")
    await store.commit(new("v1", vendor, "challenge"), unmoved)
    await store.commit(new("v2", challenge("a2"), "challenge"), unmoved)
    refused = await store.submit(answer("v2", "", verdict="pass"), as_read(challenge("a2")))
    assert (refused.outcome, refused.record.status) == (WriteOutcome.STATE, Status.CHALLENGE_SENT)
    failed = await store.submit(
        answer("v1", "", verdict="fail", verdict_reason="LIVENESS_FAILED"), as_read(vendor)
    )
    assert (failed.record.status, failed.record.reason) == (Status.REJECTED, "LIVENESS_FAILED")


async def test_contract_wrong_codes_lock_the_phone_across_verifications(port: Port) -> None:
    store = port.store
    for vid, account_ps in (("v1", "a1"), ("v2", "a2")):
        await store.commit(new(vid, challenge(account_ps), "challenge"), unmoved)
    count = AnswerCount(PHONE, wrong=True, lock_pseudonym="otp-a1", request=REQUEST)
    for _ in range(2):
        await store.submit(answer("v1", "00" * 16, count=count), as_read(challenge("a1")))
    right = AnswerCount(PHONE, wrong=False, lock_pseudonym="otp-a2", request=REQUEST)
    with pytest.raises(RateLimited) as locked:
        await store.submit(answer("v2", count=right), as_read(challenge("a2")))
    assert locked.value.reason == "PHONE_LOCKED"
    assert (await store.record(T, "v2")).status is Status.CHALLENGE_SENT  # nothing was judged
    send = CodeSend(T, "otp-a3", "tphone-3", PHONE, "registrar01", 3, REQUEST)
    assert (await store.count_send(send)).verdict is SendVerdict.PHONE_LOCKED


async def test_contract_code_sends_are_counted_per_phone(port: Port) -> None:
    store = port.store
    send = CodeSend(T, "otp-a1", "tphone-1", PHONE, "registrar01", 3, REQUEST, identity_keys=())
    first = await store.count_send(send)
    assert (first.verdict, first.failures) == (SendVerdict.OK, 0)
    assert (await store.count_send(replace(send, identity_keys=None))).verdict is SendVerdict.OK
    with pytest.raises(RateLimited) as limited:
        await store.count_send(send)
    assert limited.value.reason == "PHONE_RATE_LIMITED"


async def test_contract_an_answer_from_a_remembered_record_goes_ahead_only_while_it_holds(port: Port) -> None:
    store = port.store
    await store.commit(new("v1", challenge(), "challenge"), unmoved)
    remembered = await store.record(T, "v1")
    assert remembered is not None
    wrong = AnswerCount(PHONE, wrong=True, lock_pseudonym="otp-a1", request=REQUEST)
    counted = await store.submit(answer("v1", "00" * 16, count=wrong, expect=remembered), as_read(remembered))
    assert (counted.outcome, counted.record.attempts_left) == (WriteOutcome.DONE, 2)
    # The wrong code changed the record: what was remembered before it is stale, and not counted
    # (a second wrong code would lock the phone at its limit of 2, refusing the right one below).
    stale = await store.submit(answer("v1", "00" * 16, count=wrong, expect=remembered), as_read(remembered))
    assert (stale.outcome, stale.record) == (WriteOutcome.STALE, None)
    assert (await store.record(T, "v1")) == counted.record
    right = AnswerCount(PHONE, wrong=False, lock_pseudonym="otp-a1", request=REQUEST)
    done = await store.submit(answer("v1", count=right, expect=counted.record), as_read(counted.record))
    assert (done.outcome, done.record.status) == (WriteOutcome.DONE, Status.VERIFIED)
    gone = await store.submit(answer("f" * 32, expect=remembered), as_read(remembered))
    assert gone.outcome is WriteOutcome.STALE

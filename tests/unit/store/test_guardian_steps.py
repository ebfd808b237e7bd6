"""A guardian's consent reads the guardian's account before the minor's step (docs/ARCHITECTURE.md, §3.1).

Step by step (a Cluster's path, run here on a standalone redis-server through the test-only
``StepRunner(step_by_step=True)``) the guardian's account is another account's bucket, so the store
reads it in a round trip of its own right before the minor's step, which is given what was read
and no key of that account; the minor's identity is asked between them (``identity_rests``).
On one node the step reads the account itself, in the same script.

Abuse first. The guardian's account changed between that read and the step (cancelled, verified
again with another age): step by step the consent stands, judged on the read, as one given a
moment before the change; on one node the step sees the change and answers ``GUARDIAN_CHANGED``
(``GUARDIAN_NOT_VERIFIED`` for a cancelled guardian), and the flow judges again. A change before
the store's read gets that answer on both paths. A guardian of the minor's own identity is
``GUARDIAN_IS_SUBJECT``, also once a move took the guardian's account to the new ref while the
verification names the old one (step by step the identity is asked after the guardian's read, as
one node asks it in the script); one never verified is ``GUARDIAN_NOT_VERIFIED``, on both paths.
A move in flight makes the consent wait, writing nothing. The entries of a consent are the same
bytes either way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from idverify.domain.birth_dates import AgeSource
from idverify.domain.errors import StoreUnavailable
from idverify.domain.subjects import AgeBand
from idverify.flows.context import call_deadline
from idverify.flows.verification.port import (
    GUARDIAN_FIELDS,
    GuardianGrant,
    NewVerification,
    WriteOutcome,
    Written,
)
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text
from idverify.store.erasures import RedisErasureStore
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing import RedisProcess
from tests.bind_crash import OWNER, REQUEST_JSON, store_of
from tests.cancel_crash import cancellation, entries, pseudonym
from tests.move_crash import DUE_MS, NEW, OLD, bound_identity, move, moved_killed_after
from tests.unit.store.test_binding_steps import _timeless
from tests.unit.store.test_identity_accounts import REF, verification

GUARDIAN_REF = "ref-guardian"
GUARDIAN_NAME = {"name_tag": "tag-guardian", "name_binding": "binding-guardian"}
PATHS = ["step_by_step", "one_node"]

Change = Callable[[RedisClient, str, str], Awaitable[None]]


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


def _tenant(label: str) -> str:
    return f"grd{pseudonym(label)[:8]}"


class _ChangedBeforeTheStep(Scripts):
    """Scripts that run ``change`` once, right before the ``guardian`` step (after any read before it)."""

    def __init__(self, redis: RedisClient, change: Callable[[], Awaitable[None]]) -> None:
        super().__init__(redis)
        self._change: Callable[[], Awaitable[None]] | None = change

    async def run(self, name: str, keys: Sequence[str], args: Sequence[str | int | bytes]) -> Any:
        if name == "guardian" and self._change is not None:
            change, self._change = self._change, None
            await change()
        return await super().run(name, keys, args)

    @property
    def changed(self) -> bool:
        return self._change is None


async def _bound(
    redis: RedisClient, tenant: str, account_ps: str, record: VerificationRecord, label: str
) -> None:
    """``account_ps`` bound by a start in ``bind`` mode with ``record``."""
    vid = pseudonym(f"{tenant}-{label}-{account_ps}")
    start = NewVerification(tenant, f"req-{vid}", vid, account_ps, record, 60_000, 3, REQUEST_JSON, "bind")
    done = await store_of(redis).commit(start, _as_read(record))
    assert done.record is not None
    assert done.record.status is Status.VERIFIED, done.record


def _adult(guardian_ps: str, ref: str = GUARDIAN_REF) -> VerificationRecord:
    return replace(verification(guardian_ps, GUARDIAN_NAME), identity=ref)


async def _waiting(
    redis: RedisClient, tenant: str, ref: str = REF, *, seen: str = ""
) -> tuple[str, str, VerificationRecord]:
    """A minor's verification of ``ref`` waiting for a guardian's consent: its account, id and record.

    ``seen``: the name binding its start found at ``ref`` ('' when it found no record there).
    """
    minor = pseudonym(f"{tenant}-minor")
    record = replace(
        verification(minor, OWNER),
        identity=ref,
        name_binding_seen=seen,
        status=Status.NEEDS_GUARDIAN_CONSENT,
        next_step="guardian_consent",
        minor=True,
        age_band=AgeBand.FROM_14_TO_17,
        age_source=AgeSource.DOCUMENT,
    )
    vid = pseudonym(f"{tenant}-minor-vf")
    start = NewVerification(tenant, f"req-{vid}", vid, minor, record, 60_000, 3, REQUEST_JSON, "guardian")
    waiting = await store_of(redis).commit(start, _as_read(record))
    assert waiting.record is not None
    assert waiting.record.status is Status.NEEDS_GUARDIAN_CONSENT
    return minor, vid, record


async def _grant(
    redis: RedisClient, path: str, tenant: str, guardian: str, *, change: Change | None = None
) -> tuple[Written, str]:
    """The guardian's consent for a waiting minor, judged on the guardian's account as read first.

    ``change`` runs right before the minor's step: step by step after the store's own read of the
    guardian's account, on one node after the flow's. Answers the write and the minor's account.
    """
    minor, vid, record = await _waiting(redis, tenant)
    store = store_of(redis)
    judged = await store.account_fields(tenant, guardian, GUARDIAN_FIELDS)  # the flow's read

    async def changed() -> None:
        if change is not None:
            await change(redis, tenant, guardian)

    scripts = _ChangedBeforeTheStep(redis, changed)
    runner = StepRunner(scripts, step_by_step=path == "step_by_step")
    grant = GuardianGrant(tenant, vid, minor, guardian, 3, REQUEST_JSON, "text-1", "parent", judged, "")
    written = await store_of(redis, scripts, runner).grant_guardian(grant, _as_read(record))
    assert scripts.changed
    return written, minor


async def _cancelled(redis: RedisClient, tenant: str, account_ps: str) -> None:
    """The account cancelled by its own request (the cancellation's steps as one node runs them)."""
    done = await RedisErasureStore(redis, Scripts(redis)).cancel(
        tenant, cancellation(account_ps, "cancel-guardian")
    )
    assert done is not None


async def _verified_again(redis: RedisClient, tenant: str, account_ps: str) -> None:
    """The account verified again under its identity, its age now from an authority's birth date."""
    record = replace(_adult(account_ps), age_source=AgeSource.AUTHORITY, birth_sealed="sealed-again")
    await _bound(redis, tenant, account_ps, record, "again")


async def _guardian(redis: RedisClient, tenant: str, ref: str = GUARDIAN_REF) -> str:
    guardian = pseudonym(f"{tenant}-guardian")
    await _bound(redis, tenant, guardian, _adult(guardian, ref), "guardian")
    return guardian


async def _account(redis: RedisClient, tenant: str, account_ps: str) -> dict[str, str]:
    raw = await redis.hgetall(TenantKeys(tenant).account(account_ps))
    return {as_text(k): as_text(v) for k, v in raw.items()}


class TestTheGuardianChangedBetweenTheReadAndTheStep:
    @pytest.mark.parametrize("change", [_cancelled, _verified_again])
    async def test_step_by_step_the_consent_stands_on_the_read(
        self, redis: RedisClient, change: Change
    ) -> None:
        """As a consent given a moment before the change: granted, the minor bound, naming the guardian."""
        tenant = _tenant(f"after-read-{change.__name__}")
        guardian = await _guardian(redis, tenant)
        written, minor = await _grant(redis, "step_by_step", tenant, guardian, change=change)
        assert written.outcome is WriteOutcome.DONE, written
        assert written.record is not None
        assert written.record.status is Status.VERIFIED
        assert (await _account(redis, tenant, minor))["identity"] == REF
        log = await entries(redis, tenant)
        granted = [
            e for e in log if e["type"] == "consent.granted" and e["attributes"]["purpose"] == "guardian"
        ]
        assert [e["attributes"]["guardian"] for e in granted] == [f"audit-{guardian}"]
        account = await _account(redis, tenant, guardian)
        if change is _cancelled:
            # The cancellation came first, and the consent judged on the read before it stands.
            types = [e["type"] for e in log]
            assert types.index("account.cancelled") < types.index("consent.granted")
            assert "identity" not in account, account
            assert "cancelled_ms" in account, account
        else:
            assert account["birth_sealed"] == "sealed-again", account

    @pytest.mark.parametrize(
        ("change", "outcome", "detail"),
        [
            (_cancelled, WriteOutcome.GUARDIAN_REFUSED, "GUARDIAN_NOT_VERIFIED"),
            (_verified_again, WriteOutcome.GUARDIAN_CHANGED, ""),
        ],
    )
    async def test_on_one_node_the_step_sees_the_change(
        self, redis: RedisClient, change: Change, outcome: WriteOutcome, detail: str
    ) -> None:
        """One node's step reads the account itself: the change is before the consent, which is refused."""
        tenant = _tenant(f"one-node-{change.__name__}")
        guardian = await _guardian(redis, tenant)
        written, minor = await _grant(redis, "one_node", tenant, guardian, change=change)
        assert (written.outcome, written.detail) == (outcome, detail)
        assert "identity" not in await _account(redis, tenant, minor)
        assert not [e for e in await entries(redis, tenant) if e["type"] == "consent.granted"]


class TestTheGuardianChangedBeforeTheRead:
    @pytest.mark.parametrize("path", PATHS)
    @pytest.mark.parametrize(
        ("change", "outcome", "detail"),
        [
            (_cancelled, WriteOutcome.GUARDIAN_REFUSED, "GUARDIAN_NOT_VERIFIED"),
            (_verified_again, WriteOutcome.GUARDIAN_CHANGED, ""),
        ],
    )
    async def test_the_store_answers_from_its_read(
        self, redis: RedisClient, path: str, change: Change, outcome: WriteOutcome, detail: str
    ) -> None:
        """Changed after the flow judged it: refused or CHANGED (the flow reads and judges again)."""
        tenant = _tenant(f"before-read-{path}-{change.__name__}")
        guardian = await _guardian(redis, tenant)
        minor, vid, record = await _waiting(redis, tenant)
        judged = await store_of(redis).account_fields(tenant, guardian, GUARDIAN_FIELDS)
        await change(redis, tenant, guardian)
        scripts = Scripts(redis)
        store = store_of(redis, scripts, StepRunner(scripts, step_by_step=path == "step_by_step"))
        grant = GuardianGrant(tenant, vid, minor, guardian, 3, REQUEST_JSON, "text-1", "parent", judged, "")
        written = await store.grant_guardian(grant, _as_read(record))
        assert (written.outcome, written.detail) == (outcome, detail)
        assert "identity" not in await _account(redis, tenant, minor)


class TestGuardiansThatDoNotQualify:
    @pytest.mark.parametrize("path", PATHS)
    async def test_another_account_of_the_minors_own_identity(self, redis: RedisClient, path: str) -> None:
        """An adult account bound to the minor's identity is the subject, not a guardian."""
        tenant = _tenant(f"subject-{path}")
        guardian = await _guardian(redis, tenant, ref=REF)
        written, minor = await _grant(redis, path, tenant, guardian)
        assert (written.outcome, written.detail) == (WriteOutcome.GUARDIAN_REFUSED, "GUARDIAN_IS_SUBJECT")
        assert "identity" not in await _account(redis, tenant, minor)

    @pytest.mark.parametrize("path", PATHS)
    @pytest.mark.parametrize("forward_ms", [0, 60_000])
    async def test_the_minors_own_identity_moved_under_the_verification(
        self, redis: RedisClient, path: str, forward_ms: int
    ) -> None:
        """Re-indexed after the minor's start: the same person under the new ref, refused.

        The guardian's account names the new ref, the verification still the old one. The
        identity is asked before the step, as one node's script asks it, and the verification
        pointed anew.
        """
        tenant = _tenant(f"subject-moved-{path}-{forward_ms}")
        guardian = await _guardian(redis, tenant, ref=OLD)
        minor, vid, record = await _waiting(redis, tenant, OLD, seen="binding-guardian")
        keys = TenantKeys(tenant)
        await redis.zadd(keys.erasure_due(), {f"i:{OLD}": DUE_MS})
        assert await move(redis, tenant, StepRunner(Scripts(redis)), forward_ms=forward_ms) == "OK"
        assert (await _account(redis, tenant, guardian))["identity"] == NEW
        judged = await store_of(redis).account_fields(tenant, guardian, GUARDIAN_FIELDS)
        pointed: list[bool] = []

        async def point(moved: bool) -> VerificationRecord:
            """As the flow's BindingPoints: a moved identity's verification re-pointed, then read."""
            pointed.append(moved)
            if not moved:
                return record
            await redis.hset(keys.verification(vid), "identity", NEW)
            return replace(record, identity=NEW)

        scripts = Scripts(redis)
        store = store_of(redis, scripts, StepRunner(scripts, step_by_step=path == "step_by_step"))
        grant = GuardianGrant(tenant, vid, minor, guardian, 3, REQUEST_JSON, "text-1", "parent", judged, "")
        written = await store.grant_guardian(grant, point)
        assert (written.outcome, written.detail) == (WriteOutcome.GUARDIAN_REFUSED, "GUARDIAN_IS_SUBJECT")
        assert pointed == [False, True]
        assert "identity" not in await _account(redis, tenant, minor)
        assert not [e for e in await entries(redis, tenant) if e["type"] == "consent.granted"]
        assert await redis.zcard(keys.intents()) == 0

    @pytest.mark.parametrize("path", PATHS)
    async def test_an_account_never_verified(self, redis: RedisClient, path: str) -> None:
        tenant = _tenant(f"unverified-{path}")
        guardian = pseudonym(f"{tenant}-nobody")
        written, minor = await _grant(redis, path, tenant, guardian)
        assert (written.outcome, written.detail) == (WriteOutcome.GUARDIAN_REFUSED, "GUARDIAN_NOT_VERIFIED")
        assert "identity" not in await _account(redis, tenant, minor)

    @pytest.mark.parametrize("path", PATHS)
    async def test_a_refusal_the_flow_judged_stands(self, redis: RedisClient, path: str) -> None:
        """Not an adult today (the flow's judgement of the sealed birth date): refused with its reason."""
        tenant = _tenant(f"refused-{path}")
        guardian = await _guardian(redis, tenant)
        minor, vid, record = await _waiting(redis, tenant)
        judged = await store_of(redis).account_fields(tenant, guardian, GUARDIAN_FIELDS)
        scripts = Scripts(redis)
        store = store_of(redis, scripts, StepRunner(scripts, step_by_step=path == "step_by_step"))
        grant = GuardianGrant(
            tenant, vid, minor, guardian, 3, REQUEST_JSON, "text-1", "parent", judged, "GUARDIAN_NOT_ADULT"
        )
        written = await store.grant_guardian(grant, _as_read(record))
        assert (written.outcome, written.detail) == (WriteOutcome.GUARDIAN_REFUSED, "GUARDIAN_NOT_ADULT")


class TestTheMinorsIdentityMoving:
    @pytest.mark.parametrize("path", PATHS)
    async def test_past_its_deadline_a_move_in_flight_is_unavailable_and_wrote_nothing(
        self, redis: RedisClient, own_redis: RedisProcess, path: str
    ) -> None:
        """The minor's identity is being moved (killed after its first step): the consent waits.

        Step by step it is asked before the minor's step, as one node's script asks it inside:
        no consent entry, nothing marked in flight, no intent; the call is UNAVAILABLE past its time.
        """
        tenant = _tenant(f"subject-moving-{path}")
        guardian = await _guardian(redis, tenant)
        minor, vid, record = await _waiting(redis, tenant, OLD, seen="binding-org")
        await bound_identity(redis, tenant, [pseudonym(f"{tenant}-member")])
        await asyncio.to_thread(moved_killed_after, own_redis.url, tenant, 1)
        judged = await store_of(redis).account_fields(tenant, guardian, GUARDIAN_FIELDS)
        scripts = Scripts(redis)
        store = store_of(redis, scripts, StepRunner(scripts, step_by_step=path == "step_by_step"))
        grant = GuardianGrant(tenant, vid, minor, guardian, 3, REQUEST_JSON, "text-1", "parent", judged, "")
        token = call_deadline.set(asyncio.get_running_loop().time() + 0.3)
        try:
            with pytest.raises(StoreUnavailable):
                await store.grant_guardian(grant, _as_read(record))
        finally:
            call_deadline.reset(token)
        keys = TenantKeys(tenant)
        assert await redis.hget(keys.verification(vid), "status") == b"NEEDS_GUARDIAN_CONSENT"
        assert not await redis.hexists(keys.verification(vid), "binding")
        assert await redis.zscore(keys.intents(), f"bind:{vid}") is None
        assert not [e for e in await entries(redis, tenant) if e["type"] == "consent.granted"]


async def test_the_entries_of_one_node_and_of_the_steps_are_the_same_bytes(redis: RedisClient) -> None:
    """The consent's entry names the guardian's audit pseudonym as read, on either path."""
    logs = []
    for path in PATHS:
        tenant = _tenant("bytes")  # the same ids in both, in two databases' worth of keys
        await redis.flushdb()
        guardian = await _guardian(redis, tenant)
        written, _ = await _grant(redis, path, tenant, guardian)
        assert written.outcome is WriteOutcome.DONE, written
        raw = await redis.hgetall(TenantKeys(tenant).audit_log())
        logs.append([_timeless(raw[str(i).encode()]) for i in range(len(raw))])
    assert logs[0] == logs[1]
    granted = [json.loads(entry) for entry in logs[0] if b'"consent.granted"' in entry]
    assert len(granted) == 1


def _as_read(record: VerificationRecord) -> Callable[[bool], Awaitable[VerificationRecord]]:
    async def point(moved: bool) -> VerificationRecord:
        assert not moved
        return record

    return point

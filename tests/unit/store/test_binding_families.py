"""Each step of a binding names keys of one planned bucket (docs/ARCHITECTURE.md, "Buckets: the plan").

Every key is still in ``{t:T}`` today, so a step that reads a second family runs anyway, on a
Cluster too, and would fail with ``CROSSSLOT`` only once the families are in their buckets. These
tests run the bindings step by step (the path a Cluster takes) on a real redis-server, record
the keys every script call is given, and hold each call to one bucketed family (the account's,
the identity's or a counter's) plus the tenant's own keys (``store.key_families``): a right
answer plain and establishing a claim over a squatter, a start in ``bind`` mode, a guardian's
consent, the repairer finishing a binding killed at each boundary, and bindings that meet a
move of their identity (in flight, and done before them).

Two accounts are two buckets: a call given keys of a second account (``key_families.accounts_named``)
crosses as two families do. A guardian's consent names the minor's account alone: the guardian's
is read in a round trip of its own before the step (§3.1). Keys a script derives from another
instead of being given them are not seen here (docs/ARCHITECTURE.md, §6, lists them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from idverify.domain.birth_dates import AgeSource
from idverify.domain.subjects import AgeBand
from idverify.flows.bucket_repair import BucketRepairer
from idverify.flows.verification.port import ChallengeAnswer, GuardianGrant, NewVerification
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import CodeSendChains
from idverify.store.connection import RedisClient
from idverify.store.key_families import accounts_named, crossed_families
from idverify.store.keys import TenantKeys
from idverify.store.scripts import ChainStep, Scripts
from idverify.store.verifications import RedisVerificationStore
from idverify.testing import RedisProcess
from idverify.testing.memory_code_sends import send_limits
from tests import bind_crash
from tests.bind_crash import (
    DIGEST,
    ESTABLISHING,
    OWNER,
    PLAIN,
    REQUEST_JSON,
    SQUATTER,
    assert_bound_once,
    challenge,
    killed_after,
    store_of,
)
from tests.cancel_crash import LaterRepairs, pseudonym
from tests.move_crash import MEMBERS, NEW, OLD, bound_identity, move
from tests.unit.store.test_binding_steps import BOUNDARIES
from tests.unit.store.test_identity_accounts import verification
from tests.unit.store.test_identity_move_steps import _bound_on_the_new_ref, _challenged, _Pointing, _stranger


class Recording(Scripts):
    """Scripts that note the keys of every call (a chain's as one call), then run it on the server."""

    def __init__(self, redis: RedisClient) -> None:
        super().__init__(redis)
        self.calls: list[tuple[str, list[str]]] = []

    async def run(self, name: str, keys: Sequence[str], args: Sequence[str | int | bytes]) -> Any:
        self.calls.append((name, list(keys)))
        return await super().run(name, keys, args)

    async def run_chain(self, steps: Sequence[ChainStep]) -> list[Any]:
        self.calls.append(
            ("+".join(step.name for step in steps), [key for step in steps for key in step.keys])
        )
        return await super().run_chain(steps)

    def assert_one_bucket_each(self, *expected: str) -> None:
        """Every call named keys of one planned slot (of one account); the scripts ``expected`` ran."""
        crossing = [
            (name, sorted(f.value for f in crossed), sorted(accounts_named(keys)))
            for name, keys in self.calls
            if (crossed := crossed_families(keys))
        ]
        assert crossing == [], crossing
        called = {name for name, _ in self.calls}
        assert set(expected) <= called, called


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


def _tenant(label: str) -> str:
    return f"fam{pseudonym(label)[:8]}"


def _stepwise(
    redis: RedisClient, *, runner: type[StepRunner] = StepRunner, pointing: _Pointing | None = None
) -> tuple[Recording, RedisVerificationStore]:
    """A store whose steps run one by one on ``runner``, its script calls recorded."""
    recording = Recording(redis)
    sends = CodeSendChains(recording, send_limits())
    steps = runner(recording, step_by_step=True)
    return recording, RedisVerificationStore(redis, recording, sends, steps=steps, pointing=pointing)


STEPS = ("bind_place", "bind_commit", "bind_confirm")


class TestEachCallIsOneBucket:
    @pytest.mark.parametrize("establishing", [False, True])
    async def test_a_right_answer(self, redis: RedisClient, establishing: bool) -> None:
        tenant = _tenant(f"answer-{establishing}")
        if establishing:
            await bind_crash.bind(redis, tenant, pseudonym(f"{tenant}-squatter"), SQUATTER)
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER, establishes=establishing)
        recording, store = _stepwise(redis)
        written = await bind_crash.answer(store, tenant, vid)
        assert written.record.status is Status.VERIFIED, written.record
        await assert_bound_once(
            redis, tenant, vid, target, OWNER["name_tag"], types=ESTABLISHING if establishing else PLAIN
        )
        superseding = ("bind_supersede",) if establishing else ()
        recording.assert_one_bucket_each("bind_judge", *STEPS, *superseding)

    async def test_a_refused_answer_and_its_repair(self, redis: RedisClient, own_redis: RedisProcess) -> None:
        """A place the limit refused: its count names the counter's family alone, live and repaired."""
        tenant = _tenant("refused")
        await bind_crash.bind(redis, tenant, pseudonym(f"{tenant}-owner"), OWNER, limit=1)
        vid = await challenge(redis, tenant, pseudonym(f"{tenant}-a"), OWNER)
        recording, store = _stepwise(redis)
        written = await bind_crash.answer(store, tenant, vid, limit=1)
        assert written.record.reason == "BINDING_LIMIT_REACHED", written.record
        recording.assert_one_bucket_each("bind_judge", "bind_place", "bind_count", *STEPS[1:])
        other = await challenge(redis, tenant, pseudonym(f"{tenant}-b"), OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, other, 2, limit=1)  # judge, place
        recording = Recording(redis)
        assert await BucketRepairer(LaterRepairs(redis, recording)).repair(tenant) >= 1
        recording.assert_one_bucket_each("intent_take", "bind_place", "bind_count", "bind_commit")

    async def test_a_start_in_bind_mode(self, redis: RedisClient) -> None:
        tenant = _tenant("start")
        target = pseudonym(f"{tenant}-a")
        recording, store = _stepwise(redis)
        await bind_crash.bind(redis, tenant, target, OWNER, store=store)
        recording.assert_one_bucket_each("start", *STEPS)

    async def test_a_guardians_consent(self, redis: RedisClient) -> None:
        tenant = _tenant("guardian")
        minor, guardian = pseudonym(f"{tenant}-minor"), pseudonym(f"{tenant}-guardian")
        keys = TenantKeys(tenant)
        adult = {
            "identity": "ref-guardian",
            "age_source": "document",
            "age_band": "adult",
            "birth_sealed": "s",
        }
        await redis.hset(keys.account(guardian), mapping=adult)
        record = replace(
            verification(minor, OWNER),
            status=Status.NEEDS_GUARDIAN_CONSENT,
            next_step="guardian_consent",
            minor=True,
            age_band=AgeBand.FROM_14_TO_17,
            age_source=AgeSource.DOCUMENT,
        )
        vid = pseudonym(f"{tenant}-minor-vf")
        start = NewVerification(tenant, f"req-{vid}", vid, minor, record, 60_000, 3, REQUEST_JSON, "guardian")
        assert (await store_of(redis).commit(start, _unmoved)).record.status is Status.NEEDS_GUARDIAN_CONSENT
        recording, store = _stepwise(redis)
        grant = GuardianGrant(tenant, vid, minor, guardian, 3, REQUEST_JSON, "text-1", "parent", adult, "")
        granted = await store.grant_guardian(grant, _as_read(record))
        assert granted.record.status is Status.VERIFIED, granted
        recording.assert_one_bucket_each("identity_rests", "guardian", *STEPS)
        guardian_keys = {keys.account(guardian), keys.consent(guardian), keys.account_verifications(guardian)}
        assert not [name for name, named in recording.calls if guardian_keys & set(named)], recording.calls

    @pytest.mark.timeout(120)
    async def test_the_repairer_at_each_boundary(self, redis: RedisClient, own_redis: RedisProcess) -> None:
        """A worker killed after each step; the repair's calls (the take's among them) are each one bucket."""
        for establishing, nth in BOUNDARIES:
            tenant = _tenant(f"repair-{establishing}-{nth}")
            if establishing:
                await bind_crash.bind(redis, tenant, pseudonym(f"{tenant}-squatter"), SQUATTER)
            target = pseudonym(f"{tenant}-a")
            vid = await challenge(redis, tenant, target, OWNER, establishes=establishing)
            await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, nth)
            recording = Recording(redis)
            assert await BucketRepairer(LaterRepairs(redis, recording)).repair(tenant) >= 1
            await assert_bound_once(
                redis, tenant, vid, target, OWNER["name_tag"], types=ESTABLISHING if establishing else PLAIN
            )
            recording.assert_one_bucket_each("intent_take", "bind_confirm")

    @pytest.mark.timeout(60)
    async def test_an_answer_meeting_a_move_in_flight(self, redis: RedisClient) -> None:
        """Judged, then the identity's move begins: the binding waits for it and follows it."""
        tenant = _tenant("move-in-flight")
        accounts = await self._moving_identity(redis, tenant)
        stranger = pseudonym(f"{tenant}-stranger")
        await _challenged(redis, tenant, stranger)
        scripts = Scripts(redis)
        moved_out, release = asyncio.Event(), asyncio.Event()
        moving: list[asyncio.Task[str]] = []

        class MovePaused(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                del sequence
                if done == 1:
                    moved_out.set()
                    await release.wait()

        class JudgedThenMoved(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                del sequence
                if done == 1:
                    moving.append(
                        asyncio.create_task(move(redis, tenant, MovePaused(scripts, step_by_step=True)))
                    )
                    await moved_out.wait()
                    asyncio.get_running_loop().call_later(0.2, release.set)

        recording, store = _stepwise(redis, runner=JudgedThenMoved, pointing=_Pointing(redis))
        written = await bind_crash.answer(store, tenant, "vf-answer", limit=MEMBERS + 1)
        assert await moving[0] == "OK"
        assert written.record.status is Status.VERIFIED, written.record
        await _bound_on_the_new_ref(redis, tenant, [*accounts, stranger])
        recording.assert_one_bucket_each("bind_judge", "bind_repoint", *STEPS)

    @pytest.mark.parametrize("script", ["submit", "start"])
    async def test_a_binding_after_its_identity_moved(self, redis: RedisClient, script: str) -> None:
        """The identity moved before the call, which read it at its old ref: followed to the new one."""
        tenant = _tenant(f"moved-{script}")
        accounts = await self._moving_identity(redis, tenant)
        stranger = pseudonym(f"{tenant}-stranger")
        if script == "submit":
            await _challenged(redis, tenant, stranger)
        assert await move(redis, tenant, StepRunner(Scripts(redis))) == "OK"
        recording, store = _stepwise(redis, pointing=_Pointing(redis))
        pointed: list[bool] = []

        async def point(moved: bool) -> VerificationRecord:
            pointed.append(moved)
            return _stranger(stranger, NEW if moved else OLD)

        if script == "submit":
            right = ChallengeAnswer(tenant, "vf-answer", DIGEST, MEMBERS + 1, 60_000, REQUEST_JSON)
            written = await store.submit(right, point)
        else:
            record = _stranger(stranger)
            start = NewVerification(
                tenant, "req-moved", "vf-moved", stranger, record, 60_000, MEMBERS + 1, REQUEST_JSON, "bind"
            )
            written = await store.commit(start, point)
        assert written.record.status is Status.VERIFIED, written.record
        await _bound_on_the_new_ref(redis, tenant, [*accounts, stranger])
        recording.assert_one_bucket_each(*STEPS)

    @staticmethod
    async def _moving_identity(redis: RedisClient, tenant: str) -> list[str]:
        accounts = [pseudonym(f"{tenant}-{n}") for n in range(MEMBERS)]
        await bound_identity(redis, tenant, accounts)
        return accounts


async def _unmoved(moved: bool) -> VerificationRecord:
    raise AssertionError(f"no identity moves here ({moved=})")


def _as_read(record: VerificationRecord) -> Any:
    async def point(moved: bool) -> VerificationRecord:
        assert not moved
        return record

    return point

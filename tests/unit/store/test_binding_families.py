"""Each step of a binding touches keys of one planned bucket (docs/ARCHITECTURE.md, "Buckets: the plan").

Every key is still in ``{t:T}`` today, so a step that reads a second family runs anyway, on a
Cluster too, and would fail with ``CROSSSLOT`` only once the families are in their buckets. These
tests run the bindings step by step (the path a Cluster takes) on a real redis-server: a right
answer plain and establishing a claim over a squatter, a refusal at the limit, a start in
``bind`` mode, an organization's claim, a binding beside a member 0.1.0 bound, a guardian's
consent, the repairer finishing a binding killed at each boundary, and bindings that meet a move
of their identity (in flight, and done before them). Each runs in a tenant this release made with
no older server reporting in, its log born walked (``tests.tenant_births``); a right answer, a start
in ``bind`` mode and a guardian's consent run too in a tenant with older servers' data, its log
unmarked, where they still read the legacy map (and the binding beside a member 0.1.0 bound, in such
a tenant alone).

Each script call is held to two checks (``store.key_families``): the keys it is given are of one
bucketed family (the account's, the identity's or a counter's) and of one account
(``accounts_named``) plus the tenant's keys; and every key it touches, given or built inside Lua
(``tests.touched_keys`` sees them with MONITOR), is in one bucket (one family, one account or
identity or counter) beside its audit entry's keys alone. The crossings still there are
:data:`KNOWN_CROSSINGS`, each expected by name by the tests that meet it, so that the list can
only shrink (docs/ARCHITECTURE.md, §6). A guardian's consent names and touches the minor's
account alone: the guardian's is read in a round trip of its own before the step (§3.1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any

import pytest

from idverify.domain.birth_dates import AgeSource
from idverify.domain.subjects import AgeBand, SubjectKind
from idverify.flows.bucket_repair import BucketRepairer
from idverify.flows.verification.port import ChallengeAnswer, GuardianGrant, NewVerification
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import CodeSendChains
from idverify.store.connection import RedisClient
from idverify.store.erasures import RedisErasureStore
from idverify.store.key_families import Crossing, accounts_named, bucket_crossings, crossed_families
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
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
from tests.cancel_crash import NAME_HASH, LaterRepairs, cancellation, pseudonym
from tests.move_crash import MEMBERS, NEW, OLD, bound_identity, move
from tests.tenant_births import born_walked, made_with_legacy_data
from tests.touched_keys import Call, RecordingScripts, ScriptMonitor
from tests.unit.store.test_binding_steps import BOUNDARIES
from tests.unit.store.test_identity_accounts import REF, verification
from tests.unit.store.test_identity_move_steps import _bound_on_the_new_ref, _challenged, _Pointing, _stranger


@dataclass(frozen=True, slots=True)
class KnownCrossing:
    """A crossing of a bucket still there, allowed by name until the change that removes it lands.

    ``keys`` is a glob over a key's name after its hash tag, ``family`` one over the crossing's
    family (``*`` for a call given keys of every family in an order it does not choose, so that
    which of them its bucket is, and so which cross, varies); ``why`` says why it is still there
    and which item of docs/ARCHITECTURE.md ("Buckets: the plan") removes it.
    """

    script: str
    family: str
    keys: str
    why: str

    def covers(self, script: str, crossing: Crossing) -> bool:
        """Whether this entry allows ``crossing`` in a call of ``script``."""
        name = crossing.key.partition("}:")[2]
        return (
            script == self.script
            and fnmatchcase(crossing.family, self.family)
            and fnmatchcase(name, self.keys)
        )


PLACE_READS_UNTAGGED_MEMBER = KnownCrossing(
    "bind_place",
    "A",
    "acct:*",
    "identity_members() reads the name_tag of a member 0.1.0 bound, which has no m: field yet, "
    "from its account, once (§1's A'), in a tenant `idverify migrate legacy` has not walked: the "
    "walk writes every such field (test_legacy_moves: a walked tenant's binding crosses nothing)",
)
_EVENT_MAP_GOES = (
    "only in a tenant whose log was created unmarked (by 0.1.0, or beside a server of an older "
    "release) that `idverify migrate legacy` has not walked: the walk moves the map into the "
    "accounts, deletes it and marks the log's head, after which no step reads it (test_legacy_moves); "
    "a log created with no older server reporting in is born marked (test_born_walked)"
)
LEGACY_EVENT_MAP = {
    script: KnownCrossing(
        script,
        "T",
        "events:acct",
        "audit() falls back to older servers' map for an entry's outbox record, and empties it as "
        f"accounts are touched; {_EVENT_MAP_GOES}",
    )
    for script in ("start", "guardian", "bind_supersede", "bind_commit", "cancel_account")
} | {
    "erase_account": KnownCrossing(
        "erase_account",
        "T",
        "events:acct",
        f"an account's erasure reads and deletes its field of the map itself; {_EVENT_MAP_GOES}",
    )
}
KNOWN_CROSSINGS = (
    PLACE_READS_UNTAGGED_MEMBER,
    *LEGACY_EVENT_MAP.values(),
)
"""The crossings still there, each allowed where a test expects it: the list can only shrink."""


class Recording(RecordingScripts):
    """Script calls recorded with the keys each was given and those it touched (``tests.touched_keys``)."""

    def assert_one_bucket_each(self, *expected: str, known: Iterable[KnownCrossing] = ()) -> None:
        """Each call in one planned bucket, but for the crossings ``known`` (each of them seen).

        Each call was given keys of one planned family (``crossed_families``), and touched,
        given or derived, keys of one bucket and its entry's (``bucket_crossings``), but for
        crossings of :data:`KNOWN_CROSSINGS`: exactly those ``known``. The scripts ``expected``
        were among those called.
        """
        given = [
            (call.name, sorted(f.value for f in crossed), sorted(accounts_named(call.given)))
            for call in self.calls
            if (crossed := crossed_families(call.given))
        ]
        assert given == [], given
        assert_only_known_crossings(self.calls, expected, KNOWN_CROSSINGS, "KNOWN_CROSSINGS", known=known)


def assert_only_known_crossings(
    calls: Sequence[Call],
    expected: Iterable[str],
    allowed: Iterable[KnownCrossing],
    listing: str,
    *,
    known: Iterable[KnownCrossing],
) -> None:
    """Every key each call touched in its bucket (``bucket_crossings``), but for the crossings ``known``.

    ``allowed`` is the allow-list (named ``listing`` in a failure) whose entries may cover a
    crossing; exactly those ``known`` must have covered one, so that an entry whose crossing is
    gone fails as a new crossing does. The scripts ``expected`` were among those called.
    """
    unknown: list[tuple[str, str, str]] = []
    seen: set[KnownCrossing] = set()
    for call in calls:
        for crossing in bucket_crossings(call.given, call.touched):
            allowing = {entry for entry in allowed if entry.covers(call.name, crossing)}
            seen |= allowing
            if not allowing:
                unknown.append((call.name, crossing.family, crossing.key))
    assert unknown == [], f"crossings no entry of {listing} allows: {unknown}"
    gone, unexpected = set(known) - seen, seen - set(known)
    assert not gone, f"known crossings that no longer happen (delete their entries): {gone}"
    assert not unexpected, f"known crossings this test does not expect: {unexpected}"
    called = {call.name for call in calls}
    assert set(expected) <= called, called


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


def _tenant(label: str) -> str:
    return f"fam{pseudonym(label)[:8]}"


BORN, LEGACY = "born walked", "with legacy data"
"""The tenants a sequence runs in: this release's (no older server reporting in), or an older server's."""


async def _made(redis: RedisClient, label: str, made: str = BORN) -> str:
    """A tenant named after ``label``, its log born walked, or unmarked beside an older build's map."""
    tenant = _tenant(f"{label}-{made}")
    await (born_walked if made == BORN else made_with_legacy_data)(redis, tenant)
    return tenant


def _stepwise(
    redis: RedisClient,
    monitor: ScriptMonitor,
    *,
    runner: type[StepRunner] = StepRunner,
    pointing: _Pointing | None = None,
) -> tuple[Recording, RedisVerificationStore]:
    """A store whose steps run one by one on ``runner``, its script calls recorded."""
    recording = Recording(redis, monitor)
    sends = CodeSendChains(recording, send_limits())
    steps = runner(recording, step_by_step=True)
    return recording, RedisVerificationStore(redis, recording, sends, steps=steps, pointing=pointing)


STEPS = ("bind_place", "bind_commit", "bind_confirm")


class TestEachCallIsOneBucket:
    @pytest.mark.parametrize("made", [BORN, LEGACY])
    @pytest.mark.parametrize("establishing", [False, True])
    async def test_a_right_answer(
        self, redis: RedisClient, script_monitor: ScriptMonitor, establishing: bool, made: str
    ) -> None:
        tenant = await _made(redis, f"answer-{establishing}", made)
        if establishing:
            await bind_crash.bind(redis, tenant, pseudonym(f"{tenant}-squatter"), SQUATTER)
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER, establishes=establishing)
        recording, store = _stepwise(redis, script_monitor)
        written = await bind_crash.answer(store, tenant, vid)
        assert written.record.status is Status.VERIFIED, written.record
        await assert_bound_once(
            redis, tenant, vid, target, OWNER["name_tag"], types=ESTABLISHING if establishing else PLAIN
        )
        superseding = ("bind_supersede",) if establishing else ()
        known = _event_map_reads("bind_commit", *superseding) if made == LEGACY else ()
        recording.assert_one_bucket_each("bind_judge", *STEPS, *superseding, known=known)

    async def test_a_refused_answer_and_its_repair(
        self, redis: RedisClient, script_monitor: ScriptMonitor, own_redis: RedisProcess
    ) -> None:
        """A place the limit refused: its count touches the counter's bucket alone, live and repaired."""
        tenant = await _made(redis, "refused")
        await bind_crash.bind(redis, tenant, pseudonym(f"{tenant}-owner"), OWNER, limit=1)
        vid = await challenge(redis, tenant, pseudonym(f"{tenant}-a"), OWNER)
        recording, store = _stepwise(redis, script_monitor)
        written = await bind_crash.answer(store, tenant, vid, limit=1)
        assert written.record.reason == "BINDING_LIMIT_REACHED", written.record
        recording.assert_one_bucket_each("bind_judge", "bind_place", "bind_count", *STEPS[1:])
        other = await challenge(redis, tenant, pseudonym(f"{tenant}-b"), OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, other, 2, limit=1)  # judge, place
        recording = Recording(redis, script_monitor)
        assert await BucketRepairer(LaterRepairs(redis, recording)).repair(tenant) >= 1
        recording.assert_one_bucket_each("intent_take", "bind_place", "bind_count", "bind_commit")

    async def test_a_place_beside_pending_members(
        self, redis: RedisClient, script_monitor: ScriptMonitor, own_redis: RedisProcess
    ) -> None:
        """The place reads the pending members' intents (one real, one planted without): the identity's."""
        tenant = await _made(redis, "pending-members")
        keys = TenantKeys(tenant)
        pending = await challenge(redis, tenant, pseudonym(f"{tenant}-pending"), OWNER)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, pending, 2)  # judge, place
        planted = pseudonym(f"{tenant}-planted")
        await redis.sadd(keys.identity_accounts(REF), planted)
        no_such_place = f"p:{OWNER['name_tag']}:{pseudonym('no-such-vf')}"
        await redis.hset(keys.identity(REF), f"m:{planted}", no_such_place)
        vid = await challenge(redis, tenant, pseudonym(f"{tenant}-a"), OWNER)
        recording, store = _stepwise(redis, script_monitor)
        assert (await bind_crash.answer(store, tenant, vid)).record.status is Status.VERIFIED
        assert not await redis.sismember(keys.identity_accounts(REF), planted)
        recording.assert_one_bucket_each("bind_judge", *STEPS)

    @pytest.mark.parametrize("made", [BORN, LEGACY])
    async def test_a_start_in_bind_mode(
        self, redis: RedisClient, script_monitor: ScriptMonitor, made: str
    ) -> None:
        tenant = await _made(redis, "start", made)
        target = pseudonym(f"{tenant}-a")
        recording, store = _stepwise(redis, script_monitor)
        await bind_crash.bind(redis, tenant, target, OWNER, store=store)
        known = _event_map_reads("start", "bind_commit") if made == LEGACY else ()
        recording.assert_one_bucket_each("start", *STEPS, known=known)

    async def test_an_organizations_claim(self, redis: RedisClient, script_monitor: ScriptMonitor) -> None:
        """A start in ``bind`` mode establishing an organization's claim: its names' step indexes them (T)."""
        tenant = await _made(redis, "organization")
        target = pseudonym(f"{tenant}-a")
        record = replace(
            verification(target, OWNER, establishes=True), kind=SubjectKind.ORGANIZATION, org_names=NAME_HASH
        )
        vid = pseudonym(f"{tenant}-org-vf")
        start = NewVerification(tenant, f"req-{vid}", vid, target, record, 60_000, 3, REQUEST_JSON, "bind")
        recording, store = _stepwise(redis, script_monitor)
        assert (await store.commit(start, _unmoved)).record.status is Status.VERIFIED
        keys = TenantKeys(tenant)
        assert await redis.hget(keys.organization_names(), NAME_HASH) == OWNER["name_tag"].encode()
        recording.assert_one_bucket_each("start", "bind_names", *STEPS)

    async def test_an_organizations_names_repaired_after_a_cancellation(
        self, redis: RedisClient, script_monitor: ScriptMonitor, own_redis: RedisProcess
    ) -> None:
        """Killed after the commit, the account then cancelled: the repair's names and their drop are T's.

        The confirm finds the record without members and answers LAST: the names go again
        (``drop_names``), each call in one bucket.
        """
        tenant = _tenant("names-repaired")
        target = pseudonym(f"{tenant}-a")
        names = ",".join(bind_crash.ORG_NAMES)
        vid = await challenge(redis, tenant, target, OWNER, establishes=True, org_names=names)
        await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, 3)  # judge, place, commit
        await RedisErasureStore(redis, Scripts(redis)).cancel(tenant, cancellation(target, "cancel-1"))
        recording = Recording(redis, script_monitor)
        assert await BucketRepairer(LaterRepairs(redis, recording)).repair(tenant) >= 1
        assert not await redis.exists(TenantKeys(tenant).organization_names())
        recording.assert_one_bucket_each(
            "intent_take", "bind_outcome", "bind_names", "bind_confirm", "drop_names", "intent_done"
        )

    async def test_beside_a_member_bound_by_0_1_0(
        self, redis: RedisClient, script_monitor: ScriptMonitor
    ) -> None:
        """A member 0.1.0 bound has no ``m:`` field: the place reads its tag from its account, once.

        0.1.0 made the tenant: its log unmarked, the walk not run.
        """
        tenant = _tenant("legacy-member")
        keys = TenantKeys(tenant)
        legacy = pseudonym(f"{tenant}-legacy")
        await bind_crash.bind(redis, tenant, legacy, OWNER)
        assert await redis.hdel(keys.identity(REF), f"m:{legacy}") == 1
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER)
        recording, store = _stepwise(redis, script_monitor)
        assert (await bind_crash.answer(store, tenant, vid)).record.status is Status.VERIFIED
        assert await redis.hget(keys.identity(REF), f"m:{legacy}") == f"b:{OWNER['name_tag']}".encode()
        recording.assert_one_bucket_each(
            "bind_judge", *STEPS, known=(PLACE_READS_UNTAGGED_MEMBER, *_event_map_reads("bind_commit"))
        )

    @pytest.mark.parametrize("made", [BORN, LEGACY])
    async def test_a_guardians_consent(
        self, redis: RedisClient, script_monitor: ScriptMonitor, made: str
    ) -> None:
        tenant = await _made(redis, "guardian", made)
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
        recording, store = _stepwise(redis, script_monitor)
        grant = GuardianGrant(tenant, vid, minor, guardian, 3, REQUEST_JSON, "text-1", "parent", adult, "")
        granted = await store.grant_guardian(grant, _as_read(record))
        assert granted.record.status is Status.VERIFIED, granted
        known = _event_map_reads("guardian", "bind_commit") if made == LEGACY else ()
        recording.assert_one_bucket_each("identity_rests", "guardian", *STEPS, known=known)
        guardian_keys = {keys.account(guardian), keys.consent(guardian), keys.account_verifications(guardian)}
        assert not [call.name for call in recording.calls if guardian_keys & set(call.touched)], (
            recording.calls
        )

    @pytest.mark.timeout(120)
    async def test_the_repairer_at_each_boundary(
        self, redis: RedisClient, script_monitor: ScriptMonitor, own_redis: RedisProcess
    ) -> None:
        """A worker killed after each step; the repair's calls (the take's among them) are each one bucket."""
        for establishing, nth in BOUNDARIES:
            tenant = await _made(redis, f"repair-{establishing}-{nth}")
            if establishing:
                await bind_crash.bind(redis, tenant, pseudonym(f"{tenant}-squatter"), SQUATTER)
            target = pseudonym(f"{tenant}-a")
            vid = await challenge(redis, tenant, target, OWNER, establishes=establishing)
            await asyncio.to_thread(killed_after, own_redis.url, tenant, vid, nth)
            recording = Recording(redis, script_monitor)
            assert await BucketRepairer(LaterRepairs(redis, recording)).repair(tenant) >= 1
            await assert_bound_once(
                redis, tenant, vid, target, OWNER["name_tag"], types=ESTABLISHING if establishing else PLAIN
            )
            recording.assert_one_bucket_each("intent_take", "bind_confirm")

    @pytest.mark.timeout(60)
    async def test_an_answer_meeting_a_move_in_flight(
        self, redis: RedisClient, script_monitor: ScriptMonitor
    ) -> None:
        """Judged, then the identity's move begins: the binding waits for it and follows it."""
        tenant = await _made(redis, "move-in-flight")
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

        recording, store = _stepwise(redis, script_monitor, runner=JudgedThenMoved, pointing=_Pointing(redis))
        written = await bind_crash.answer(store, tenant, "vf-answer", limit=MEMBERS + 1)
        assert await moving[0] == "OK"
        assert written.record.status is Status.VERIFIED, written.record
        await _bound_on_the_new_ref(redis, tenant, [*accounts, stranger])
        recording.assert_one_bucket_each("bind_judge", "bind_repoint", *STEPS)

    @pytest.mark.parametrize("script", ["submit", "start"])
    async def test_a_binding_after_its_identity_moved(
        self, redis: RedisClient, script_monitor: ScriptMonitor, script: str
    ) -> None:
        """The identity moved before the call, which read it at its old ref: followed to the new one."""
        tenant = await _made(redis, f"moved-{script}")
        accounts = await self._moving_identity(redis, tenant)
        stranger = pseudonym(f"{tenant}-stranger")
        if script == "submit":
            await _challenged(redis, tenant, stranger)
        assert await move(redis, tenant, StepRunner(Scripts(redis))) == "OK"
        recording, store = _stepwise(redis, script_monitor, pointing=_Pointing(redis))
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


def _event_map_reads(*scripts: str) -> tuple[KnownCrossing, ...]:
    """The reads of the legacy ``events:acct`` map by ``scripts``' entries."""
    return tuple(LEGACY_EVENT_MAP[script] for script in scripts)


async def _unmoved(moved: bool) -> VerificationRecord:
    raise AssertionError(f"no identity moves here ({moved=})")


def _as_read(record: VerificationRecord) -> Any:
    async def point(moved: bool) -> VerificationRecord:
        assert not moved
        return record

    return point

"""``idverify migrate legacy``'s walk (``store.legacy_moves``) on a real redis-server.

A tenant holds what older servers left: members 0.1.0 bound (in ``idacc``, no ``m:`` field) and
account ids in the legacy ``events:acct`` map, as builds of main before the ids moved into the
accounts kept them (with a field of an account erased since). After the walk, the family tests'
binding beside such a member and the erasure of such an account touch one bucket and their entry's
keys, nothing of :data:`KNOWN_CROSSINGS` (before it, both cross: the same tests expect the entries);
a 0.1.0 member still counts against the limit; bindings and cancellations racing the walk lose no
member and pass no limit; a second walk writes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from idverify.domain.subjects import SubjectKind
from idverify.flows.erasure import EraseOutcome, ErasureItem, ErasureKind
from idverify.flows.verification.port import NewVerification
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text
from idverify.store.erasures import RedisErasureStore
from idverify.store.keys import TenantKeys
from idverify.store.legacy_moves import LegacyCounts, RedisLegacyMove
from idverify.store.scripts import Scripts
from tests import bind_crash
from tests.bind_crash import OWNER, challenge, store_of
from tests.cancel_crash import REF as CANCEL_REF
from tests.cancel_crash import bind_accounts, cancellation, pseudonym
from tests.touched_keys import ScriptMonitor
from tests.unit.store.test_binding_families import (
    LEGACY_EVENT_MAP,
    PLACE_READS_UNTAGGED_MEMBER,
    STEPS,
    Recording,
    _stepwise,
)
from tests.unit.store.test_identity_accounts import REF, verification

LEGACY_ID = "sealed-by-an-older-build"


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


async def as_0_1_0_bound(redis: RedisClient, tenant: str, ref: str, account_ps: str) -> None:
    """The member as 0.1.0 left it (no ``m:`` field), its event id where older builds kept it."""
    keys = TenantKeys(tenant)
    assert await redis.hdel(keys.identity(ref), f"m:{account_ps}") == 1
    audit_ps = as_text(await redis.hget(keys.account(account_ps), "audit"))
    await redis.hdel(keys.account(account_ps), "event_account")
    await redis.hset(keys.events_accounts(), audit_ps, f"{LEGACY_ID}-{account_ps}")


async def moved(redis: RedisClient, tenant: str) -> LegacyCounts:
    return await RedisLegacyMove(redis, Scripts(redis)).run(tenant, lambda _: None)


class TestAMigratedTenantCrossesNothing:
    """The family tests' sequences over legacy data, after the walk: one bucket each, no known crossing."""

    @pytest.mark.parametrize("migrated", [False, True])
    async def test_a_binding_beside_a_member_0_1_0_bound(
        self, redis: RedisClient, script_monitor: ScriptMonitor, migrated: bool
    ) -> None:
        tenant = f"lgb{pseudonym(f'bind-{migrated}')[:8]}"
        keys = TenantKeys(tenant)
        legacy = pseudonym(f"{tenant}-legacy")
        await bind_crash.bind(redis, tenant, legacy, OWNER)
        await as_0_1_0_bound(redis, tenant, REF, legacy)
        # An erased account's field, left by an older build: deleted with the map.
        await redis.hset(keys.events_accounts(), "audit-erased-long-ago", "sealed")
        if migrated:
            counts = await moved(redis, tenant)
            assert (counts.fields_written, counts.ids_moved, counts.ids_dropped) == (1, 1, 1), counts
            assert await redis.hget(keys.account(legacy), "event_account") == f"{LEGACY_ID}-{legacy}".encode()
            assert not await redis.exists(keys.events_accounts())
        target = pseudonym(f"{tenant}-a")
        vid = await challenge(redis, tenant, target, OWNER)
        recording, store = _stepwise(redis, script_monitor)
        assert (await bind_crash.answer(store, tenant, vid)).record.status is Status.VERIFIED
        assert await redis.hget(keys.identity(REF), f"m:{legacy}") == f"b:{OWNER['name_tag']}".encode()
        known = () if migrated else (PLACE_READS_UNTAGGED_MEMBER, LEGACY_EVENT_MAP["bind_commit"])
        recording.assert_one_bucket_each("bind_judge", *STEPS, known=known)

    @pytest.mark.parametrize("migrated", [False, True])
    async def test_an_erasure_of_an_account_an_older_build_bound(
        self, redis: RedisClient, script_monitor: ScriptMonitor, migrated: bool
    ) -> None:
        """Its cancellation and erasure; the erasure's event still names the account, by the moved id."""
        tenant = f"lge{pseudonym(f'erase-{migrated}')[:8]}"
        keys = TenantKeys(tenant)
        account = pseudonym(f"{tenant}-a")
        await bind_accounts(redis, tenant, [account])
        await as_0_1_0_bound(redis, tenant, CANCEL_REF, account)
        if migrated:
            assert (await moved(redis, tenant)).ids_moved == 1
        recording = Recording(redis, script_monitor)
        store = RedisErasureStore(redis, recording, steps=StepRunner(recording, step_by_step=True))
        await store.cancel(tenant, cancellation(account, "cancel", due_ms=1))
        request = cancellation(account, "erase").request_json
        erased = await store.erase(tenant, ErasureItem(ErasureKind.ACCOUNT, account), request)
        assert erased is EraseOutcome.ERASED
        last = (await redis.xrevrange(keys.events_outbox(), count=1))[0][1]
        assert last[b"a"] == f"{LEGACY_ID}-{account}".encode()
        assert not await redis.exists(keys.events_accounts())
        known = () if migrated else (LEGACY_EVENT_MAP["cancel_account"], LEGACY_EVENT_MAP["erase_account"])
        recording.assert_one_bucket_each("cancel_account", "cancel_identity", "erase_account", known=known)


async def test_a_member_0_1_0_bound_still_counts_and_a_second_walk_writes_nothing(redis: RedisClient) -> None:
    """Limit 2, two 0.1.0 members: a third binding is refused after the walk as before it."""
    tenant = "lglimit"
    keys = TenantKeys(tenant)
    members = [pseudonym(f"{tenant}-{n}") for n in range(2)]
    for member in members:
        await bind_crash.bind(redis, tenant, member, OWNER, limit=2)
    for member in members:
        await as_0_1_0_bound(redis, tenant, REF, member)
    before = {member: await redis.hgetall(keys.account(member)) for member in members}
    first = await moved(redis, tenant)
    assert (first.records, first.fields_written, first.ids_moved, first.resumed) == (1, 2, 2, False)
    record = await redis.hgetall(keys.identity(REF))
    assert {k: record[k] for k in record if k.startswith(b"m:")} == {
        f"m:{m}".encode(): f"b:{OWNER['name_tag']}".encode() for m in members
    }
    third = pseudonym(f"{tenant}-third")
    vid = await challenge(redis, tenant, third, OWNER)
    written = await bind_crash.answer(store_of(redis), tenant, vid, limit=2)
    assert written.record.status is Status.REJECTED, written.record
    assert {as_text(m) for m in await redis.smembers(keys.identity_accounts(REF))} == set(members)
    for member in members:  # bindings unchanged, the id moved in
        after = await redis.hgetall(keys.account(member))
        assert after == before[member] | {b"event_account": f"{LEGACY_ID}-{member}".encode()}

    second = await moved(redis, tenant)
    assert not second.changed, second
    assert (second.records, second.in_motion) == (1, 0)
    check = await RedisLegacyMove(redis, Scripts(redis)).check(tenant, lambda _: None)
    assert check.ok, check
    assert (check.records, check.members, check.members_without_field) == (1, 2, 0)


async def test_a_field_written_after_the_walk_is_dropped_by_a_second_walk(redis: RedisClient) -> None:
    """A build of main still serving (schema 2: the walk cannot tell) writes the map after the walk.

    The marked tenant's erasure no longer reads or empties the map, so the erased account's sealed
    id outlives its erasure there: ``--verify`` says so, and a second walk drops it with the map
    (docs/ARCHITECTURE.md, "Buckets: the plan" §6, the remedy it names).
    """
    tenant = "lgafter"
    keys = TenantKeys(tenant)
    account = pseudonym(f"{tenant}-a")
    await bind_accounts(redis, tenant, [account])
    walk = RedisLegacyMove(redis, Scripts(redis))
    await walk.run(tenant, lambda _: None)
    audit_ps = as_text(await redis.hget(keys.account(account), "audit"))
    await redis.hset(keys.events_accounts(), audit_ps, LEGACY_ID)  # the older build verifying it again
    erasures = RedisErasureStore(redis, Scripts(redis))
    await erasures.cancel(tenant, cancellation(account, "cancel", due_ms=1))
    request = cancellation(account, "erase").request_json
    assert (
        await erasures.erase(tenant, ErasureItem(ErasureKind.ACCOUNT, account), request)
        is EraseOutcome.ERASED
    )
    assert await redis.hget(keys.events_accounts(), audit_ps) == LEGACY_ID.encode()  # outlived it
    check = await walk.check(tenant, lambda _: None)
    assert (check.ok, check.map_fields) == (False, 1), check
    again = await walk.run(tenant, lambda _: None)
    assert (again.ids_moved, again.ids_dropped) == (0, 1), again
    assert not await redis.exists(keys.events_accounts())
    assert (await walk.check(tenant, lambda _: None)).ok


IDENTITIES = 300
LIMIT = 2


def _ref(n: int) -> str:
    return f"ref-race-{n}"


async def _bind(redis: RedisClient, tenant: str, ref: str, account_ps: str) -> Status:
    """A start in ``bind`` mode of ``account_ps`` to ``ref`` at ``LIMIT``; its status."""
    record: VerificationRecord = replace(
        verification(account_ps, OWNER), identity=ref, kind=SubjectKind.PERSON
    )
    vid = f"vf-{account_ps}"
    start = NewVerification(
        tenant, f"req-{vid}", vid, account_ps, record, 60_000, LIMIT, bind_crash.REQUEST_JSON, "bind"
    )

    async def unmoved(moved: bool) -> VerificationRecord:
        raise AssertionError(f"no identity moves here ({moved=})")

    return (await store_of(redis).commit(start, unmoved)).record.status


@pytest.mark.timeout(120)
async def test_bindings_and_cancellations_racing_the_walk(redis: RedisClient) -> None:
    """Bindings and cancellations during the walk: no member lost, none over the limit, each with its field.

    Each identity has one 0.1.0 member; meanwhile two more try to bind (one place left) and a third
    of the 0.1.0 members are cancelled first (two places).
    """
    tenant = "lgrace"
    keys = TenantKeys(tenant)
    legacy = {n: pseudonym(f"{tenant}-legacy-{n}") for n in range(IDENTITIES)}
    for n, account in legacy.items():
        assert await _bind(redis, tenant, _ref(n), account) is Status.VERIFIED
        await as_0_1_0_bound(redis, tenant, _ref(n), account)
    erasures = RedisErasureStore(redis, Scripts(redis))
    verified: dict[int, list[str]] = {n: [] for n in range(IDENTITIES)}
    cancelled = {n for n in range(IDENTITIES) if n % 3 == 0}

    async def traffic() -> None:
        for n in range(IDENTITIES):
            if n in cancelled:
                await erasures.cancel(tenant, cancellation(legacy[n], f"cancel-{n}"))
            for k in range(2):
                account = pseudonym(f"{tenant}-new-{n}-{k}")
                if await _bind(redis, tenant, _ref(n), account) is Status.VERIFIED:
                    verified[n].append(account)
            await asyncio.sleep(0)

    counts, _ = await asyncio.gather(moved(redis, tenant), traffic())
    assert counts.in_motion == 0
    for n in range(IDENTITIES):
        members = {as_text(m) for m in await redis.smembers(keys.identity_accounts(_ref(n)))}
        expected = set(verified[n]) | (set() if n in cancelled else {legacy[n]})
        assert members == expected, n
        assert len(members) <= LIMIT, n
        # A cancelled 0.1.0 member freed its place; a kept one still held it.
        assert len(verified[n]) == (2 if n in cancelled else 1), n
        record = await redis.hgetall(keys.identity(_ref(n)))
        fields = {as_text(k).removeprefix("m:") for k in record if k.startswith(b"m:")}
        assert fields == members, n
    check = await RedisLegacyMove(redis, Scripts(redis)).check(tenant, lambda _: None)
    assert check.ok, check
    assert check.records == IDENTITIES

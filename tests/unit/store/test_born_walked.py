"""A tenant's log created by a process whose new logs are born walked (``flows.born_walked``).

The log's first entry, whichever script writes it (a signup's one-node script, a sequencer's
first batch), writes ``migrate legacy``'s mark into the head it creates, so that no step of the
tenant reads the legacy ``events:acct`` map; a log that exists keeps what it has, marked or not,
and a process without the flag creates logs unmarked, as before.
"""

from __future__ import annotations

import pytest

from idverify.audit.sequencer import StageSequencer
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.legacy_moves import RedisLegacyMove
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticStager
from tests import bind_crash
from tests.bind_crash import OWNER, store_of
from tests.cancel_crash import pseudonym
from tests.sequencer_crash import event
from tests.tenant_births import BORN_MARK, born_walked
from tests.touched_keys import ScriptMonitor
from tests.unit.store.test_binding_families import Recording
from tests.unit.store.test_identity_accounts import REF
from tests.unit.store.test_legacy_moves import as_0_1_0_bound

TENANT = "born"
KEYS = TenantKeys(TENANT)


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


async def _mark(redis: RedisClient) -> bytes | None:
    mark: bytes | None = await redis.hget(KEYS.audit_head(), "legacy_moved")
    return mark


@pytest.mark.parametrize("walked", [False, True])
async def test_a_signups_first_entry_creates_the_log_born_walked(
    redis: RedisClient, script_monitor: ScriptMonitor, walked: bool
) -> None:
    """A start in ``bind`` mode on one node, its binding in the same script: no map read once born walked."""
    recording = Recording(redis, script_monitor, new_logs_walked=walked)
    await bind_crash.bind(redis, TENANT, pseudonym("first"), OWNER, store=store_of(redis, recording))
    assert await _mark(redis) == (BORN_MARK if walked else None)
    reading_the_map = [call.name for call in recording.calls if KEYS.events_accounts() in call.touched]
    assert reading_the_map == ([] if walked else ["start"]), recording.calls


@pytest.mark.parametrize("walked", [False, True])
async def test_a_sequencers_first_batch_creates_the_log_born_walked(redis: RedisClient, walked: bool) -> None:
    await SyntheticStager(redis).stage(TENANT, 3, [event("staged-1"), event("staged-2")])
    stages = RedisAuditStages(redis, Scripts(redis, new_logs_walked=walked))
    await StageSequencer(stages, 8).sequence(TENANT)
    assert await redis.hget(KEYS.audit_head(), "size") == b"2"
    assert await _mark(redis) == (BORN_MARK if walked else None)


async def test_a_log_that_exists_is_not_marked_by_a_later_process(
    redis: RedisClient, script_monitor: ScriptMonitor
) -> None:
    """A tenant an older server made (its head unmarked, a member 0.1.0 bound): only the walk marks it."""
    legacy = pseudonym("legacy")
    await bind_crash.bind(redis, TENANT, legacy, OWNER)
    await as_0_1_0_bound(redis, TENANT, REF, legacy)
    recording = Recording(redis, script_monitor, new_logs_walked=True)
    await bind_crash.bind(redis, TENANT, pseudonym("later"), OWNER, store=store_of(redis, recording))
    assert await _mark(redis) is None
    assert [call.name for call in recording.calls if KEYS.events_accounts() in call.touched] == ["start"]
    check = await RedisLegacyMove(redis, Scripts(redis)).check(TENANT, lambda _: None)
    # The binding wrote the 0.1.0 member's field as it read it; the map's field waits for its account.
    assert (check.members_without_field, check.map_fields, check.head_marked) == (0, 1, False), check


async def test_a_tenant_born_walked_passes_the_walks_verify_and_a_walk_finds_nothing(
    redis: RedisClient,
) -> None:
    await born_walked(redis, TENANT)
    await bind_crash.bind(redis, TENANT, pseudonym("a"), OWNER)
    move = RedisLegacyMove(redis, Scripts(redis))
    check = await move.check(TENANT, lambda _: None)
    assert check.ok, check
    assert (check.records, check.members, check.born) == (1, 1, True), check
    counts = await move.run(TENANT, lambda _: None)
    assert not counts.changed, counts
    after = await move.check(TENANT, lambda _: None)
    assert after.ok, after
    assert not after.born, after  # the walk's own mark, now

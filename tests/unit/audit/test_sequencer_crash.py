"""A sequencer process killed -9 at each step boundary, then run again: no entry lost or doubled.

The boundaries: after its cursor read, after its XRANGE read of a batch, after the committed
call before the trim (also with the trim half done, ``trim_half``), after the trim. Each round
stages more entries in two buckets (several batches each), kills a sequencer at one boundary and
runs a fresh one; at the end the log is integrated, its root RFC 6962's and inclusion proofs
verify against it. ``test_sequencer_crash_loop.py`` does the same at boundaries drawn at random.
"""

from __future__ import annotations

import pytest

from idverify.audit.sequencer import StageSequencer
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticStager
from idverify.testing import RedisProcess
from tests.sequencer_crash import assert_sequenced_once, assert_tree_verifies, event, killed_at, trim_half

BUCKETS = 2
PER_ROUND = 600  # about two and a half batches per bucket
# (boundary, which call of it, half of the last batch deleted before the rerun)
CRASHES = [
    ("cursor", 2, False),
    ("staged", 1, False),
    ("staged", 4, False),
    ("sequence", 1, False),
    ("sequence", 1, True),
    ("sequence", 3, False),
    ("trim", 2, False),
    ("trim", 5, False),
]


@pytest.mark.parametrize(("step", "nth", "partial"), CRASHES)
async def test_a_killed_sequencer_loses_and_doubles_nothing(
    redis: RedisClient, redis_server: RedisProcess, step: str, nth: int, partial: bool
) -> None:
    tenant = f"crash-{step}-{nth}-{'half' if partial else 'whole'}"
    staged: dict[int, list[str]] = {b: [] for b in range(BUCKETS)}
    stager = SyntheticStager(redis)
    for round_ in range(2):
        for bucket in range(BUCKETS):
            names = [f"r{round_}-b{bucket}-{n}" for n in range(PER_ROUND)]
            await stager.stage(tenant, bucket, [event(name) for name in names])
            staged[bucket] += names
        before = await redis.hlen(TenantKeys(tenant).audit_log())
        killed_at(redis_server.url, tenant, BUCKETS, step, nth)
        if partial:
            assert await trim_half(redis, tenant, BUCKETS)
        if step == "sequence":  # killed after a committed step: the log holds its batch
            assert await redis.hlen(TenantKeys(tenant).audit_log()) > before
        await StageSequencer(RedisAuditStages(redis, Scripts(redis)), BUCKETS).sequence(tenant)
        await assert_sequenced_once(redis, tenant, staged)
    size = await assert_tree_verifies(redis, tenant, (0, 599, 600, 2 * BUCKETS * PER_ROUND - 1))
    assert size == 2 * BUCKETS * PER_ROUND

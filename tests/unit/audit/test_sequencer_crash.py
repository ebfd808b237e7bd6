"""A sequencer process killed -9 at each step boundary, then run again: no entry lost or doubled.

The boundaries: after its XRANGE read of a batch, after the committed call before the trim (also
with the trim half done, as an XDEL-by-XDEL trim would leave it: the trim is one XTRIM, so a
crash inside it leaves the stream as before or after it), after the trim. Each round stages more
entries in two buckets (several batches each), kills a sequencer at one boundary and runs a
fresh one; at the end the log is integrated and inclusion proofs verify against its root.
"""

from __future__ import annotations

import pytest

from idverify.audit import merkle
from idverify.audit.integrator import TreeIntegrator
from idverify.audit.sequencer import StageSequencer
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticStager
from idverify.testing import RedisProcess
from tests.sequencer_crash import assert_sequenced_once, killed_at

BUCKETS = 2
PER_ROUND = 600  # about two and a half batches per bucket
# (boundary, which call of it, half of the last batch deleted before the rerun)
CRASHES = [
    ("staged", 1, False),
    ("staged", 4, False),
    ("sequence", 1, False),
    ("sequence", 1, True),
    ("sequence", 3, False),
    ("trim", 2, False),
    ("trim", 5, False),
]


def _event(name: str) -> tuple[dict[str, str], dict[str, str]]:
    return {"principal": "t/registrar/c1", "request_id": name, "trace_id": ""}, {
        "type": "verification.started",
        "outcome": "started",
    }


@pytest.mark.parametrize(("step", "nth", "partial"), CRASHES)
async def test_a_killed_sequencer_loses_and_doubles_nothing(
    redis: RedisClient, redis_server: RedisProcess, step: str, nth: int, partial: bool
) -> None:
    tenant = f"crash-{step}-{nth}-{'half' if partial else 'whole'}"
    scripts = Scripts(redis)
    staged: dict[int, list[str]] = {b: [] for b in range(BUCKETS)}
    stager = SyntheticStager(redis)
    for round_ in range(2):
        for bucket in range(BUCKETS):
            names = [f"r{round_}-b{bucket}-{n}" for n in range(PER_ROUND)]
            await stager.stage(tenant, bucket, [_event(name) for name in names])
            staged[bucket] += names
        before = await redis.hlen(TenantKeys(tenant).audit_log())
        killed_at(redis_server.url, tenant, BUCKETS, step, nth)
        if partial:
            # Half of what the killed process had sequenced but not trimmed leaves the stream.
            halved = 0
            for bucket in range(BUCKETS):
                cursor = await RedisAuditStages(redis, scripts).cursor(tenant, bucket)
                stage = BucketKeys(tenant, bucket).audit_stage()
                below = [i for i, _ in await redis.xrange(stage, "-", cursor)] if cursor else []
                if below:
                    halved += await redis.xdel(stage, *below[: len(below) // 2])
            assert halved
        if step == "sequence":  # killed after a committed step: the log holds its batch
            assert await redis.hlen(TenantKeys(tenant).audit_log()) > before
        await StageSequencer(RedisAuditStages(redis, scripts), BUCKETS).sequence(tenant)
        await assert_sequenced_once(redis, tenant, staged)
    store = AuditStore(redis, scripts)
    state = await TreeIntegrator(store).integrate(tenant)
    entries = await store.entries(tenant, list(range(state.size)))
    leaves = [merkle.leaf_hash(e) for e in entries if e is not None]
    assert state.size == len(leaves) == 2 * BUCKETS * PER_ROUND
    assert state.root == merkle.root(leaves)
    for index in (0, 599, 600, state.size - 1):
        plan = merkle.inclusion_plan(index, state.size)
        proof = plan.assemble(await store.read_nodes(tenant, plan.nodes))
        merkle.verify_inclusion(leaves[index], index, state.size, proof, state.root)

"""A Redis primary killed -9 at a sequencer's step boundary, on a Cluster with a replica a primary.

A sequencer process is stopped after a step (``tests.sequencer_crash.paused_at``); the primary
holding the tenant's slot (its log, cursors and receipts), or one holding a bucket's stream, is
then killed with SIGKILL, its replica takes over, and a fresh sequencer runs: every staged entry
is in the log once, each bucket's in stream order, times never backwards, the root RFC 6962's
and proofs verifying. With ``wait_replicas=1`` in the URL a step is reported done only once the
replica holds it, so the failover loses no step whose records were trimmed.

The failure table's two rows for a lost step are made certain by cutting the tenant's replica
off (SIGSTOP, its link killed) before a pass: with ``wait_replicas`` the pass fails UNAVAILABLE
before any trim, and nothing is lost; without it the pass trims, the primary dies, and exactly
the records of the lost steps whose streams live on the surviving shards are gone, as an
``audit()`` entry is lost with its change.

A bucket's primary that dies with records its replica never got, which a pass had already
sequenced, leaves their entries in the log and the cursor past what the promoted stream holds;
records staged next are still sequenced, those a clock behind puts below the cursor too (the
failure table's row for a bucket's shard).

CI runs the fixed cases and ``CI_ROUNDS`` rounds of the loop (the primary and the boundary drawn
at random); ``IDVERIFY_CRASH_LOOPS=N`` runs N rounds (docs/RELIABILITY.md).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence

import pytest
from redis.asyncio.cluster import RedisCluster

from idverify.audit.sequencer import StageSequencer
from idverify.domain.errors import StoreUnavailable
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.connection import as_text, connect
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.local_topologies import LocalCluster, wait_until
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticStager
from idverify.store.topology import ReplicaAck
from tests.cluster_failover import (
    FAILOVER_SECONDS,
    failover_cluster,
    kill_primary,
    promoted,
    rejoin,
    replica_cut_off,
    replicated,
    serving,
)
from tests.sequencer_crash import (
    STEPS,
    assert_sequenced_once,
    assert_tree_verifies,
    calls_at_least,
    drawn_seed,
    event,
    loop_rounds,
    paused_at,
    replay_hint,
)

pytestmark = pytest.mark.slow
BUCKETS = 6
PER_BUCKET = 300  # two batches a bucket
CI_ROUNDS = 1  # the fixed cases below are CI's share; the loop is the long run
ROUNDS = loop_rounds(CI_ROUNDS)
ROUNDS_A_TENANT = 10  # each check reads the whole log: a new tenant every this many rounds


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three primaries with a replica each; a node killed by a test rejoins as a replica before the next."""
    with failover_cluster(tmp_path_factory.mktemp("failover")) as setup:
        yield setup


async def spread_tenant(url: str) -> str:
    """A new tenant whose bucket streams sit on all three primaries, its log on one of them."""
    client = connect(url)
    assert isinstance(client, RedisCluster)
    await client.initialize()  # the slot map, which names each key's node
    try:
        for n in itertools.count():
            name = f"failover-{n}-{random.randrange(10**9)}"  # noqa: S311 - a name, not a secret
            nodes = {client.get_node_from_key(BucketKeys(name, b).audit_stage()).name for b in range(BUCKETS)}
            if len(nodes) == 3:
                return name
        raise AssertionError  # pragma: no cover - itertools.count never ends
    finally:
        await client.aclose()


def _stream_order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq)


async def stage_round(cluster: LocalCluster, tenant: str, label: str, staged: dict[int, list[str]]) -> None:
    """Stages ``PER_BUCKET`` entries in each bucket, held by the replicas too (as a staging step waits)."""
    client = connect(cluster.url)
    try:
        stager = SyntheticStager(client)
        for bucket in range(BUCKETS):
            names = [f"{label}-b{bucket}-{n}" for n in range(PER_BUCKET)]
            await stager.stage(tenant, bucket, [event(name) for name in names])
            staged.setdefault(bucket, []).extend(names)
    finally:
        await client.aclose()
    replicated(cluster)


async def sequence_pass(cluster: LocalCluster, tenant: str, ack: ReplicaAck) -> None:
    """A fresh sequencer's pass over the tenant's buckets, on a client that learns the slot map anew."""
    client = connect(cluster.url)
    try:
        await StageSequencer(RedisAuditStages(client, Scripts(client, ack=ack)), BUCKETS).sequence(tenant)
    finally:
        await client.aclose()


async def check(cluster: LocalCluster, tenant: str, staged: dict[int, list[str]]) -> None:
    """The invariants: each staged entry once, in its bucket's order, times forward, the tree RFC 6962's."""
    client = connect(cluster.url)
    try:
        size = sum(len(mine) for mine in staged.values())
        await assert_sequenced_once(client, tenant, staged)
        if size:
            assert await assert_tree_verifies(client, tenant, (0, size // 2, size - 1)) == size
    finally:
        await client.aclose()


async def _log_size(cluster: LocalCluster, tenant: str) -> int:
    client = connect(cluster.url)
    try:
        return int(await client.hlen(TenantKeys(tenant).audit_log()))
    finally:
        await client.aclose()


async def primary_killed_at(
    cluster: LocalCluster, tenant: str, staged: dict[int, list[str]], doomed: str, step: str, nth: int
) -> None:
    """A sequencer (``wait_replicas=1``) stopped after the ``nth`` ``step``, ``doomed``'s primary killed.

    The killed node rejoins as a replica, a fresh sequencer runs and the invariants are checked.
    """
    before = await _log_size(cluster, tenant)
    with paused_at(f"{cluster.url}?wait_replicas=1", tenant, BUCKETS, step, nth):
        dead = kill_primary(cluster, doomed)
    if step == "sequence" and doomed == TenantKeys(tenant).audit_log():
        # The step stopped after was acknowledged by the replica that now serves the log.
        assert await _log_size(cluster, tenant) > before
    rejoin(cluster, dead)
    await sequence_pass(cluster, tenant, WAITED)
    await check(cluster, tenant, staged)


WAITED = ReplicaAck(replicas=1, timeout_ms=2000)
# (whose primary dies: the tenant's log or bucket 0's stream, after which call of which step)
CASES = [("log", "sequence", 3), ("stage", "staged", 2), ("stage", "trim", 3)]


@pytest.mark.parametrize(("whose", "step", "nth"), CASES)
async def test_a_primary_killed_at_a_step_boundary_loses_and_doubles_nothing(
    cluster: LocalCluster, whose: str, step: str, nth: int
) -> None:
    tenant = await spread_tenant(cluster.url)
    doomed = TenantKeys(tenant).audit_log() if whose == "log" else BucketKeys(tenant, 0).audit_stage()
    staged: dict[int, list[str]] = {}
    await stage_round(cluster, tenant, "r0", staged)
    await primary_killed_at(cluster, tenant, staged, doomed, step, nth)


@pytest.mark.parametrize("wait", [True, False], ids=["wait_replicas", "no_wait"])
async def test_a_step_its_replica_never_got_is_lost_only_without_wait_replicas(
    cluster: LocalCluster, wait: bool
) -> None:
    tenant = await spread_tenant(cluster.url)
    log_key = TenantKeys(tenant).audit_log()
    staged: dict[int, list[str]] = {}
    await stage_round(cluster, tenant, "r0", staged)
    primary = serving(cluster, log_key)
    on_dead = {b for b in range(BUCKETS) if serving(cluster, BucketKeys(tenant, b).audit_stage()) is primary}
    with replica_cut_off(cluster, primary) as replica:
        if wait:
            # No replica holds the first step: the pass fails before trimming anything.
            with pytest.raises(StoreUnavailable):
                await sequence_pass(cluster, tenant, ReplicaAck(replicas=1, timeout_ms=200))
        else:
            await sequence_pass(cluster, tenant, ReplicaAck())
        primary.stop(hard=True)
    wait_until(
        lambda: cluster.is_ok() and serving(cluster, log_key) is replica, "the replica", FAILOVER_SECONDS
    )
    rejoin(cluster, primary)
    await sequence_pass(cluster, tenant, WAITED)
    if not wait:
        # The lost steps' records are gone where their trims survived: on the other shards.
        staged = {b: mine if b in on_dead else [] for b, mine in staged.items()}
        assert len(on_dead) < BUCKETS
    await check(cluster, tenant, staged)


async def test_a_bucket_primary_that_loses_records_already_sequenced_leaves_their_entries(
    cluster: LocalCluster,
) -> None:
    """The table's row for a bucket's shard: the log keeps what was read; later records still come.

    The bucket's replica is cut off, records are staged on its primary alone and sequenced
    (the tenant's shard acknowledges the step), then the primary dies: the promoted replica's
    stream never held them, but their entries stay in the log, and the cursor is above what the
    stream holds. Records the promoted node stages with a clock behind the lost ids land below
    the cursor (written here at the ids of two lost records, one host having one clock), and
    records staged next take ids above it: all are sequenced once, in order.
    """
    tenant = await spread_tenant(cluster.url)
    staged: dict[int, list[str]] = {}
    await stage_round(cluster, tenant, "r0", staged)
    await sequence_pass(cluster, tenant, WAITED)
    replicated(cluster)
    log_primary = serving(cluster, TenantKeys(tenant).audit_log())
    bucket = next(
        b for b in range(BUCKETS) if serving(cluster, BucketKeys(tenant, b).audit_stage()) is not log_primary
    )
    stage = BucketKeys(tenant, bucket).audit_stage()
    primary = serving(cluster, stage)
    with replica_cut_off(cluster, primary):
        client = connect(cluster.url)
        try:
            lost = [f"lost-{n}" for n in range(50)]
            lost_ids = await SyntheticStager(client).stage(tenant, bucket, [event(name) for name in lost])
        finally:
            await client.aclose()
        await sequence_pass(cluster, tenant, WAITED)
        primary.stop(hard=True)
    wait_until(lambda: promoted(cluster, stage, primary), "the replica", FAILOVER_SECONDS)
    rejoin(cluster, primary)
    client = connect(cluster.url)
    try:
        cursor = await RedisAuditStages(client, Scripts(client)).cursor(tenant, bucket)
        left = (await client.xinfo_stream(stage))["last-generated-id"]
    finally:
        await client.aclose()
    assert _stream_order(cursor) > _stream_order(as_text(left))  # the cursor is past what remains
    behind = [f"behind-{n}" for n in range(2)]
    await _stage_at(cluster, tenant, bucket, lost_ids[:2], behind)
    staged[bucket] += lost + behind
    await stage_round(cluster, tenant, "r1", staged)
    await sequence_pass(cluster, tenant, WAITED)
    await check(cluster, tenant, staged)


async def _stage_at(
    cluster: LocalCluster, tenant: str, bucket: int, ids: Sequence[str], names: list[str]
) -> None:
    """Stages ``names`` in ``bucket`` at the given stream ids, as a node whose clock is behind gives them.

    The records are what ``audit_stage`` writes: staged for another tenant, then copied.
    """
    client = connect(cluster.url)
    try:
        elsewhere = f"{tenant}-elsewhere"
        await SyntheticStager(client).stage(elsewhere, bucket, [event(name) for name in names])
        records = await client.xrange(BucketKeys(elsewhere, bucket).audit_stage())
        for stream_id, (_, fields) in zip(ids, records, strict=True):
            await client.xadd(BucketKeys(tenant, bucket).audit_stage(), fields, id=stream_id)
    finally:
        await client.aclose()


@pytest.mark.timeout(300 + 60 * ROUNDS)
async def test_primaries_killed_at_random_boundaries_lose_and_double_nothing(cluster: LocalCluster) -> None:
    seed = drawn_seed()
    rng = random.Random(seed)  # noqa: S311 - a test's draw
    tenant, staged = "", dict[int, list[str]]()
    for n in range(ROUNDS):
        if n % ROUNDS_A_TENANT == 0:
            tenant, staged = await spread_tenant(cluster.url), {}
        bucket = rng.randrange(BUCKETS)
        doomed = rng.choice((TenantKeys(tenant).audit_log(), BucketKeys(tenant, bucket).audit_stage()))
        step = rng.choice(STEPS)
        nth = rng.randint(1, calls_at_least(step, [PER_BUCKET] * BUCKETS))
        try:
            await stage_round(cluster, tenant, f"r{n}", staged)
            await primary_killed_at(cluster, tenant, staged, doomed, step, nth)
        except Exception as exc:
            msg = f"round {n} of {ROUNDS} ({tenant}, {doomed}'s primary killed after call {nth} of {step}): "
            raise AssertionError(msg + replay_hint(seed, ROUNDS)) from exc

"""Staged audit entries on a 3-primary Cluster: stage streams on every shard, one sequencer log.

A tenant's bucket streams hash to slots of their own; the sequencer reads each from its shard and
appends in the tenant's slot, so nothing joins two slots in one command. A sequencer process is
killed -9 after a committed call before its trim, and after a read, on the way: a fresh one
finishes with every entry once and the tree's proofs verify.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio.cluster import RedisCluster

from idverify.audit import pending as pending_module
from idverify.audit.checkpoint import TreeHeadSigner
from idverify.audit.pending import PendingReadLimit
from idverify.audit.sequencer import StageSequencer
from idverify.flows.audit import AuditFlow, QueryRequest
from idverify.flows.tenant_removal import TenantRemoval
from idverify.privacy.keyring import Keyring
from idverify.security.clients import ClientRegistry
from idverify.security.principals import Role
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.clients import RedisClientStore
from idverify.store.connection import connect
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.local_topologies import LocalCluster
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticStager
from idverify.store.tenant_removals import RedisRemovalStore
from tests.sequencer_crash import assert_sequenced_once, assert_tree_verifies, event, killed_at

pytestmark = pytest.mark.slow
BUCKETS = 6
PER_BUCKET = 400


async def _spread_tenant(client: RedisCluster, name: str = "spread") -> str:
    """A tenant whose bucket streams sit on all three primaries, its log on one of them."""
    await client.initialize()  # the slot map, which names each key's node
    for n in itertools.count():
        tenant = f"{name}-{n}"
        nodes = {client.get_node_from_key(BucketKeys(tenant, b).audit_stage()).name for b in range(BUCKETS)}
        if len(nodes) == 3:
            return tenant
    raise AssertionError  # pragma: no cover - itertools.count never ends


async def test_stages_on_three_shards_sequenced_once_through_kills(redis_cluster: LocalCluster) -> None:
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    tenant = await _spread_tenant(client)
    try:
        scripts = Scripts(client)
        stager = SyntheticStager(client)
        staged: dict[int, list[str]] = {b: [] for b in range(BUCKETS)}
        for round_, (step, nth) in enumerate((("sequence", 2), ("staged", 5))):
            for bucket in range(BUCKETS):
                names = [f"r{round_}-b{bucket}-{n}" for n in range(PER_BUCKET)]
                await stager.stage(tenant, bucket, [event(name) for name in names])
                staged[bucket] += names
            killed_at(redis_cluster.url, tenant, BUCKETS, step, nth)
            report = await StageSequencer(RedisAuditStages(client, scripts), BUCKETS).sequence(tenant)
            assert report.appended > 0
            await assert_sequenced_once(client, tenant, staged)
        size = await assert_tree_verifies(client, tenant, (0, 401, 2 * BUCKETS * PER_BUCKET - 1))
        assert size == 2 * BUCKETS * PER_BUCKET
    finally:
        for key in [BucketKeys(tenant, b).audit_stage() for b in range(BUCKETS)]:
            await client.delete(key)
        async for key in client.scan_iter(match=f"iv1:{{t:{tenant}}}:*", count=1000):
            await client.delete(key)
        await client.aclose()


async def test_a_removal_closes_the_log_after_the_staged_entries_and_erases_the_stages(
    redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    """The close sequences first, so its last entry follows them; the erase deletes every stage stream."""
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    tenant = await _spread_tenant(client, "leaving")
    keys = TenantKeys(tenant)
    try:
        scripts = Scripts(client)
        request = {"principal": "tenants-remove/test@host", "request_id": "", "trace_id": ""}
        await ClientRegistry(RedisClientStore(client, scripts), Keyring.generate()).create(
            tenant, Role.REGISTRAR, "", request
        )
        stager = SyntheticStager(client)
        for bucket in range(BUCKETS):
            await stager.stage(tenant, bucket, [({"request_id": f"b{bucket}"}, {"type": "client.created"})])
        log = RedisAuditLog(client, scripts)
        sequencer = StageSequencer(RedisAuditStages(client, scripts), BUCKETS)
        audit = AuditFlow(log, TreeHeadSigner(Ed25519PrivateKey.generate()), Keyring.generate())
        removal = TenantRemoval(RedisRemovalStore(client, scripts, log=log), audit, sequencer=sequencer)
        await removal.schedule(tenant, 0, request)
        head = await removal.close(tenant, request)
        raw = await client.hgetall(keys.audit_log())
        entries = [json.loads(raw[str(i).encode()]) for i in range(len(raw))]
        assert head.head.size == len(entries)
        assert entries[-1]["type"] == "tenant.removed"
        assert sorted(e["request_id"] for e in entries if e["request_id"].startswith("b")) == [
            f"b{b}" for b in range(BUCKETS)
        ]
        await stager.stage(tenant, 1, [({"request_id": "late"}, {"type": "client.created"})])
        await removal.export(tenant, head, tmp_path, lambda _: None)
        await removal.start_erasing(tenant)
        assert (await removal.erase(tenant, page_size=100, limit=0, progress=lambda _: None)).finished
        assert await sequencer.drop_stages(tenant) == 0
        for bucket in range(BUCKETS):
            assert not await client.exists(BucketKeys(tenant, bucket).audit_stage())
        assert await client.hlen(keys.audit_log()) == len(entries)
    finally:
        for key in [BucketKeys(tenant, b).audit_stage() for b in range(BUCKETS)]:
            await client.delete(key)
        async for key in client.scan_iter(match=f"iv1:{{t:{tenant}}}:*", count=1000):
            await client.delete(key)
        await client.aclose()


async def test_pending_entries_are_read_from_every_shard_then_found_in_the_log(
    redis_cluster: LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """QueryEvents' pending part on a Cluster: each bucket's XLEN and read script on its own shard.

    Read a few records a query, its pages walk from shard to shard, each position once.
    """
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    tenant = await _spread_tenant(client, "pending")
    try:
        scripts = Scripts(client)
        stages = RedisAuditStages(client, scripts)
        stager = SyntheticStager(client)
        staged = {
            bucket: await stager.stage(tenant, bucket, [event(f"p-b{bucket}-{n}") for n in range(2)])
            for bucket in range(BUCKETS)
        }
        audit = AuditFlow(
            RedisAuditLog(client, scripts),
            TreeHeadSigner(Ed25519PrivateKey.generate()),
            Keyring.generate(),
            stages=stages,
            stage_buckets=BUCKETS,
        )
        pending = [r async for r in audit.query(tenant, QueryRequest(include_pending=True))]
        every = [(bucket, stream_id) for bucket in range(BUCKETS) for stream_id in staged[bucket]]
        assert [(r.pending.bucket, r.pending.stream_id) for r in pending if r.pending] == every
        # Read 5 records a query: the walk goes on from shard to shard, each position once.
        monkeypatch.setattr(pending_module, "PENDING_READ", 5)
        walked: list[tuple[int, str]] = []
        after = None
        for _ in range(BUCKETS * 2):
            try:
                async for found in audit.query(
                    tenant, QueryRequest(include_pending=True, pending_after=after)
                ):
                    if found.pending:
                        walked.append((found.pending.bucket, found.pending.stream_id))  # noqa: PERF401 - kept up to the cut
                break
            except PendingReadLimit as cut:
                after = cut.after
        assert walked == every
        await StageSequencer(stages, BUCKETS).sequence(tenant)
        logged = [r async for r in audit.query(tenant, QueryRequest(include_pending=True))]
        assert [r.pending for r in logged] == [None] * len(pending)
        assert sorted(r.event.request_id for r in logged) == sorted(r.event.request_id for r in pending)
    finally:
        for key in [BucketKeys(tenant, b).audit_stage() for b in range(BUCKETS)]:
            await client.delete(key)
        async for key in client.scan_iter(match=f"iv1:{{t:{tenant}}}:*", count=1000):
            await client.delete(key)
        await client.aclose()

"""The audit log on Redis Cluster: appends, integration, proofs and queries stay in the tenant's slot.

In both layouts: the tree in Redis, and in tiles with the older entries trimmed from Redis
(``audit_trim.lua`` and ``audit_integrate.lua`` are single-slot scripts, so a key of another
slot among theirs would be refused by the cluster as CROSSSLOT).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.crc import key_slot

from idverify.audit import merkle
from idverify.audit.events import parse_entry
from idverify.audit.integrator import TreeIntegrator
from idverify.audit.query import EventFilter, run_query
from idverify.audit.tiled_audit_log import TiledAuditLog
from idverify.security.clients import ClientRegistry
from idverify.security.principals import Role
from idverify.store.audit_store import AuditStore
from idverify.store.clients import RedisClientStore
from idverify.store.connection import connect
from idverify.store.keys import TenantKeys
from idverify.store.local_topologies import LocalCluster
from idverify.store.scripts import Scripts

from .conftest import LAYOUTS, tiled_audit_log

pytestmark = pytest.mark.slow


class _Keyed:
    def mac(self, tenant: str, purpose: str, data: bytes, *, pepper_version: str | None = None) -> bytes:
        del pepper_version
        return f"{tenant}|{purpose}|".encode() + data


class TestAuditOnCluster:
    @pytest.mark.parametrize("layout", LAYOUTS)
    async def test_tenants_on_several_shards_keep_provable_logs(
        self, redis_cluster: LocalCluster, layout: str, tmp_path: Path
    ) -> None:
        """Client changes of tenants spread over the shards are logged, integrated and proven per tenant."""
        client = connect(redis_cluster.url)
        try:
            scripts = Scripts(client)
            clients = ClientRegistry(RedisClientStore(client, scripts), _Keyed())
            store = AuditStore(client, scripts)
            # With tiles, one entry stays in Redis: the first three are read from the bundles.
            log = tiled_audit_log(client, tmp_path / "tiles", kept=1) if layout == "tiles" else None
            tenants = [f"audit-shard-{layout}-{n}" for n in range(6)]
            assert len({key_slot(TenantKeys(t).audit_log().encode()) for t in tenants}) > 1
            for tenant in tenants:
                for role in (Role.AUDITOR, Role.PLATFORM, Role.REGISTRAR):
                    record, _ = await clients.create(tenant, role, "", {"principal": "test"})
                await clients.revoke(record.client_id, {"principal": "test"})
            for tenant in tenants:
                if log is None:
                    state = await TreeIntegrator(store).integrate(tenant)
                    reader: AuditStore | TiledAuditLog = store
                else:
                    state = await log.integrate(tenant)
                    assert await log.trim(tenant) == 3
                    assert await store.entries(tenant, [0, 1, 2, 3]) == [
                        None,
                        None,
                        None,
                        *(await log.entries(tenant, [3])),
                    ]
                    assert (await store.tree_state(tenant)).tiled
                    reader = log
                leaves = [leaf for leaf in await reader.entries(tenant, list(range(state.size))) if leaf]
                assert [parse_entry(x).type for x in leaves] == ["client.created"] * 3 + ["client.revoked"]
                hashes = [merkle.leaf_hash(x) for x in leaves]
                assert state.root == merkle.root(hashes)
                plan = merkle.inclusion_plan(2, 4)
                proof = plan.assemble(await reader.read_nodes(tenant, plan.nodes))
                merkle.verify_inclusion(hashes[2], 2, 4, proof, state.root)
                found = [
                    r.event.index
                    async for r in run_query(reader, tenant, EventFilter(outcomes=frozenset({"revoked"})))
                ]
                assert found == [3]
                first = parse_entry(leaves[1]).time_ms
                assert await reader.seek_times(tenant, [0, first]) == [
                    0,
                    1 if first > parse_entry(leaves[0]).time_ms else 0,
                ]
        finally:
            await client.aclose()

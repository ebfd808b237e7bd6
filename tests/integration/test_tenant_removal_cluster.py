"""A tenant's removal on Redis Cluster: its steps stay in its slot, and a stopped erasure resumes.

In both audit layouts: with tiles, the leaver's older entries were trimmed from Redis, so its
export reads them from the bundles, and its tiles folder stays with its log.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio.cluster import RedisCluster

from idverify.audit.checkpoint import TreeHeadSigner, load_public_key
from idverify.audit.export import verify_export
from idverify.audit.tile_mirror import SIZE_FILE
from idverify.audit.tiled_audit_log import TiledAuditLog
from idverify.flows.audit import AuditFlow
from idverify.flows.tenant_removal import TenantRemoval, export_paths
from idverify.privacy.keyring import Keyring
from idverify.security.clients import ClientRegistry
from idverify.security.principals import Role
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.clients import RedisClientStore
from idverify.store.connection import connect
from idverify.store.local_topologies import LocalCluster
from idverify.store.scripts import Scripts
from idverify.store.tenant_removals import RedisRemovalStore

from .conftest import LAYOUTS, tiled_audit_log

pytestmark = pytest.mark.slow
REQUEST = {"principal": "tenants-remove/test@host", "request_id": "", "trace_id": ""}


async def keys_of(client: RedisCluster, tenant: str) -> dict[bytes, bytes | None]:
    """Every key of the tenant on every primary, with its DUMP."""
    return {
        key: await client.dump(key)
        async for key in client.scan_iter(match=f"iv1:{{t:{tenant}}}:*", count=100)
    }


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_a_tenant_leaves_a_cluster_beside_another(
    redis_cluster: LocalCluster, layout: str, tmp_path: Path
) -> None:
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    leaver, stayer = f"cluster-leaver-{layout}", f"cluster-stayer-{layout}"
    try:
        scripts = Scripts(client)
        keyring = Keyring.generate()
        registry = ClientRegistry(RedisClientStore(client, scripts), keyring)
        for tenant in (leaver, stayer):
            await registry.create(tenant, Role.REGISTRAR, "", REQUEST)
            for n in range(120):
                await client.hset(f"iv1:{{t:{tenant}}}:acct:{n:032x}", mapping={"bound": "1"})
        tiles = tmp_path / "tiles"
        log = tiled_audit_log(client, tiles, kept=1) if layout == "tiles" else RedisAuditLog(client, scripts)
        if isinstance(log, TiledAuditLog):
            await registry.create(leaver, Role.AUDITOR, "", REQUEST)  # a second entry, to trim
            await log.integrate(leaver)
            assert await log.trim(leaver) == 1  # the first entry is in its bundle alone
        audit = AuditFlow(log, TreeHeadSigner(Ed25519PrivateKey.generate()), keyring)
        removal = TenantRemoval(RedisRemovalStore(client, scripts, log=log), audit)
        before = await keys_of(client, stayer)

        await removal.schedule(leaver, 0, REQUEST)
        head = await removal.close(leaver, REQUEST)
        exported = await removal.export(leaver, head, tmp_path, lambda _: None)
        await removal.start_erasing(leaver)
        stopped = await removal.erase(leaver, page_size=20, limit=30, progress=lambda _: None)
        assert not stopped.finished
        assert await removal.count_remaining(leaver) > 0
        finished = await removal.erase(leaver, page_size=20, limit=0, progress=lambda _: None)
        assert finished.finished

        left = await keys_of(client, leaver)
        assert left
        assert all(b":audit:" in key for key in left), sorted(left)[:5]
        assert await keys_of(client, stayer) == before
        assert leaver.encode() not in await client.hvals("iv1:{global}:client-tenant")
        with exported.open("rb") as handle:
            report = verify_export(
                handle, load_public_key(audit.public_key_pem.encode()), expected_origin=f"idverify/{leaver}"
            )
        assert report.ok, report.problem
        assert exported == export_paths(tmp_path, leaver)[0]
        assert report.entries == report.tree_size == head.head.size
        if layout == "tiles":
            assert (tiles / leaver / SIZE_FILE).is_file()  # kept with the log
    finally:
        await client.aclose()

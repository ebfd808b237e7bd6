"""The audit log's end-to-end tests again: standalone Redis, Cluster and Sentinel, both layouts.

The server fixture repeats the e2e module's signups on a freshly emptied topology (the tests
count the events those signups leave), and the test classes are the e2e suite's own. Cluster
and Sentinel run them with the tree in Redis and in tiles (``audit_tiles_dir``); standalone
with tiles is the e2e suite's own (``tests/e2e/test_audit_tiles.py``), so it is not run twice.
"""

from __future__ import annotations

import pytest
import redis
from redis.cluster import RedisCluster

from idverify.audit.tile_mirror import SIZE_FILE
from idverify.store.audit_store import TILED
from idverify.store.keys import TenantKeys
from idverify.testing import ServerProcess
from idverify.v1 import audit_pb2
from tests.e2e import test_audit as e2e_audit
from tests.e2e.conftest import person, start, submit, verify, wrong_code
from tests.e2e.test_audit import signed_head

from .conftest import Topology, TopologyServers

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.parametrize(
        ("redis_topology", "audit_layout"),
        [
            ("standalone", "redis"),
            ("cluster", "redis"),
            ("sentinel", "redis"),
            ("cluster", "tiles"),
            ("sentinel", "tiles"),
        ],
        indirect=True,
        scope="module",
    ),
]

# The e2e module's own fixtures, registered here by name.
auditor = e2e_audit.auditor
exported = e2e_audit.exported


@pytest.fixture(scope="module")
def server(topology_servers: TopologyServers) -> ServerProcess:
    """The e2e audit fixture's signups (one with a wrong code first) on the current topology."""
    running = topology_servers.start("audit")
    with running.client("registrar") as registrar:
        for n in range(3):
            verify(running, registrar, person(), f"audit-acct-{n}")
        started = start(registrar, person(), "audit-wrong")
        code = running.sms_code(started.verification_id)
        submit(registrar, started.verification_id, wrong_code(code))
        submit(registrar, started.verification_id, code)
    return running


class TestAuditQueriesOnTopology(e2e_audit.TestQueries):
    """Queries by time, type, outcome and account."""


class TestAuditProofsOnTopology(e2e_audit.TestProofs):
    """Signed tree heads, inclusion and consistency proofs."""


class TestAuditRefusalsOnTopology(e2e_audit.TestRefusals):
    """What auditors may not do."""


class TestAuditExportOnTopology(e2e_audit.TestExport):
    """Export and offline verification."""


def tree_head(topology: Topology, tenant: str = "default") -> dict[bytes, bytes]:
    """The tenant's stored tree head, read from the topology's primary."""
    key = TenantKeys(tenant).audit_tree_head()
    if topology.name == "cluster":
        seed = topology.url.removeprefix("redis+cluster://").split(",")[0]
        host, port = seed.split(":")
        with RedisCluster(host=host, port=int(port)) as cluster:
            return cluster.hgetall(key)  # type: ignore[no-any-return]
    with redis.Redis.from_url(_primary_url(topology)) as client:
        return client.hgetall(key)  # type: ignore[no-any-return]


def _primary_url(topology: Topology) -> str:
    if topology.name != "sentinel":
        return topology.url
    hosts, service = topology.url.removeprefix("redis+sentinel://").split("/")
    host, port = hosts.split(",")[0].split(":")
    with redis.Redis(host=host, port=int(port)) as watcher:
        _, primary_port = watcher.sentinel_get_master_addr_by_name(service)
    return f"redis://127.0.0.1:{int(primary_port)}"


def test_the_tree_is_kept_where_the_layout_says(
    topology_servers: TopologyServers, server: ServerProcess
) -> None:
    """With tiles, a signed head's tree is in the tiles and Redis keeps its head alone; else in Redis."""
    with server.client("auditor") as reader:
        head = signed_head(reader.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head)
    stored = tree_head(topology_servers.topology)
    assert int(stored[b"size"]) >= head.head.size > 0
    if topology_servers.tiles is None:
        assert stored.get(b"nodes") != TILED
        return
    assert stored[b"nodes"] == TILED
    assert int((topology_servers.tiles / "default" / SIZE_FILE).read_text()) >= head.head.size

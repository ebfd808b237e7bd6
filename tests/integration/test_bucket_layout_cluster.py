"""A tenant's bucket layout on a real Cluster: labels on their slots, buckets spread evenly.

The labels' slots are the Cluster's own ``CLUSTER KEYSLOT`` answers for the bucket keys, not
redis-py's CRC16; ``buckets status --json`` reports the buckets each of the 3 primaries holds;
and the mirror of redis-cli's slot split that ``tests/unit/store/test_bucket_layouts.py`` checks the
evenness of N = 3..100 primaries with is held to a real ``redis-cli --cluster create``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import redis

from idverify.store.buckets import RedisBucketLayouts, bucket_slot, node_shares, search_layout
from idverify.store.connection import close_client, connect
from idverify.store.keys import BucketKeys
from idverify.store.local_topologies import LocalCluster
from idverify.testing import RedisProcess, free_port, redis_server_binary
from tests.bucket_splits import redis_cli_split
from tests.unit.test_cli import idverify

pytestmark = pytest.mark.slow


def test_every_labels_bucket_keys_are_on_the_buckets_slot_by_the_clusters_own_count(
    redis_cluster: LocalCluster,
) -> None:
    with redis.Redis(port=redis_cluster.primary_nodes[0].port) as node:
        for tenant in ("default", "acme"):
            layout = search_layout(tenant)
            pipe = node.pipeline(transaction=False)
            for label in layout.labels:
                pipe.execute_command("CLUSTER KEYSLOT", BucketKeys(tenant, label).audit_stage())
            slots = pipe.execute()
            assert slots == [bucket_slot(tenant, bucket) for bucket in range(len(layout.labels))]


async def test_buckets_status_reports_each_primarys_share(redis_cluster: LocalCluster) -> None:
    client = connect(redis_cluster.url)
    try:
        layouts = RedisBucketLayouts(client)
        layout = await layouts.plan("spread-status")
        owners = await layouts.slot_owners()
    finally:
        await close_client(client)
    assert owners is not None
    done = idverify(
        "buckets", "--redis-url", redis_cluster.url, "status", "--tenant", "spread-status", "--json"
    )
    assert (done.returncode, done.stderr) == (0, "")
    report = json.loads(done.stdout)
    assert (report["state"], report["count"], report["cluster"]) == ("planned", 1024, True)
    assert report["legacy"] == "no log"
    held = {share["node"]: share["buckets"] for share in report["primaries"]}
    assert held == {share.node: share.buckets for share in node_shares(layout, owners)}
    assert sum(held.values()) == 1024
    assert set(held.values()) <= {341, 342}
    assert report["worst_deviation"] <= 3 / 1024
    text = idverify("buckets", "--redis-url", redis_cluster.url, "status", "--tenant", "spread-status")
    assert text.returncode == 0
    assert text.stdout.splitlines()[0] == "tenant spread-status: 1024 buckets, layout planned"
    assert len(text.stdout.splitlines()) == 6  # the head, the legacy data, three primaries, the deviation


def port_with_its_bus_port() -> int:
    """A free port whose bus port (port + 10000, which redis-cli's CLUSTER MEET assumes) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_the_mirror_of_redis_clis_split_is_what_redis_cli_does(tmp_path: Path) -> None:
    """Seven primaries: 16384/7 is not a whole number, so single-precision rounding shows."""
    binary = redis_server_binary(prefer_system=True)
    nodes = []
    try:
        for index in range(7):
            port = port_with_its_bus_port()
            node = RedisProcess(
                tmp_path / f"node-{index}",
                port=port,
                binary=binary,
                extra_args=["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"],
            )
            nodes.append(node)
            node.start()
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        with redis.Redis(port=nodes[0].port) as client:
            ranges = sorted(
                (int(first), int(last)) for first, last, *_ in client.execute_command("CLUSTER SLOTS")
            )
    finally:
        for node in nodes:
            node.stop()
    assert ranges == redis_cli_split(7)

"""A local Cluster with one replica a primary, and the moves of a failover test on it.

The failover tests (``tests/integration/test_audit_stage_failover.py``,
``test_cancel_failover.py``) kill a primary with SIGKILL at a boundary of what they test, wait
until its replica serves its slots, and start it again as a replica; or cut a replica off first,
so that what the primary writes meanwhile is its alone.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.crc import key_slot

from idverify.store.local_topologies import LocalCluster, wait_until
from idverify.testing import RedisProcess

__all__ = [
    "FAILOVER_SECONDS",
    "failover_cluster",
    "kill_primary",
    "promoted",
    "rejoin",
    "replica_cut_off",
    "replicated",
    "serving",
]

FAILOVER_SECONDS = 60.0


def failover_cluster(directory: Path) -> LocalCluster:
    """Three primaries with a replica each, quick to fail over (a node is judged dead after 1 s)."""
    return LocalCluster(directory, replicas_per_primary=1, node_timeout_ms=1000)


def _nodes(port: int) -> dict[str, dict[str, object]]:
    with redis.Redis(port=port, socket_timeout=2) as client:
        return dict(client.execute_command("CLUSTER NODES"))


def _agreed_primary(cluster: LocalCluster, key: str) -> RedisProcess | None:
    """The node every live node names as the primary of ``key``'s slot, None while they differ."""
    slot = key_slot(key.encode())
    found: set[int] = set()
    for node in _live(cluster):
        for address, info in _nodes(node.port).items():
            ranges = info["slots"]
            assert isinstance(ranges, list)
            if "master" in str(info["flags"]) and any(int(r[0]) <= slot <= int(r[-1]) for r in ranges):
                found.add(int(address.rsplit(":", 1)[1]))
    if len(found) != 1:
        return None
    (port,) = found
    return next(node for node in cluster.nodes if node.port == port)


@contextmanager
def replica_cut_off(cluster: LocalCluster, primary: RedisProcess) -> Iterator[RedisProcess]:
    """Cuts ``primary``'s replica off for the block: nothing written meanwhile reaches it.

    The replica is stopped (SIGSTOP) and its link dropped; it runs on when the block ends, so a
    failover can then promote it.
    """
    replica = _replica_of(cluster, primary)
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        with redis.Redis(port=primary.port, socket_timeout=2) as direct:
            direct.client_kill_filter(_type="replica")
        yield replica
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)


def serving(cluster: LocalCluster, key: str) -> RedisProcess:
    """The primary of ``key``'s slot."""
    node = _agreed_primary(cluster, key)
    assert node is not None, key
    return node


def _live(cluster: LocalCluster) -> list[RedisProcess]:
    return [n for n in cluster.nodes if n.process is not None and n.process.poll() is None]


def _replica_of(cluster: LocalCluster, primary: RedisProcess) -> RedisProcess:
    with redis.Redis(port=primary.port, socket_timeout=2) as client:
        port = int(client.info("replication")["slave0"]["port"])
    return next(node for node in cluster.nodes if node.port == port)


def kill_primary(cluster: LocalCluster, key: str) -> RedisProcess:
    """SIGKILLs the primary of ``key``'s slot and waits until its replica serves the slot; the dead node."""
    dead = serving(cluster, key)
    dead.stop(hard=True)
    wait_until(lambda: promoted(cluster, key, dead), "the replica", FAILOVER_SECONDS)
    return dead


def promoted(cluster: LocalCluster, key: str, dead: RedisProcess) -> bool:
    """Whether a node other than ``dead`` serves ``key``'s slot, every live node agreeing, the Cluster ok."""
    serves = _agreed_primary(cluster, key)
    return serves is not None and serves is not dead and cluster.is_ok()


def rejoin(cluster: LocalCluster, dead: RedisProcess) -> None:
    """Starts a killed node again: it learns it lost its slots and syncs as the new primary's replica."""
    dead.start()

    def synced() -> bool:
        with redis.Redis(port=dead.port, socket_timeout=2) as client:
            info = client.info("replication")
        return info["role"] == "slave" and info["master_link_status"] == "up" and cluster.is_ok()

    wait_until(synced, "the killed node to rejoin as a replica", FAILOVER_SECONDS)


def replicated(cluster: LocalCluster) -> None:
    """Waits until every primary's replica holds its writes (what an acknowledged staging step would)."""
    for node in _live(cluster):
        with redis.Redis(port=node.port, socket_timeout=10) as client:
            if client.info("replication")["role"] == "master":
                assert client.wait(1, 5000) == 1

"""Redis topologies the suite starts itself: standalone, a 3-primary Cluster, Sentinel.

``redis_topology`` is parametrized over all three; ``TopologyServers`` starts ``idverify
serve`` processes against one of them that share a keyring and the bootstrap token, the way
replicas of one deployment do. To run another end-to-end test class against every topology,
subclass it in a module here and give it servers from ``topology_servers`` (see
``test_cluster_topologies.py``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from idverify.store.local_topologies import LocalCluster, LocalSentinel
from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary

TOPOLOGIES = ("standalone", "cluster", "sentinel")


@pytest.fixture(scope="session")
def redis_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A standalone redis-server of its own (the suite's shared one is not flushed under others)."""
    directory = tmp_path_factory.mktemp("standalone")
    with RedisProcess(directory, port=free_port(), binary=redis_server_binary(prefer_system=True)) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A Redis Cluster of three primaries on loopback ports."""
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSentinel]:
    """A primary with one replica, watched by one sentinel (never failed over: tests share it)."""
    with LocalSentinel(tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup


@dataclass(frozen=True)
class Topology:
    """A running topology: the URL for ``--redis-url`` and a way to empty it."""

    name: str
    url: str
    flush: Callable[[], None]


@pytest.fixture(scope="module", params=TOPOLOGIES)
def redis_topology(request: pytest.FixtureRequest) -> Topology:
    """Each topology in turn, emptied before the module's servers start on it."""
    name = request.param
    if name == "standalone":
        standalone: RedisProcess = request.getfixturevalue("redis_standalone")

        def flush_standalone() -> None:
            with redis.Redis(port=standalone.port) as client:
                client.flushall()

        topology = Topology(name, standalone.url, flush_standalone)
    elif name == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        topology = Topology(name, cluster.url, cluster.flush)
    else:
        sentinel: LocalSentinel = request.getfixturevalue("redis_sentinel")
        topology = Topology(name, sentinel.url, sentinel.flush)
    topology.flush()
    return topology


@dataclass
class TopologyServers:
    """``idverify serve`` processes on one topology, sharing keyring and bootstrap token."""

    topology: Topology
    root: Path
    running: list[ServerProcess] = field(default_factory=list)

    def start(self, label: str, config: str = "") -> ServerProcess:
        """Starts a server (the default number of workers) with a config of its own.

        Raises:
            RuntimeError: when it does not serve in time.
        """
        server = ServerProcess(self.root / label, config=config, redis_url=self.topology.url)
        if self.running:
            # Later servers join the first one's deployment: same keyring, same admin token,
            # same audit signing key (replicas of one deployment share all three).
            first = self.running[0].data_dir
            server.data_dir.mkdir(parents=True, exist_ok=True)
            for name in ("keyring.json", "bootstrap-token", "audit-signing-key.pem"):
                if (first / name).exists():
                    shutil.copy2(first / name, server.data_dir / name)
        server.start()
        self.running.append(server)
        return server

    def stop(self) -> None:
        """Stops every server."""
        for server in self.running:
            server.stop()


@pytest.fixture(scope="module")
def topology_servers(
    redis_topology: Topology, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TopologyServers]:
    """Starts servers on the module's current topology and stops them afterwards."""
    servers = TopologyServers(redis_topology, tmp_path_factory.mktemp(f"on-{redis_topology.name}"))
    try:
        yield servers
    finally:
        servers.stop()

"""Redis topologies the suite starts itself: standalone, a 3-primary Cluster, Sentinel.

``redis_topology`` is parametrized over all three; ``TopologyServers`` starts ``idverify
serve`` processes against one of them that share a keyring and the bootstrap token, the way
replicas of one deployment do. To run another end-to-end test class against every topology,
subclass it in a module here and give it servers from ``topology_servers`` (see
``test_cluster_topologies.py``).

``audit_layout`` says where the servers keep the audit log's tree: ``redis`` (``audit_tiles_dir``
unset) unless a module parametrizes it indirectly with ``tiles``, which gives the module's
servers one tiles directory of its own, shared as a deployment's replicas share its volume.
Modules where the layout matters (audit proofs, heads, queries, exports) pick the pairs of
topology and layout they run (``test_cluster_audit.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from idverify.audit.tile_mirror import TileMirror
from idverify.audit.tiled_audit_log import TiledAuditLog
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.local_topologies import LocalCluster, LocalSentinel
from idverify.store.scripts import Scripts
from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary

TOPOLOGIES = ("standalone", "cluster", "sentinel")
LAYOUTS = ("redis", "tiles")


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
    ports: tuple[int, ...] = ()  # every node holding data, for scans of what was stored


@pytest.fixture(scope="module", params=TOPOLOGIES)
def redis_topology(request: pytest.FixtureRequest) -> Topology:
    """Each topology in turn (``topology_servers`` empties it before its servers start)."""
    name = request.param
    if name == "standalone":
        standalone: RedisProcess = request.getfixturevalue("redis_standalone")

        def flush_standalone() -> None:
            with redis.Redis(port=standalone.port) as client:
                client.flushall()

        topology = Topology(name, standalone.url, flush_standalone, (standalone.port,))
    elif name == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        topology = Topology(
            name, cluster.url, cluster.flush, tuple(node.port for node in cluster.primary_nodes)
        )
    else:
        sentinel: LocalSentinel = request.getfixturevalue("redis_sentinel")
        topology = Topology(
            name, sentinel.url, sentinel.flush, tuple(server.port for server in sentinel.servers)
        )
    return topology


@pytest.fixture(scope="module")
def audit_layout(request: pytest.FixtureRequest) -> str:
    """``redis``, or the layout a module parametrizes (indirectly) its servers with."""
    layout: str = getattr(request, "param", "redis")
    assert layout in LAYOUTS, layout
    return layout


@dataclass
class TopologyServers:
    """``idverify serve`` processes on one topology, sharing keyring, bootstrap token and tiles."""

    topology: Topology
    root: Path
    tiles: Path | None = None
    running: list[ServerProcess] = field(default_factory=list)

    def start(self, label: str, config: str = "") -> ServerProcess:
        """Starts a server (the default number of workers) with a config of its own.

        Raises:
            RuntimeError: when it does not serve in time.
        """
        if self.tiles is not None:
            config = f'audit_tiles_dir = "{self.tiles}"\n{config}'
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
    redis_topology: Topology, audit_layout: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TopologyServers]:
    """Starts servers on the module's current topology and layout and stops them afterwards.

    The topology is emptied first: pytest keeps ``redis_topology`` across a module's layouts.
    """
    redis_topology.flush()
    root = tmp_path_factory.mktemp(f"on-{redis_topology.name}-{audit_layout}")
    servers = TopologyServers(redis_topology, root, root / "audit-tiles" if audit_layout == "tiles" else None)
    try:
        yield servers
    finally:
        servers.stop()


def tiled_audit_log(client: RedisClient, tiles: Path, *, kept: int) -> TiledAuditLog:
    """The log a server with ``audit_tiles_dir`` builds (``configured_audit_log``), keeping ``kept``.

    A small ``kept`` lets a test's few entries leave Redis for the bundles.
    """
    scripts = Scripts(client)
    mirror = TileMirror(tiles, AuditStore(client, scripts))
    return TiledAuditLog(RedisAuditLog(client, scripts, write_round=mirror.write_round), mirror, kept=kept)


def set_aside_tiles(tenant: str, config: Path, redis_url: str, data_dir: Path) -> str:
    """The operator's documented step, ``idverify audit set-aside-tiles``, on the host; its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}
    host = ("--data-dir", str(data_dir), "--tenant", tenant)
    command = ("set-aside-tiles", "--config", str(config), "--redis-url", redis_url)
    done = subprocess.run(
        [sys.executable, "-m", "idverify", "audit", *host, *command],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout

"""Throwaway Redis topologies on loopback ports, for tests: a Cluster and a Sentinel setup.

Both are built from the machine's ``redis-server`` 7.0 or newer (``RedisProcess``; the cluster
bus port is set with ``--cluster-port``), need no other tool (no ``redis-cli``), and hand out the
URL ``idverify serve --redis-url`` takes:

    with LocalCluster(tmp_path / "cluster") as cluster:          # 3 primaries, all slots
        ServerProcess(tmp_path / "server", redis_url=cluster.url)

    with LocalSentinel(tmp_path / "sentinel") as setup:          # primary, replica, sentinel
        ...
        setup.failover()                                         # and wait for the new primary
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import redis

from idverify.store.embedded import RedisProcess, free_port, redis_server_binary

CLUSTER_SLOTS = 16384
SETUP_TIMEOUT_SECONDS = 30.0


def wait_until(check: Callable[[], bool], what: str, timeout: float = SETUP_TIMEOUT_SECONDS) -> None:
    """Polls ``check`` until it is true.

    Raises:
        TimeoutError: when it is still false after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        time.sleep(0.05)
    msg = f"timed out waiting for {what}"
    raise TimeoutError(msg)


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1)


def _info(port: int, section: str) -> dict[str, Any]:
    with _client(port) as client:
        return dict(client.info(section))


class _Topology(ABC):
    """Started on entering ``with`` and stopped on leaving it; a start that fails stops what it started."""

    @abstractmethod
    def start(self) -> None:
        """Starts every process and waits until the topology serves."""

    @abstractmethod
    def stop(self) -> None:
        """Stops every process (those not started are passed over)."""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass
class LocalCluster(_Topology):
    """A Redis Cluster of ``primaries`` nodes (and optional replicas) on loopback ports.

    Attributes:
        directory: one sub-directory per node for its AOF and nodes.conf.
        primaries: how many primaries share the 16384 slots.
        replicas_per_primary: replicas of each primary.
        node_timeout_ms: how soon a silent node counts as failing.
    """

    directory: Path
    primaries: int = 3
    replicas_per_primary: int = 0
    node_timeout_ms: int = 2000
    binary: str = ""
    nodes: list[RedisProcess] = field(default_factory=list)
    bus_ports: dict[int, int] = field(default_factory=dict)

    @property
    def primary_nodes(self) -> list[RedisProcess]:
        """The nodes started as primaries."""
        return self.nodes[: self.primaries]

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every primary as a seed node."""
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.primary_nodes)
        return f"redis+cluster://{seeds}"

    def start(self) -> None:
        """Starts the nodes, assigns the slots, joins them and waits for ``cluster_state:ok``.

        Raises:
            RuntimeError: when a node does not start.
            TimeoutError: when the cluster does not converge in time.
        """
        binary = self.binary or redis_server_binary(prefer_system=True)
        total = self.primaries * (1 + self.replicas_per_primary)
        for index in range(total):
            port, bus_port = free_port(), free_port()
            self.bus_ports[port] = bus_port
            node = RedisProcess(
                self.directory / f"node-{index}",
                port=port,
                binary=binary,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    str(self.node_timeout_ms),
                    # The bus port defaults to port + 10000, which fails for ports above 55535.
                    "--cluster-port",
                    str(bus_port),
                ],
            )
            self.nodes.append(node)
            node.start()
        share = CLUSTER_SLOTS // self.primaries
        for index, node in enumerate(self.primary_nodes):
            first = index * share
            last = CLUSTER_SLOTS - 1 if index == self.primaries - 1 else first + share - 1
            with _client(node.port) as client:
                client.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
        with _client(self.nodes[0].port) as seed:
            for node in self.nodes[1:]:
                seed.execute_command("CLUSTER MEET", "127.0.0.1", node.port, self.bus_ports[node.port])
        wait_until(self._all_known, "every node to know the others")
        for index, replica in enumerate(self.nodes[self.primaries :]):
            primary = self.primary_nodes[index % self.primaries]
            with _client(primary.port) as client:
                primary_id = client.execute_command("CLUSTER MYID").decode()
            with _client(replica.port) as client:
                client.execute_command("CLUSTER REPLICATE", primary_id)
        wait_until(self.is_ok, "cluster_state:ok")

    def _all_known(self) -> bool:
        return all(
            int(_cluster_info(node.port)["cluster_known_nodes"]) == len(self.nodes) for node in self.nodes
        )

    def is_ok(self) -> bool:
        """Whether every node reports ``cluster_state:ok`` with all slots assigned."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            info = _cluster_info(node.port)
            if info["cluster_state"] != "ok" or int(info["cluster_slots_assigned"]) != CLUSTER_SLOTS:
                return False
        return True

    def flush(self) -> None:
        """Empties every primary (between tests that must not see each other's data)."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                with _client(node.port) as client, contextlib.suppress(redis.ReadOnlyError):
                    client.flushall()

    def stop(self) -> None:
        """Stops every node."""
        for node in self.nodes:
            node.stop()


def _cluster_info(port: int) -> dict[str, str]:
    with _client(port) as client:
        raw = client.execute_command("CLUSTER INFO")
    if isinstance(raw, dict):  # redis-py parses this reply already
        return {str(k): v.decode() if isinstance(v, bytes) else str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.split() if ":" in line)


@dataclass
class SentinelProcess:
    """One ``redis-server --sentinel`` watching a primary under a service name."""

    directory: Path
    port: int
    service: str
    primary_port: int
    quorum: int = 1
    down_after_ms: int = 1000
    failover_timeout_ms: int = 5000
    binary: str = ""
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Writes its config (Sentinel rewrites it as it learns) and waits for PING.

        Raises:
            RuntimeError: when it exits at once.
            TimeoutError: when it does not answer in time.
        """
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = self.directory / "sentinel.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "daemonize no",
                    f"dir {self.directory}",
                    f"logfile {self.directory / 'sentinel.log'}",
                    f"sentinel monitor {self.service} 127.0.0.1 {self.primary_port} {self.quorum}",
                    f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
                    f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {self.service} 1",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        binary = self.binary or redis_server_binary(prefer_system=True)
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and config
            [binary, str(config), "--sentinel"], stdin=subprocess.DEVNULL, start_new_session=True
        )

        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                msg = f"sentinel exited with {self.process.returncode}; see {self.directory}"
                raise RuntimeError(msg)
            with _client(self.port) as client:
                return bool(client.ping())

        wait_until(answers, f"sentinel on port {self.port}")

    def stop(self) -> None:
        """Stops it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class LocalSentinel(_Topology):
    """A primary, its replicas and the sentinels that watch them, on loopback ports.

    Attributes:
        directory: one sub-directory per process.
        replicas: replicas of the primary (a failover needs at least one).
        sentinels: sentinel processes; the quorum is a majority of them.
        service: the name the sentinels know the primary by.
        down_after_ms: how soon a silent primary counts as down.
    """

    directory: Path
    replicas: int = 1
    sentinels: int = 1
    service: str = "idverify"
    down_after_ms: int = 1000
    binary: str = ""
    servers: list[RedisProcess] = field(default_factory=list)
    watchers: list[SentinelProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``redis+sentinel://`` naming every sentinel and the service."""
        hosts = ",".join(f"127.0.0.1:{watcher.port}" for watcher in self.watchers)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> None:
        """Starts the primary, the replicas (waiting for their sync) and the sentinels.

        Raises:
            RuntimeError: when a process does not start.
            TimeoutError: when replication or discovery does not settle in time.
        """
        binary = self.binary or redis_server_binary(prefer_system=True)
        primary = RedisProcess(self.directory / "server-0", port=free_port(), binary=binary)
        self.servers.append(primary)
        primary.start()
        for index in range(1, self.replicas + 1):
            replica = RedisProcess(
                self.directory / f"server-{index}",
                port=free_port(),
                binary=binary,
                extra_args=["--replicaof", "127.0.0.1", str(primary.port)],
            )
            self.servers.append(replica)
            replica.start()
        wait_until(lambda: self._replicas_in_sync(primary.port), "replicas to sync")
        quorum = self.sentinels // 2 + 1
        for index in range(self.sentinels):
            watcher = SentinelProcess(
                self.directory / f"sentinel-{index}",
                port=free_port(),
                service=self.service,
                primary_port=primary.port,
                quorum=quorum,
                down_after_ms=self.down_after_ms,
                binary=binary,
            )
            self.watchers.append(watcher)
            watcher.start()
        wait_until(self.settled, "sentinels to see the primary, its replicas and each other")

    def _replicas_in_sync(self, primary_port: int) -> bool:
        info = _info(primary_port, "replication")
        online = [
            v
            for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict) and v["state"] == "online"
        ]
        return len(online) >= self.replicas

    def primary_port(self) -> int:
        """The port of the primary the first live sentinel names now."""
        for watcher in self.watchers:
            if watcher.process is None or watcher.process.poll() is not None:
                continue
            with _client(watcher.port) as client:
                address = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.service)
            if address:
                return int(address[1])
        msg = "no sentinel answers"
        raise RuntimeError(msg)

    def server_on(self, port: int) -> RedisProcess:
        """The server process listening on a port."""
        return next(server for server in self.servers if server.port == port)

    def settled(self) -> bool:
        """Whether every sentinel agrees on a writable primary and sees every live replica."""
        port = self.primary_port()
        if _info(port, "replication").get("role") != "master" or not self._replicas_in_sync(port):
            return False
        for watcher in self.watchers:
            with _client(watcher.port) as client:
                if int(client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.service)[1]) != port:
                    return False
                state = client.sentinel_master(self.service)  # parsed into a dict by redis-py
                if int(state["num-slaves"]) < self.replicas:
                    return False
                # A failover needs a replica this sentinel talks to itself, not one it only heard of.
                usable = [
                    r
                    for r in client.sentinel_slaves(self.service)
                    if not r["is_sdown"] and not r["is_disconnected"] and r["master-link-status"] == "ok"
                ]
                if len(usable) < self.replicas:
                    return False
                if int(state["num-other-sentinels"]) < self.sentinels - 1:
                    return False
        return True

    def failover(self, timeout: float = SETUP_TIMEOUT_SECONDS) -> int:
        """Asks the sentinels for a failover and waits until a replica is the writable primary.

        Returns:
            the new primary's port.

        Raises:
            TimeoutError: when no new primary is in place in time.
        """
        before = self.primary_port()
        with _client(self.watchers[0].port) as client:
            client.execute_command("SENTINEL FAILOVER", self.service)
        wait_until(lambda: self._promoted(before), "a new writable primary", timeout)
        return self.primary_port()

    def wait_promoted(self, old_port: int, timeout: float = SETUP_TIMEOUT_SECONDS) -> int:
        """Waits until a server other than ``old_port`` is the writable primary (after a crash).

        Raises:
            TimeoutError: when no new primary is in place in time.
        """
        wait_until(lambda: self._promoted(old_port), "a new writable primary", timeout)
        return self.primary_port()

    def _promoted(self, old_port: int) -> bool:
        port = self.primary_port()
        return port != old_port and _info(port, "replication").get("role") == "master"

    def flush(self) -> None:
        """Empties the current primary (its replicas follow)."""
        with _client(self.primary_port()) as client:
            client.flushall()

    def stop(self) -> None:
        """Stops the sentinels first (so that they start no failover), then the servers."""
        for watcher in self.watchers:
            watcher.stop()
        for server in self.servers:
            server.stop()

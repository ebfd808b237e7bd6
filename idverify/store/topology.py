"""Which Redis servers a URL names, and a client for them: standalone, Cluster or Sentinel.

Accepted URLs (the password may also come from the file named by ``IDVERIFY_REDIS_PASSWORD_FILE``
or from ``IDVERIFY_REDIS_PASSWORD``, which keep it out of settings and config maps):

- ``redis://[user[:password]@]host:port[/db]``, ``rediss://...``, ``unix:///path?db=0``:
  one server, as redis-py reads them.
- ``redis+cluster://[user[:password]@]host:port[,host:port...]``: Redis Cluster, found from
  any of the seed nodes (``rediss+cluster://`` for TLS). Cluster has no databases but 0.
- ``redis+sentinel://[user[:password]@]host:port[,host:port...]/service[/db]``: the primary
  that the sentinels name for ``service`` (``rediss+sentinel://`` for TLS to the data nodes).

Query options on any of them: ``wait_replicas`` (replicas that must acknowledge a step whose
result must not be lost before it is reported done; default 1 for sentinel, else 0),
``wait_timeout_ms`` (default 500) and, for TLS, ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile``.

Every client is created inside the running event loop, fails fast, and retries nothing: a
script that ran but whose reply was lost must not run twice, and only the caller knows which
steps are idempotent.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import hiredis
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from idverify.domain.errors import ConfigError

PASSWORD_ENV = "IDVERIFY_REDIS_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
PASSWORD_FILE_ENV = "IDVERIFY_REDIS_PASSWORD_FILE"  # noqa: S105 - likewise
# Fail fast: a signup flow would rather get UNAVAILABLE in a second than hang.
CONNECT_TIMEOUT_SECONDS = 1.0
COMMAND_TIMEOUT_SECONDS = 3.0
POOL_WAIT_SECONDS = 2.0
DEFAULT_WAIT_TIMEOUT_MS = 500
# A connection idle this long answers a PING before it carries a command (one round trip).
IDLE_PROBE_SECONDS = 1.0
# redis-py's cluster client has no blocking pool: it raises when a node's pool is exhausted.
# Each call holds at most one connection at a time, so this many per node exceeds what the
# server's max_concurrent_rpcs (256 by default) and the health probe can ever ask for at once.
CLUSTER_CONNECTIONS_PER_NODE = 320
_OWN_OPTIONS = frozenset({"wait_replicas", "wait_timeout_ms"})
_TLS_OPTIONS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile"})

RedisClient = aioredis.Redis


class TopologyKind(Enum):
    """How the servers behind a URL are arranged."""

    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


@dataclass(frozen=True, slots=True)
class ReplicaAck:
    """How many replicas must hold a step's writes before the step is reported done.

    Attributes:
        replicas: 0 to acknowledge on the primary's word alone (replication stays asynchronous).
        timeout_ms: how long to wait for them before the step fails as unavailable.
    """

    replicas: int = 0
    timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS


@dataclass(frozen=True, slots=True)
class RedisTopology:
    """A parsed Redis URL.

    Attributes:
        kind: standalone, cluster or sentinel.
        url: for standalone, the URL redis-py reads (our own options removed).
        nodes: cluster seed nodes or sentinels, as (host, port).
        service: the sentinel service name.
        db: database number (sentinel; always 0 on cluster).
        username: ACL user, or empty.
        tls: TLS to the data nodes.
        tls_options: ``ssl_*`` options for redis-py.
        ack: replica acknowledgement of steps that must not be lost.
    """

    kind: TopologyKind
    url: str = ""
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str = ""
    tls: bool = False
    tls_options: Mapping[str, str] = field(default_factory=dict)
    ack: ReplicaAck = ReplicaAck()
    _password: str = field(default="", repr=False)

    @property
    def password(self) -> str:
        """The URL's password, else the password file's, else ``IDVERIFY_REDIS_PASSWORD``.

        Never part of repr. The file (a mounted Secret) is read at each connect, so a rotated
        password is picked up by new connections.

        Raises:
            ConfigError: when the named password file cannot be read.
        """
        if self._password:
            return self._password
        path = os.environ.get(PASSWORD_FILE_ENV, "")
        if path:
            try:
                with open(path, encoding="utf-8") as handle:  # noqa: PTH123 - one small read
                    return handle.read().strip()
            except OSError as exc:
                raise ConfigError(f"{PASSWORD_FILE_ENV}: cannot read {path}: {exc.strerror}") from exc
        return os.environ.get(PASSWORD_ENV, "")


def parse_redis_url(url: str) -> RedisTopology:
    """Reads one of the accepted URL forms (see the module docstring).

    Raises:
        ConfigError: on an unknown scheme, a malformed node list or a bad option.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme in {"redis", "rediss", "unix"}:
        return _standalone(parts, options)
    if scheme not in {"redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel"}:
        raise ConfigError(
            "redis_url: expected redis://, rediss://, unix://, redis+cluster:// or redis+sentinel:// "
            f"(got scheme {parts.scheme!r})"
        )
    unknown = set(options) - _OWN_OPTIONS - _TLS_OPTIONS
    if unknown:
        raise ConfigError(f"redis_url: unknown option(s) {', '.join(sorted(unknown))}")
    sentinel = scheme.endswith("sentinel")
    nodes = _nodes(parts.netloc.rpartition("@")[2], default_port=26379 if sentinel else 6379)
    username, password = _credentials(parts.netloc)
    path = [p for p in parts.path.split("/") if p]
    if sentinel:
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):  # noqa: PLR2004
            raise ConfigError("redis_url: sentinel URLs end in /<service>[/<db>]")
        service, db = unquote(path[0]), int(path[1]) if len(path) == 2 else 0  # noqa: PLR2004
    else:
        if path and path != ["0"]:
            raise ConfigError("redis_url: Redis Cluster has only database 0")
        service, db = "", 0
    tls = scheme.startswith("rediss")
    return RedisTopology(
        kind=TopologyKind.SENTINEL if sentinel else TopologyKind.CLUSTER,
        nodes=nodes,
        service=service,
        db=db,
        username=username,
        tls=tls,
        tls_options={k: v for k, v in options.items() if k in _TLS_OPTIONS},
        ack=_ack(options, default_replicas=1 if sentinel else 0),
        _password=password,
    )


def _standalone(parts: Any, options: dict[str, str]) -> RedisTopology:
    ack = _ack(options, default_replicas=0)
    # redis-py rejects options it does not know, so ours are taken out of the URL it reads
    # (rebuilt by hand: urlunsplit drops the // of unix:///path).
    kept = urlencode([(k, v) for k, v in options.items() if k not in _OWN_OPTIONS])
    plain = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{kept}" if kept else "")
    username, password = _credentials(parts.netloc)
    return RedisTopology(
        kind=TopologyKind.STANDALONE, url=plain, username=username, ack=ack, _password=password
    )


def _nodes(text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in text.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep:
            host, port = item.strip(), str(default_port)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:  # noqa: PLR2004
            raise ConfigError(f"redis_url: expected host:port in the node list, got {item!r}")
        nodes.append((host, int(port)))
    return tuple(nodes)


def _credentials(netloc: str) -> tuple[str, str]:
    userinfo, sep, _ = netloc.rpartition("@")
    if not sep:
        return "", ""
    username, _, password = userinfo.partition(":")
    return unquote(username), unquote(password)


def _ack(options: Mapping[str, str], default_replicas: int) -> ReplicaAck:
    try:
        replicas = int(options.get("wait_replicas", default_replicas))
        timeout_ms = int(options.get("wait_timeout_ms", DEFAULT_WAIT_TIMEOUT_MS))
    except ValueError as exc:
        raise ConfigError("redis_url: wait_replicas and wait_timeout_ms are integers") from exc
    if replicas < 0 or timeout_ms < 1:
        raise ConfigError("redis_url: wait_replicas >= 0 and wait_timeout_ms >= 1")
    return ReplicaAck(replicas=replicas, timeout_ms=timeout_ms)


class _HiredisPacking:
    """Packs commands with hiredis, as redis-py's synchronous client does and its asyncio one not.

    A batch read sends a hundred keys and more in one script call; redis-py's Python packer takes
    many times as long as hiredis' for such a command (docs/PERFORMANCE.md).
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        """The command in the Redis protocol, as one buffer."""
        if isinstance(args[0], str):
            args = tuple(args[0].encode().split()) + args[1:]
        elif b" " in args[0]:
            args = tuple(args[0].split()) + args[1:]
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise redis_errors.DataError(str(exc)) from exc


_HIREDIS_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _packing_with_hiredis(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    packing = _HIREDIS_PACKING.get(connection_class)
    if packing is None:
        name = f"Hiredis{connection_class.__name__}"
        packing = _HIREDIS_PACKING[connection_class] = type(name, (_HiredisPacking, connection_class), {})
    return packing


class _CheckedPool(aioredis.BlockingConnectionPool):
    """A blocking pool that never hands out a connection Redis has already dropped.

    redis-py checks a pooled connection for a clean end of stream it has already read, which
    misses two cases after Redis restarts: a reset (``kill -9`` of a busy Redis makes the
    kernel answer with RST, and the next command fails writing) and a close the worker's loop
    has not read yet. Either way the next command would fail although Redis is back. A
    connection whose transport has closed is reopened, and one idle longer than
    ``IDLE_PROBE_SECONDS`` answers a PING first. Only the probe is repeated, never a command:
    a script that ran but whose reply was lost must not run twice.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection_class = _packing_with_hiredis(self.connection_class)
        self._idle_since: weakref.WeakKeyDictionary[AbstractConnection, float] = weakref.WeakKeyDictionary()

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        """Reopens a connection that is closed or fails its probe, then lets redis-py check it."""
        idle_since = self._idle_since.pop(connection, None)
        writer = getattr(connection, "_writer", None)
        if writer is not None and writer.transport.is_closing():
            await connection.disconnect()
        elif (
            writer is not None
            and idle_since is not None
            and time.monotonic() - idle_since > IDLE_PROBE_SECONDS
        ):
            try:
                await connection.send_command("PING", check_health=False)
                await connection.read_response()
            except (
                redis_errors.ConnectionError,
                redis_errors.TimeoutError,
                redis_errors.ResponseError,
                OSError,
            ):
                # Any answer but PONG: start afresh, and let the reconnect report what is wrong.
                await connection.disconnect()
        await super().ensure_connection(connection)

    async def release(self, connection: AbstractConnection) -> None:
        """Notes when the connection went idle."""
        self._idle_since[connection] = time.monotonic()
        await super().release(connection)


class _BlockingSentinelPool(SentinelConnectionPool, _CheckedPool):
    """A sentinel-managed pool that waits for a free connection instead of raising.

    The method resolution order puts the sentinel's address discovery in front of the blocking
    pool's waiting, which is exactly the combination redis-py does not ship.
    """


class _SentinelManagedRedis(aioredis.Redis):
    """A primary's client that also closes its connections to the sentinels."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Closes the primary's pool, then the sentinel clients."""
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            await self.sentinels.aclose()


async def close_client(client: RedisClient) -> None:
    """Closes a client :func:`open_client` made, with its connections.

    A cluster client closes its nodes' connections itself and takes no argument; the others were
    given their pool explicitly, so closing the client alone would leave its sockets open.
    """
    if isinstance(client, aioredis.RedisCluster):
        await client.aclose()
    else:
        await client.aclose(close_connection_pool=True)


def open_client(topology: RedisTopology, *, pool_size: int) -> RedisClient:
    """A client for the topology, with a bounded pool and no retries.

    The cluster client is returned under the standalone client's type: every command idverify
    sends names keys of one hash slot (or none), which both clients serve with the same API.
    """
    if topology.kind is TopologyKind.STANDALONE:
        pool = _CheckedPool.from_url(
            topology.url,
            max_connections=pool_size,
            timeout=POOL_WAIT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=COMMAND_TIMEOUT_SECONDS,
            health_check_interval=0,
            decode_responses=False,
            **({"password": topology.password} if topology.password else {}),
        )
        return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes its connections
    common: dict[str, Any] = {
        "username": topology.username or None,
        "password": topology.password or None,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": COMMAND_TIMEOUT_SECONDS,
        "decode_responses": False,
    }
    if topology.tls:
        common |= {"ssl": True, **topology.tls_options}
    if topology.kind is TopologyKind.CLUSTER:
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in topology.nodes],
            max_connections=CLUSTER_CONNECTIONS_PER_NODE,
            retry=Retry(NoBackoff(), 0),
            **common,
        )
        return cast("RedisClient", cluster)
    sentinel_auth = {"password": topology.password} if topology.password else {}
    sentinel = Sentinel(
        list(topology.nodes),
        sentinel_kwargs={
            "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "socket_timeout": CONNECT_TIMEOUT_SECONDS,
            **sentinel_auth,
        },
    )
    client = sentinel.master_for(
        topology.service,
        redis_class=_SentinelManagedRedis,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=pool_size,
        timeout=POOL_WAIT_SECONDS,
        db=topology.db,
        **common,
    )
    client.sentinels = sentinel
    return cast("RedisClient", client)


def is_cluster(client: object) -> bool:
    """Whether a client from :func:`open_client` talks to Redis Cluster."""
    return isinstance(client, RedisCluster)

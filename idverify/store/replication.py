"""Steps whose result must survive a failover: run the script, then WAIT for replicas.

Redis replicates asynchronously, so a primary that acknowledges a write and then loses its
role (a Sentinel failover, a Cluster failover) can take the write with it: the promoted
replica never saw it, and the old primary discards it when it rejoins as a replica. WAIT after
the write, on the same connection, turns "the primary has it" into "N replicas have it": a
step is reported done only then, and otherwise fails as unavailable so that the caller retries
(every acknowledged step is idempotent on retry: a repeated answer finds the verification
already decided).

WAIT counts the replicas that hold *this connection's* writes, so the script and the WAIT go
in one pipeline: one connection on a standalone or sentinel-managed primary, and on Cluster
one connection to the node that owns the step's hash slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from idverify.domain.errors import StoreUnavailable
from idverify.store.topology import RedisClient, ReplicaAck


async def run_acknowledged(
    client: RedisClient,
    script: AsyncScript,
    keys: Sequence[str],
    args: Sequence[str | int | bytes],
    ack: ReplicaAck,
) -> Any:
    """Runs a script and returns its result once ``ack.replicas`` replicas hold its writes.

    Raises:
        StoreUnavailable: when fewer replicas acknowledged within ``ack.timeout_ms`` (the
            write may or may not survive a failover, so it is not reported done).
        redis.exceptions.RedisError: whatever the script itself raised.
    """
    for attempt in range(2):
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        result, acked = await _then_wait(client, keys[0], command, ack)
        if isinstance(result, NoScriptError) and attempt == 0:
            # A restarted or promoted server has an empty script cache; loading is idempotent.
            await client.script_load(script.script)
            continue
        return _acknowledged(result, acked, ack)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def command_acknowledged(
    client: RedisClient, key: str, command: Sequence[str | int | bytes], ack: ReplicaAck
) -> Any:
    """Runs one plain write ``command`` on ``key`` and returns its reply once ``ack.replicas`` hold it.

    Raises:
        StoreUnavailable: as :func:`run_acknowledged`.
        redis.exceptions.RedisError: whatever the command itself raised.
    """
    return _acknowledged(*await _then_wait(client, key, command, ack), ack)


def _acknowledged(result: Any, acked: int, ack: ReplicaAck) -> Any:
    if isinstance(result, Exception):
        raise result
    if acked < ack.replicas:
        raise StoreUnavailable(
            f"redis unavailable: {acked} of {ack.replicas} replica(s) acknowledged in time"
        )
    return result


async def _then_wait(
    client: RedisClient, key: str, command: Sequence[str | int | bytes], ack: ReplicaAck
) -> tuple[Any, int]:
    if isinstance(client, RedisCluster):
        await client.initialize()  # a no-op once the slot map is known; needed before the lookup
        node = client.get_node_from_key(key)
        async with client.pipeline() as cluster_pipe:
            # The cluster pipeline refuses its evalsha() method (it cannot know the script's
            # keys in general); given as a command, EVALSHA is routed by its first key.
            cluster_pipe.execute_command(*command)
            cluster_pipe.execute_command("WAIT", ack.replicas, ack.timeout_ms, target_nodes=node)
            result, acked = await cluster_pipe.execute(raise_on_error=False)
    else:
        async with client.pipeline(transaction=False) as pipe:
            pipe.execute_command(*command)
            pipe.execute_command("WAIT", ack.replicas, ack.timeout_ms)
            result, acked = await pipe.execute(raise_on_error=False)
    return result, int(acked) if isinstance(acked, int) else 0

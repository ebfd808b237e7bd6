"""Redis's own persistence, driven for backups: a fresh RDB snapshot, and an RDB turned into the AOF.

``backup create`` has the embedded Redis write an RDB (``BGSAVE``: a fork, so serving goes on);
``backup restore`` loads one into a redis-server with the append-only file off, then turns it on,
which writes the AOF the restored server reads. Both wait on ``INFO persistence``.
"""

from __future__ import annotations

import asyncio
import time

import redis
from redis.exceptions import ResponseError

from idverify.store.connection import RedisClient, translate_errors
from idverify.store.embedded import RedisProcess

__all__ = ["AOF_TIMEOUT_SECONDS", "SAVE_TIMEOUT_SECONDS", "rdb_to_aof", "snapshot_rdb"]

SAVE_TIMEOUT_SECONDS = 600.0
AOF_TIMEOUT_SECONDS = 600.0
_POLL_SECONDS = 0.05


async def snapshot_rdb(redis: RedisClient) -> None:
    """Has Redis write a fresh RDB snapshot and waits for it.

    Raises:
        RuntimeError: when the snapshot fails or does not finish in time.
    """
    deadline = time.monotonic() + SAVE_TIMEOUT_SECONDS
    while True:
        try:
            async with translate_errors():
                await redis.bgsave()
            break
        except ResponseError as error:
            # Another snapshot or an AOF rewrite is running: ours starts after it.
            if "in progress" not in str(error) or time.monotonic() > deadline:
                raise RuntimeError(f"redis cannot snapshot: {error}") from None
            await asyncio.sleep(_POLL_SECONDS)
    while True:
        async with translate_errors():
            info = await redis.info("persistence")
        if not int(info["rdb_bgsave_in_progress"]):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("redis's snapshot did not finish in time")
        await asyncio.sleep(_POLL_SECONDS)
    if info["rdb_last_bgsave_status"] != "ok":
        raise RuntimeError("redis's snapshot failed; see its log (redis/redis.log in the data directory)")


def rdb_to_aof(process: RedisProcess) -> None:
    """Loads the RDB in ``process.directory`` and writes the append-only file the server reads.

    Raises:
        RuntimeError: when the server does not start or the AOF is not written in time.
    """
    process.extra_args = ["--appendonly", "no"]
    with process:
        client = redis.Redis(unix_socket_path=str(process.socket_path))
        try:
            client.config_set("appendonly", "yes")
            deadline = time.monotonic() + AOF_TIMEOUT_SECONDS
            while True:
                info = client.info("persistence")
                if (
                    int(info["aof_enabled"])
                    and not int(info["aof_rewrite_in_progress"])
                    and not int(info["aof_rewrite_scheduled"])
                ):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("redis did not write the append-only file in time")
                time.sleep(_POLL_SECONDS)
            if info.get("aof_last_bgrewrite_status", "ok") != "ok":
                raise RuntimeError(f"redis could not write the append-only file; see {process.directory}")
        finally:
            client.close()

"""A snapshot opened in a throwaway redis-server: a copy, on a free loopback port, gone afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from idverify.store.connection import RedisClient, close_client, connect
from idverify.store.embedded import RedisProcess, free_port

__all__ = ["opened_snapshot"]


@contextlib.asynccontextmanager
async def opened_snapshot(rdb: Path) -> AsyncIterator[RedisClient]:
    """A client of a private redis-server that loaded a copy of ``rdb`` (without AOF).

    Raises:
        RuntimeError: when the server does not start (an RDB it cannot load: see its log).
    """
    with tempfile.TemporaryDirectory(prefix="idverify-snapshot-") as folder:
        shutil.copyfile(rdb, Path(folder) / "idverify.rdb")
        # The later --appendonly wins: the snapshot is read from the RDB, and nothing is written.
        process = RedisProcess(Path(folder), port=free_port(), extra_args=["--appendonly", "no"])
        await asyncio.to_thread(process.start)
        client = connect(process.url, pool_size=2)
        try:
            yield client
        finally:
            await close_client(client)
            await asyncio.to_thread(process.stop)

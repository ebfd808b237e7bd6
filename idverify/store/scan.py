"""SCAN in pages, the same on a single server and on Cluster: the one place a key walk meets redis-py.

Key walks (re-indexing, usage counts, incident holdings, tenant removal, key checks) go page by
page, so each holds Redis briefly and a long walk can report progress or stop early.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from redis.asyncio.cluster import RedisCluster

from idverify.store.connection import RedisClient, translate_errors

__all__ = ["scan_pages"]


async def scan_pages(
    redis: RedisClient, pattern: str, *, cursor: int = 0, count: int = 500
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """Pages of the keys matching ``pattern``, each with the cursor that follows it (0 at the end).

    On Redis Cluster the pages come from every primary and the cursor is always 0: the scan
    cannot be resumed there, but repeating it is safe, because records already moved are skipped.

    Raises:
        StoreUnavailable: Redis is down.
    """
    if isinstance(redis, RedisCluster):
        page: list[bytes] = []
        async with translate_errors():
            async for key in redis.scan_iter(match=pattern, count=count):
                page.append(key)
                if len(page) >= count:
                    yield 0, page
                    page = []
        yield 0, page
        return
    while True:
        async with translate_errors():
            cursor, keys = await redis.scan(cursor, match=pattern, count=count)
        yield int(cursor), [key if isinstance(key, bytes) else key.encode() for key in keys]
        if int(cursor) == 0:
            return

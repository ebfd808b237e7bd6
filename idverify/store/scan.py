"""SCAN in pages, the same on a single server and on Cluster: the one place a key walk meets redis-py.

Key walks (re-indexing, usage counts, incident holdings, tenant removal, key checks) go page by
page, so each holds Redis briefly and a long walk can report progress or stop early.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from redis.asyncio.cluster import RedisCluster

from idverify.store.connection import RedisClient, translate_errors
from idverify.store.keys import PREFIX, TenantKeys

__all__ = ["scan_pages", "tenant_pages"]


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


async def tenant_pages(
    redis: RedisClient, tenant: str, keys: TenantKeys, *, cursor: int = 0, count: int = 500
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """Pages of every key of ``tenant``, each with the cursor that follows it.

    Its slot's (``iv1:{t:T}:*``) and, named by a bucketed ``keys``, every bucket's
    (``iv1:{t:T:<label>}:*``).

    One SCAN per node matching every tag that begins ``t:T``, its keys kept when their tag is
    the tenant's or one of its buckets' (a tenant whose name begins with T is matched, not kept):
    on Redis 7.0 a SCAN walks its node's whole keyspace whatever its MATCH, so a SCAN per bucket
    prefix (1,024 of them) would walk each node's keys hundreds of times
    (docs/PERFORMANCE.md, "A bucketed tenant's key walk"). One cursor, so a walk resumes as
    :func:`scan_pages` does.

    Raises:
        StoreUnavailable: Redis is down.
    """
    base = f"{PREFIX}:{{t:{tenant}}}"
    if not keys.bucketed:
        async for walked in scan_pages(redis, base + ":*", cursor=cursor, count=count):
            yield walked
        return
    tags = {prefix.encode() for prefix in [base, *keys.bucket_prefixes()]}
    async for next_cursor, page in scan_pages(redis, f"{PREFIX}:{{t:{tenant}*", cursor=cursor, count=count):
        yield next_cursor, [key for key in page if key.partition(b"}")[0] + b"}" in tags]

"""Reading one index of every bucket of a tenant (docs/ARCHITECTURE.md, "Buckets: the plan", §3).

A bucketed tenant's intents and erasures due are sorted sets of each bucket (``TenantKeys``'s
``intents`` and ``erasure_due``, named beside each of ``bucket_prefixes()``): the repairer and
the erasure worker read each bucket's due members, ``ZRANGEBYSCORE … LIMIT``, in one pipeline
that the Cluster client sends as one batch per node. Without a layout the tenant has one index,
and this is today's one read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from idverify.store.connection import RedisClient, as_text, translate_errors

__all__ = ["IndexedMember", "due_in_each"]


@dataclass(frozen=True, slots=True)
class IndexedMember:
    """A member of one of the indexes read, its score, and which index holds it."""

    index: str
    member: str
    score: int


async def due_in_each(
    redis: RedisClient, indexes: Sequence[str], until_ms: int, limit: int
) -> list[IndexedMember]:
    """At most ``limit`` members scored ``until_ms`` or less over ``indexes``, lowest score first.

    Each index is read up to ``limit`` (what the merge could take from it), all of them in one
    pipeline: one round trip per node holding any.
    """
    async with translate_errors(), redis.pipeline(transaction=False) as pipe:
        for index in indexes:
            pipe.zrangebyscore(index, "-inf", until_ms, start=0, num=limit, withscores=True)
        replies = cast("list[list[tuple[bytes, float]]]", await pipe.execute())
    found = [
        IndexedMember(index, as_text(member), int(score))
        for index, rows in zip(indexes, replies, strict=True)
        for member, score in rows
    ]
    # A sorted set's own order, by score then member, as today's one index answers.
    found.sort(key=lambda each: (each.score, each.member.encode()))
    return found[:limit]

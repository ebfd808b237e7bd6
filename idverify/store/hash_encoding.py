"""Whether an external Redis keeps this project's records in its compact hash encoding.

An identity ref or a sealed value is longer than Redis's default ``hash-max-listpack-value``
(64), so at the default every account, identity and consent record is a hash table and takes
about twice the memory (docs/CAPACITY.md). The embedded Redis starts with the limit the records
need (``store.embedded.HASH_MAX_LISTPACK_VALUE``); an operator's Redis is only checked, since
a managed one may refuse CONFIG, and the setting is a matter of memory, not of correctness.
"""

from __future__ import annotations

from redis import exceptions as redis_errors

from idverify.store.connection import RedisClient, as_text
from idverify.store.embedded import HASH_MAX_LISTPACK_VALUE

__all__ = ["loose_hash_limit"]

# The name Redis 6.2 knows; Redis 7 answers it as an alias of hash-max-listpack-value.
SETTING = "hash-max-ziplist-value"


async def loose_hash_limit(redis: RedisClient) -> int | None:
    """Redis's ``hash-max-listpack-value`` when it is below what the records need, else None.

    None too when Redis does not say: CONFIG refused (an ACL, a renamed command) or unreachable,
    or a Cluster client's answer by node; start-up goes on either way.
    """
    try:
        answer = await redis.config_get(SETTING)
    except redis_errors.RedisError:
        return None
    found = {as_text(name): value for name, value in answer.items() if isinstance(name, str | bytes)}
    value = found.get(SETTING)
    if not isinstance(value, str | bytes) or not as_text(value).isdigit():
        return None
    limit = int(as_text(value))
    return limit if limit < HASH_MAX_LISTPACK_VALUE else None

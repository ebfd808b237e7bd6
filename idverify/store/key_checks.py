"""The start-up guard's records in Redis: key-check values, the log's signing key, signs of data.

``flows.key_check`` decides (refuse a lost keyring, record new versions); this adapter only
reads and writes ``iv1:{global}:keycheck`` (a hash of ``p:<v>``/``w:<v>``/``pseudonym`` fields)
and ``iv1:{global}:audit-key`` (the signing key's id), and answers whether the store holds
data, so the guard runs the same over an in-memory store in its unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from redis.typing import EncodableT, FieldT

from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import PREFIX, GlobalKeys
from idverify.store.scan import scan_pages

__all__ = ["SCAN_COUNT", "SCAN_PAGES", "RedisKeyChecks"]

SCAN_COUNT = 1000
SCAN_PAGES = 100
"""At most this many SCAN pages (of ``SCAN_COUNT``) look for a tenant's key in a store without a
key-check record: enough for any store an older build wrote, bounded for a Redis shared with
other applications."""
_TENANT_KEYS = f"{PREFIX}:{{t:*"
_AUDIT_LOGS = f"{PREFIX}:{{t:*}}:audit:log"


class RedisKeyChecks:
    """``flows.key_check.KeyCheckStore`` over one Redis client; every method may raise StoreUnavailable."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def holds_markers(self) -> bool:
        """Whether a key-check record, the bootstrap marker or the client index exists."""
        async with translate_errors():
            found = await self._redis.exists(
                GlobalKeys.KEYCHECK, GlobalKeys.BOOTSTRAP, GlobalKeys.CLIENT_TENANTS
            )
        return bool(found)

    async def any_tenant_key(self) -> bool:
        """Whether a bounded SCAN finds any tenant's key."""
        return await self._any_key(_TENANT_KEYS)

    async def any_audit_log(self) -> bool:
        """Whether a bounded SCAN finds any tenant's audit log."""
        return await self._any_key(_AUDIT_LOGS)

    async def _any_key(self, pattern: str) -> bool:
        pages = 0
        async for _, page in scan_pages(self._redis, pattern, count=SCAN_COUNT):
            if page:
                return True
            pages += 1
            if pages >= SCAN_PAGES:
                break
        return False

    async def recorded_values(self) -> dict[str, str]:
        """The key-check fields recorded so far."""
        async with translate_errors():
            raw = await self._redis.hgetall(GlobalKeys.KEYCHECK)
        return {as_text(field): as_text(value) for field, value in raw.items()}

    async def add_values(self, values: Mapping[str, str]) -> None:
        """Records key-check fields (an empty mapping writes nothing)."""
        if values:
            # Mapping's key type is invariant: str fields are FieldT all the same.
            mapping = cast("Mapping[FieldT, EncodableT]", values)
            async with translate_errors():
                await self._redis.hset(GlobalKeys.KEYCHECK, mapping=mapping)

    async def forget_version(self, version: str) -> None:
        """Removes a version's pepper and wrapping-key check values."""
        async with translate_errors():
            await self._redis.hdel(GlobalKeys.KEYCHECK, f"p:{version}", f"w:{version}")

    async def signing_key(self) -> str | None:
        """The id of the key recorded as the audit log's signing key, if one is."""
        async with translate_errors():
            stored = await self._redis.get(GlobalKeys.AUDIT_KEY)
        return as_text(stored) if stored is not None else None

    async def record_first_signing_key(self, key_id: str) -> None:
        """Records ``key_id`` as the signing key unless one is recorded already."""
        async with translate_errors():
            await self._redis.set(GlobalKeys.AUDIT_KEY, key_id, nx=True)

    async def replace_signing_key(self, key_id: str) -> str | None:
        """Makes ``key_id`` the recorded signing key; returns the one it replaces."""
        async with translate_errors():
            previous = await self._redis.set(GlobalKeys.AUDIT_KEY, key_id, get=True)
        # SET with GET answers the old value (None when there was none), never a bare OK.
        return as_text(previous) if isinstance(previous, bytes | str) else None

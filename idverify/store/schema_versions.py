"""The store's schema version in Redis, for ``flows.schema_version``.

``flows.schema_version`` decides (what a missing record means, which versions are refused, which
servers may serve beside this release); this adapter reads ``iv1:{global}:schema`` and raises it
with ``schema.lua``, which never lowers it and answers what it held. Beside it,
``iv1:{global}:logs-born-walked`` records that no older server was found serving
(``flows.born_walked``).
"""

from __future__ import annotations

from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import GlobalKeys
from idverify.store.scripts import script_source

__all__ = ["RedisSchemaStore"]


class RedisSchemaStore:
    """``flows.schema_version.SchemaStore`` over one Redis client.

    Every method may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def recorded(self) -> int | None:
        """The schema key's value, or None when it is absent."""
        async with translate_errors():
            raw = await self._redis.get(GlobalKeys.SCHEMA)
        return int(as_text(raw)) if raw is not None else None

    async def raise_to(self, version: int) -> int:
        """``schema.lua``: sets the key to ``version`` unless it holds a newer one; what it held (0: none)."""
        async with translate_errors():
            return int(
                await self._redis.register_script(script_source("schema"))(
                    keys=[GlobalKeys.SCHEMA], args=[version]
                )
            )

    async def logs_born_walked(self) -> bool:
        """Whether the born-walked mark is recorded."""
        async with translate_errors():
            return bool(await self._redis.exists(GlobalKeys.LOGS_BORN_WALKED))

    async def mark_logs_born_walked(self) -> None:
        """Records the born-walked mark (idempotent)."""
        async with translate_errors():
            await self._redis.set(GlobalKeys.LOGS_BORN_WALKED, "1")

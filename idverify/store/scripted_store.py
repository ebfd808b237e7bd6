"""The base of the Redis adapters that read with one client and write through its Lua scripts."""

from __future__ import annotations

from idverify.store.connection import RedisClient
from idverify.store.scripts import Scripts

__all__ = ["ScriptedStore"]


class ScriptedStore:
    """A store over one Redis client and its scripts.

    Every method of a store may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, redis: RedisClient, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts

    async def now_ms(self) -> int:
        """The store's clock, in ms of the epoch."""
        return await self._scripts.clock.now_ms()

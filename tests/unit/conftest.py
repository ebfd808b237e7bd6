"""Fixtures of the unit tests: a client of the suite's real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from idverify.store.connection import RedisClient, connect
from idverify.testing import RedisProcess


@pytest.fixture
async def redis(redis_server: RedisProcess) -> AsyncIterator[RedisClient]:
    """A client of the session's redis-server (a test module may define its own ``redis``)."""
    client = connect(redis_server.url)
    yield client
    await client.aclose(close_connection_pool=True)

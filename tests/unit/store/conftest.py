"""Fixtures of the store's unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from idverify.store.connection import RedisClient
from tests.touched_keys import ScriptMonitor


@pytest.fixture
async def script_monitor(own_client: RedisClient) -> AsyncIterator[ScriptMonitor]:
    """A MONITOR of the module's own redis-server: the keys each recorded script call touched."""
    monitor = await ScriptMonitor.open(own_client)
    yield monitor
    await monitor.aclose()

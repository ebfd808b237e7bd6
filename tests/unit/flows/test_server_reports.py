"""Running servers' keyring reports name their release's schema version; 0.1.0's name none.

A start that raises the store's schema version looks at them: servers of a release it cannot
serve beside stop it, the others are logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from idverify.domain.errors import ConfigError
from idverify.flows.keyring_watcher import UNREPORTED_SCHEMA, KeyringWatcher
from idverify.flows.schema_version import FIRST_VERSION, SCHEMA_VERSION, ensure_schema
from idverify.privacy.keyring import Keyring, LiveKeyring
from idverify.store.connection import RedisClient, connect
from idverify.store.key_checks import RedisKeyChecks
from idverify.store.keys import GlobalKeys
from idverify.store.schema_versions import RedisSchemaStore
from idverify.store.server_reports import RedisServerReports
from idverify.testing import RedisProcess, free_port

OLD = "old-0.1.0-report"
# The report exactly as 0.1.0's KeyringWatcher.report writes it: no schema field.
LEGACY_REPORT = json.dumps({"wrapping_current": "w1", "wrapping": ["w1"], "pepper_current": "p1"})


def ports(redis: RedisClient) -> tuple[RedisSchemaStore, RedisKeyChecks, RedisServerReports]:
    return RedisSchemaStore(redis), RedisKeyChecks(redis), RedisServerReports(redis)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of the test's own: the schema key is global, the suite's server is shared."""
    with RedisProcess(tmp_path, port=free_port()) as server:
        yield server


@pytest.fixture
async def store(own_server: RedisProcess) -> AsyncIterator[RedisClient]:
    client = connect(own_server.url, pool_size=2)
    yield client
    await client.aclose()


async def test_a_report_without_a_schema_is_read_as_0_1_0s(redis: RedisClient) -> None:
    """A 0.1.0 server beside this release is listed as schema 1, this release's as its own."""
    old = GlobalKeys.keyring_instance(OLD)
    await redis.set(old, LEGACY_REPORT, px=60_000)
    watcher = KeyringWatcher(LiveKeyring(Keyring.generate()), None, RedisServerReports(redis), 1.0)
    try:
        await watcher.report()
        servers = {server.instance: server for server in await RedisServerReports(redis).running()}
    finally:
        await watcher.withdraw()
        await redis.delete(old)

    assert servers[OLD].schema == UNREPORTED_SCHEMA == 1
    ours = [server for name, server in servers.items() if name != OLD]
    assert ours, "this release's report is listed"
    assert [server.schema for server in ours] == [SCHEMA_VERSION] * len(ours)


async def test_a_release_that_cannot_serve_beside_0_1_0_refuses_to_raise_the_version(
    store: RedisClient,
) -> None:
    """Nothing is raised while the old server reports; once it is gone, the start goes on."""
    await store.set(GlobalKeys.SCHEMA, str(FIRST_VERSION))
    await store.set(GlobalKeys.keyring_instance(OLD), LEGACY_REPORT, px=60_000)

    with pytest.raises(ConfigError) as refused:
        await ensure_schema(*ports(store), oldest_beside=SCHEMA_VERSION)

    assert f"{OLD} (schema 1)" in str(refused.value)
    assert "stop them, then start this one" in str(refused.value)
    assert await store.get(GlobalKeys.SCHEMA) == str(FIRST_VERSION).encode()
    await store.delete(GlobalKeys.keyring_instance(OLD))
    assert await ensure_schema(*ports(store), oldest_beside=SCHEMA_VERSION) == FIRST_VERSION
    assert await store.get(GlobalKeys.SCHEMA) == str(SCHEMA_VERSION).encode()


async def test_this_release_raises_the_version_beside_0_1_0_and_says_so(
    store: RedisClient, caplog: pytest.LogCaptureFixture
) -> None:
    await store.set(GlobalKeys.SCHEMA, str(FIRST_VERSION))
    await store.set(GlobalKeys.keyring_instance(OLD), LEGACY_REPORT, px=60_000)

    with caplog.at_level(logging.WARNING, logger="idverify.schema"):
        assert await ensure_schema(*ports(store)) == FIRST_VERSION

    assert await store.get(GlobalKeys.SCHEMA) == str(SCHEMA_VERSION).encode()
    assert [record.getMessage() for record in caplog.records if OLD in record.getMessage()], caplog.text
    caplog.clear()
    # Raised once: later starts do not look (an older release restarted refuses by itself).
    with caplog.at_level(logging.WARNING, logger="idverify.schema"):
        assert await ensure_schema(*ports(store)) == SCHEMA_VERSION
    assert not caplog.records

"""Running servers' keyring reports name their release's schema version; 0.1.0's name none."""

from __future__ import annotations

import json

from idverify.flows.keys import UNREPORTED_SCHEMA, KeyringWatcher, running_servers
from idverify.flows.schema_version import SCHEMA_VERSION
from idverify.privacy.keyring import Keyring, LiveKeyring
from idverify.store.connection import RedisClient
from idverify.store.keys import GlobalKeys


async def test_a_report_without_a_schema_is_read_as_0_1_0s(redis: RedisClient) -> None:
    """A 0.1.0 server beside this release is listed as schema 1, this release's as its own."""
    # The report exactly as 0.1.0's KeyringWatcher.report writes it: no schema field.
    old = GlobalKeys.keyring_instance("old-0.1.0-report")
    legacy = {"wrapping_current": "w1", "wrapping": ["w1"], "pepper_current": "p1"}
    await redis.set(old, json.dumps(legacy), px=60_000)
    watcher = KeyringWatcher(LiveKeyring(Keyring.generate()), None, redis, 1.0)
    try:
        await watcher.report()
        servers = {server.instance: server for server in await running_servers(redis)}
    finally:
        await watcher.withdraw()
        await redis.delete(old)

    assert servers["old-0.1.0-report"].schema == UNREPORTED_SCHEMA == 1
    ours = [server for name, server in servers.items() if name != "old-0.1.0-report"]
    assert [server.schema for server in ours] == [SCHEMA_VERSION] * len(ours)
    assert ours, "this release's report is listed"

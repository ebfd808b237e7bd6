"""A server's new tenants' logs are born walked only while the store records no older server beside it.

The store's mark is recorded by the start that raises the schema (or finds the store empty) with
no older server reporting in, or by ``migrate legacy`` (``tests/unit/usecases/
test_schema_version_usecase.py``, ``tests/e2e/test_migrate_legacy.py``); a start reads it with one
``GET`` and never scans the keyspace for the reports itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from idverify.config import load_settings
from idverify.flows.born_walked import new_logs_walked
from idverify.security.clients import ClientCreation, NewClient
from idverify.security.principals import Role
from idverify.server import running
from idverify.store.clients import RedisClientStore
from idverify.store.connection import RedisClient, connect
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.schema_versions import RedisSchemaStore
from idverify.testing import RedisProcess, free_port
from tests.unit.flows.test_server_reports import LEGACY_REPORT, OLD


async def test_born_walked_while_the_store_records_the_mark(own_client: RedisClient) -> None:
    """The mark and the reports are global keys: the module's own redis-server, emptied first."""
    schema = RedisSchemaStore(own_client)
    assert not await new_logs_walked(schema)
    await schema.mark_logs_born_walked()
    assert await new_logs_walked(schema)


async def test_not_born_walked_when_redis_cannot_be_reached(caplog: pytest.LogCaptureFixture) -> None:
    nobody = connect(f"redis://127.0.0.1:{free_port()}/0", pool_size=1)
    try:
        with caplog.at_level(logging.WARNING, logger="idverify.schema"):
            assert not await new_logs_walked(RedisSchemaStore(nobody))
    finally:
        await nobody.aclose()
    assert "migrate legacy" in caplog.text


@pytest.mark.parametrize("beside_0_1_0", [False, True])
async def test_a_servers_new_tenant(
    own_redis: RedisProcess, own_client: RedisClient, tmp_path: Path, beside_0_1_0: bool
) -> None:
    """A tenant's first client, created by a started server: its log born walked unless 0.1.0 reports in."""
    if beside_0_1_0:
        await own_client.set(GlobalKeys.keyring_instance(OLD), LEGACY_REPORT, px=60_000)
    settings = load_settings(
        environ={},
        overrides={"listen": "127.0.0.1:0", "data_dir": str(tmp_path / "data"), "redis_url": own_redis.url},
    )
    request = '{"principal":"t/admin/c1","request_id":"r1","trace_id":""}'
    async with running(settings) as app:
        clients = RedisClientStore(app.redis, app.scripts)
        created, _ = await clients.create(NewClient("acme", "c1", Role.ADMIN, "first", "mac", request))
    assert created is ClientCreation.CREATED
    mark = await own_client.hget(TenantKeys("acme").audit_head(), "legacy_moved")
    assert mark == (None if beside_0_1_0 else b"born")
    assert await own_client.exists(GlobalKeys.LOGS_BORN_WALKED) == (0 if beside_0_1_0 else 1)

"""Naming tenants for the erasure workers and the repairers: once a process, never lost to a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from idverify.domain.errors import StoreUnavailable
from idverify.store.connection import RedisClient, as_text, connect
from idverify.store.keys import GlobalKeys
from idverify.store.scripts import Scripts
from idverify.store.topology import ReplicaAck
from idverify.store.visited_tenants import VisitedTenants
from idverify.testing import RedisProcess, free_port, redis_server_binary


async def members(redis: RedisClient) -> set[str]:
    return {as_text(m) for m in await redis.smembers(GlobalKeys.ERASURE_TENANTS)}


async def test_a_tenant_is_named_once_a_process(own_client: RedisClient) -> None:
    tenants = VisitedTenants(Scripts(own_client))
    await tenants.note("acme")
    await tenants.note("globex")
    assert await members(own_client) == {"acme", "globex"}
    # Taken away behind its back (only a tenant's removal does that, and a removed tenant takes no
    # writes): this process does not name it again, which is what saves the round trip.
    await own_client.srem(GlobalKeys.ERASURE_TENANTS, "acme")
    await tenants.note("acme")
    assert await members(own_client) == {"globex"}
    # Another process names it.
    await VisitedTenants(Scripts(own_client)).note("acme")
    assert await members(own_client) == {"acme", "globex"}


async def test_a_failed_note_is_tried_again(tmp_path: Path) -> None:
    port = free_port()
    client = connect(f"redis://127.0.0.1:{port}/0")
    tenants = VisitedTenants(Scripts(client))
    try:
        with pytest.raises(StoreUnavailable):
            await tenants.note("acme")
        # The same process, once its Redis is up: the failed note was not taken as done.
        with RedisProcess(tmp_path, port=port, binary=redis_server_binary(prefer_system=True)):
            await tenants.note("acme")
            assert await members(client) == {"acme"}
    finally:
        await client.aclose(close_connection_pool=True)


async def test_a_name_no_replica_holds_is_not_done(own_client: RedisClient) -> None:
    """With replicas to wait for, a name is done once they hold it, as the steps after it wait.

    Those steps keep their intents in the tenant's slot, the name is in another: a failover that
    lost the name and kept them would leave them to no repairer (tests/integration/
    test_binding_failover.py). Here no replica exists: the name is refused, and not taken as done.
    """
    tenants = VisitedTenants(Scripts(own_client, ack=ReplicaAck(replicas=1, timeout_ms=50)))
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            await tenants.note("acme")

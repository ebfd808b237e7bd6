"""``idverify migrate legacy``'s walk on a real 3-primary Cluster, where a SCAN cannot be resumed.

The pages come from every primary with cursor 0 (``store.scan``), so a run stopped after a page
starts its phase over: the counts kept with each page must still come out as the data's, each
field written once, and the phase must advance only after the walk's last page.
"""

from __future__ import annotations

import pytest

from idverify.store.connection import RedisClient, close_client, connect
from idverify.store.keys import TenantKeys
from idverify.store.legacy_moves import RedisLegacyMove
from idverify.store.local_topologies import LocalCluster
from idverify.store.scripts import Scripts

pytestmark = pytest.mark.slow

TENANT = "legacycluster"
IDENTITIES = 600  # three pages of 256
MAPPED = 100
ERASED = 5


class _Stopped(Exception):
    """The run stopped after a page, as a kill between two pages leaves it."""


async def _write_legacy(client: RedisClient) -> None:
    keys = TenantKeys(TENANT)
    for n in range(IDENTITIES):
        ref, account = f"ref-{n}", f"acct{n:028d}"
        await client.hset(keys.identity(ref), mapping={"name_binding": f"binding-{n}"})
        await client.sadd(keys.identity_accounts(ref), account)
        await client.hset(keys.account(account), mapping={"identity": ref, "audit": f"audit-{account}"})
        if n < MAPPED:
            await client.hset(keys.events_accounts(), f"audit-{account}", f"sealed-{n}")
    for n in range(ERASED):
        await client.hset(keys.events_accounts(), f"audit-erased-{n}", "sealed")
    await client.hset(keys.audit_head(), mapping={"size": "0", "last_ms": "0"})


def _stop_after_first_page(read: int) -> None:
    raise _Stopped(read)


async def test_a_run_stopped_after_a_page_starts_its_phase_over_and_counts_each_field_once(
    redis_cluster: LocalCluster,
) -> None:
    client = connect(redis_cluster.url)
    try:
        await client.delete(TenantKeys(TENANT).legacy_move())
        await _write_legacy(client)
        move = RedisLegacyMove(client, Scripts(client))
        with pytest.raises(_Stopped):
            await move.run(TENANT, _stop_after_first_page)
        record = await client.hgetall(TenantKeys(TENANT).legacy_move())
        assert record[b"phase"] == b"members"
        assert 0 < int(record[b"fields_written"]) < IDENTITIES

        done = await move.run(TENANT, lambda _: None)
        assert done.resumed
        assert (done.fields_written, done.ids_moved, done.ids_dropped) == (IDENTITIES, MAPPED, ERASED)
        check = await move.check(TENANT, lambda _: None)
        assert check.ok, check
        assert (check.records, check.members) == (IDENTITIES, IDENTITIES)
        again = await move.run(TENANT, lambda _: None)
        assert not again.changed, again
    finally:
        await close_client(client)

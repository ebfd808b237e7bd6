"""A Redis primary killed -9 between a cancellation's steps, on a Cluster with a replica a primary.

A process cancels an account step by step, as a Cluster does, with ``wait_replicas=1`` in its URL
(``tests/cancel_crash.py``), while the replica of the tenant's primary is cut off: the account's
step runs on the primary, and the process is held there until the replica is back and holds it,
so the identity's step cannot run before. The process is then killed after that step, the primary
is killed with SIGKILL, its replica takes over, and the repairer runs against the Cluster: the
cancellation is finished once (the account unbound and queued, the identity without it and
queued, its names dropped, one ``account.cancelled`` entry, no intent), because the step and its
intent were acknowledged by the replica that now serves them.

Without ``wait_replicas`` the step would answer at once, the identity's step could follow, and a
failover could keep the identity's change and lose the account's (on today's one-slot layout
both sit on one primary, so this is the plan's buckets' risk, guarded here by its cause).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from idverify.flows.bucket_repair import BucketRepairer
from idverify.store.connection import connect
from idverify.store.keys import TenantKeys
from idverify.store.local_topologies import LocalCluster, wait_until
from idverify.store.scripts import Scripts
from idverify.store.topology import ReplicaAck
from tests.cancel_crash import (
    REF,
    LaterRepairs,
    assert_cancelled_once,
    bind_accounts,
    cancellation,
    killed_after,
    pseudonym,
)
from tests.cluster_failover import (
    failover_cluster,
    kill_primary,
    rejoin,
    replica_cut_off,
    replicated,
    serving,
)

# Killing and promoting nodes on a shared 2-core machine: alone, as the other failover tests.
pytestmark = [pytest.mark.slow, pytest.mark.serial]
# The account's step waits this long at most for its replica; the test holds it a fraction of that.
WAIT_TIMEOUT_MS = 30_000
HELD_SECONDS = 1.0  # how long the step is seen held, its write on the primary, its replica away
WAITED = ReplicaAck(replicas=1, timeout_ms=2000)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with failover_cluster(tmp_path_factory.mktemp("cancel-failover")) as setup:
        yield setup


@pytest.mark.timeout(90)
async def test_a_primary_killed_after_the_accounts_step_loses_and_doubles_nothing(
    cluster: LocalCluster,
) -> None:
    tenant = f"cancel-failover-{time.time_ns()}"
    target = pseudonym(f"{tenant}-a")
    keys = TenantKeys(tenant)
    client = connect(cluster.url)
    try:
        await bind_accounts(client, tenant, [target])
    finally:
        await client.aclose()
    replicated(cluster)
    cancelled = cancellation(target, "c-failover")
    url = f"{cluster.url}?wait_replicas=1&wait_timeout_ms={WAIT_TIMEOUT_MS}"
    primary = serving(cluster, keys.account(target))
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        replica_cut_off(cluster, primary),
        redis.Redis(port=primary.port, socket_timeout=5) as direct,
    ):
        held = pool.submit(killed_after, url, tenant, cancelled, 1)
        wait_until(lambda: bool(direct.hexists(keys.account(target), "cancelled_ms")), "the step", 30)
        await asyncio.sleep(HELD_SECONDS)
        # The account's step is written on the primary alone: it has not answered, so no step
        # after it has run.
        assert not held.done(), "the account's step answered before a replica held it"
        assert direct.sismember(keys.identity_accounts(REF), target)
    # The replica back, the step was acknowledged; the process stopped after it, and was killed.
    held.result(timeout=60)
    rejoin(cluster, kill_primary(cluster, keys.account(target)))

    client = connect(cluster.url)
    try:
        assert await client.zcard(keys.intents()) == 1  # the promoted replica holds the intent
        repairer = BucketRepairer(LaterRepairs(client, Scripts(client, ack=WAITED)))
        assert await repairer.repair(tenant) == 1
        await assert_cancelled_once(client, tenant, cancelled, [])
        assert await repairer.repair(tenant) == 0  # finished once
        await assert_cancelled_once(client, tenant, cancelled, [])
    finally:
        await client.aclose()

"""The integration loop every replica runs: refusals, the staged entries it sequences first, leases.

One tenant refused holds back no other, and says so once; a tenant's staged entries are
sequenced into its log by the loop, which integrates them; with leases one worker folds a
tenant's rounds, and another takes over once a dead holder's lease ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

import pytest

from idverify.audit import merkle
from idverify.audit.integrator import TreeIntegrator
from idverify.audit.sequencer import StageSequencer
from idverify.audit.tile_mirror import TilesStopped
from idverify.audit.tree_state import TreeState
from idverify.flows.audit_setup import integrate_forever, lease_ms_for
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.integration_leases import RedisIntegrationLeases
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender, SyntheticStager

PASSES = 5


class Flow:
    """A flow whose tenant ``stopped`` is refused (its tiles in conflict) for ``passes`` passes."""

    configured_tenants = frozenset({"acme", "stopped", "zeta"})

    def __init__(self, passes: int = PASSES) -> None:
        self.integrated: list[str] = []
        self.resumed = asyncio.Event()
        self._passes = passes

    async def integrate(self, tenant: str) -> TreeState:
        if tenant == "stopped" and self.integrated.count("zeta") < self._passes:
            raise TilesStopped.of(tenant)
        self.integrated.append(tenant)
        if tenant == "stopped":
            self.resumed.set()
        return TreeState.empty()


async def no_tenants() -> frozenset[str]:
    return frozenset()


async def test_a_refused_tenant_holds_back_no_other_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every other tenant is integrated each pass; the refusal is one warning, its end one line."""
    flow = Flow()
    with caplog.at_level(logging.INFO, logger="idverify.audit"):
        loop = asyncio.create_task(integrate_forever(flow, no_tenants, interval_seconds=0))  # type: ignore[arg-type]
        await asyncio.wait_for(flow.resumed.wait(), timeout=30)
        loop.cancel()
    assert flow.integrated.count("acme") >= PASSES
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals == ["audit integration of stopped refused: AUDIT_TILES_STOPPED"]
    assert "audit integration of stopped goes on" in caplog.text


class IntegratingFlow:
    """The integrator over a real store, for one tenant; ``reached`` once the tree holds ``size``."""

    def __init__(self, redis: RedisClient, tenant: str, size: int) -> None:
        self.configured_tenants = frozenset({tenant})
        self._tree = TreeIntegrator(AuditStore(redis, Scripts(redis)))
        self._size = size
        self.reached = asyncio.Event()

    async def integrate(self, tenant: str) -> TreeState:
        state = await self._tree.integrate(tenant)
        if state.size >= self._size:
            self.reached.set()
        return state


async def test_the_loop_sequences_staged_entries_and_integrates_them(redis: RedisClient) -> None:
    """With a sequencer, the loop empties every bucket's stage into the log and integrates it all."""
    tenant = "loop-stage"
    stager = SyntheticStager(redis)
    for bucket in range(3):
        await stager.stage(
            tenant, bucket, [({"request_id": f"{bucket}-{n}"}, {"type": "t.x"}) for n in range(300)]
        )
    flow = IntegratingFlow(redis, tenant, 900)
    sequencer = StageSequencer(RedisAuditStages(redis, Scripts(redis)), 3)
    loop = asyncio.create_task(
        integrate_forever(flow, no_tenants, interval_seconds=0.05, sequencer=sequencer)  # type: ignore[arg-type]
    )
    try:
        await asyncio.wait_for(flow.reached.wait(), timeout=30)
    finally:
        loop.cancel()
    assert await redis.hlen(TenantKeys(tenant).audit_log()) == 900
    assert [await redis.xlen(BucketKeys(tenant, b).audit_stage()) for b in range(3)] == [0, 0, 0]


class RoundsWritten(AuditStore):
    """A worker's store that notes when each of its rounds' tree writes landed, and whether it won."""

    def __init__(self, redis: RedisClient) -> None:
        super().__init__(redis, Scripts(redis))
        self.writes: list[tuple[float, bool]] = []  # (monotonic time, won the check-and-set)

    async def write_tree(
        self, tenant: str, old_size: int, state: TreeState, nodes: Mapping[merkle.NodeId, bytes]
    ) -> bool:
        won = await super().write_tree(tenant, old_size, state, nodes)
        self.writes.append((time.monotonic(), won))
        return won


class Worker:
    """One worker's integration loop over a real store, with the leases, as ``serve`` runs it."""

    def __init__(self, redis: RedisClient, tenant: str, *, killed: bool = False) -> None:
        self.store = RoundsWritten(redis)
        self.configured_tenants = frozenset({tenant})
        self._tree = TreeIntegrator(self.store)
        leases = (KilledLeases if killed else RedisIntegrationLeases)(Scripts(redis))
        self.task = asyncio.create_task(
            integrate_forever(self, no_tenants, interval_seconds=INTERVAL, leases=leases)  # type: ignore[arg-type]
        )

    async def integrate(self, tenant: str) -> TreeState:
        return await self._tree.integrate(tenant)


INTERVAL = 0.02


class KilledLeases(RedisIntegrationLeases):
    """The leases of a worker that will be killed with SIGKILL: it never gives one back."""

    async def give(self, tenant: str, token: str) -> None:
        del tenant, token


async def stopped(task: asyncio.Task[None]) -> None:
    """Cancels a loop until it ends (its leases given back, unless it plays a killed one).

    Again and again, as the server does: a cancellation that lands inside a Redis call may come
    out of it as the store being unavailable, which the loop outlives.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.2)


async def integrated(redis: RedisClient, tenant: str, size: int) -> None:
    """Waits until the stored tree holds ``size`` entries (30 s at most)."""
    store = AuditStore(redis, Scripts(redis))
    async with asyncio.timeout(30):
        while True:
            if (await store.tree_state(tenant)).size >= size:
                return
            await asyncio.sleep(0.01)


async def append(redis: RedisClient, tenant: str, count: int) -> None:
    await SyntheticAppender(redis).append(
        tenant, [({"request_id": str(n)}, {"type": "t.x"}) for n in range(count)]
    )


async def tree_of_the_log(redis: RedisClient, tenant: str) -> None:
    """The stored tree is the RFC 6962 tree of every entry of the log, each once."""
    store = AuditStore(redis, Scripts(redis))
    state = await store.tree_state(tenant)
    entries = await store.entries(tenant, range(await store.size(tenant)))
    assert state.size == len(entries)
    assert state.root == merkle.root([merkle.leaf_hash(e) for e in entries if e is not None])


class TestIntegrationLeases:
    async def test_one_worker_folds_every_round_of_a_tenant(self, redis: RedisClient) -> None:
        """Two workers' loops over one log: the leaseholder writes every round, none is lost to a race."""
        tenant = "lease-one"
        workers = [Worker(redis, tenant), Worker(redis, tenant)]
        try:
            for _ in range(20):
                await append(redis, tenant, 50)
                await asyncio.sleep(INTERVAL * 1.5)  # both loops come round between two batches
            await integrated(redis, tenant, 1000)
        finally:
            for worker in workers:
                await stopped(worker.task)
        writers = [worker for worker in workers if worker.store.writes]
        assert len(writers) == 1
        assert all(won for _, won in writers[0].store.writes)
        assert len(writers[0].store.writes) > 1
        await tree_of_the_log(redis, tenant)

    async def test_a_dead_holders_lease_ends_and_another_worker_takes_over(self, redis: RedisClient) -> None:
        """The holder stopped without giving its lease back: the other waits for its end, then integrates."""
        tenant = "lease-dead"
        key = TenantKeys(tenant).audit_integration_lease()
        await append(redis, tenant, 100)
        holder = Worker(redis, tenant, killed=True)
        await integrated(redis, tenant, 100)
        await stopped(holder.task)  # as a kill -9 would: its lease stays until its TTL ends
        ended_by = time.monotonic() + await redis.pttl(key) / 1000
        held_by = await redis.get(key)
        successor = Worker(redis, tenant)
        try:
            await append(redis, tenant, 100)
            await integrated(redis, tenant, 200)
            assert await redis.get(key) not in {None, held_by}
        finally:
            await stopped(successor.task)
        first_write = successor.store.writes[0][0]
        assert first_write >= ended_by - 0.05  # not before the dead holder's lease ended
        assert first_write <= ended_by + 5
        assert lease_ms_for(INTERVAL) / 1000 <= 5
        await tree_of_the_log(redis, tenant)

    async def test_a_stopped_worker_gives_its_lease_back(self, redis: RedisClient) -> None:
        """A worker stopped (not killed) gives its lease back: another integrates long before it would end."""
        tenant = "lease-stopped"
        await append(redis, tenant, 100)
        holder = Worker(redis, tenant)
        await integrated(redis, tenant, 100)
        await stopped(holder.task)
        stopped_at = time.monotonic()
        assert await redis.get(TenantKeys(tenant).audit_integration_lease()) is None
        successor = Worker(redis, tenant)
        try:
            await append(redis, tenant, 100)
            await integrated(redis, tenant, 200)
        finally:
            await stopped(successor.task)
        assert successor.store.writes[0][0] - stopped_at < lease_ms_for(INTERVAL) / 1000
        await tree_of_the_log(redis, tenant)

    async def test_a_refused_tenants_lease_is_given_back(self, redis: RedisClient) -> None:
        """A worker whose rounds of a tenant are refused holds no lease on it; it holds the others'."""
        flow = Flow(passes=10**9)
        leases = RedisIntegrationLeases(Scripts(redis))
        loop = asyncio.create_task(
            integrate_forever(flow, no_tenants, interval_seconds=0, leases=leases)  # type: ignore[arg-type]
        )
        try:
            async with asyncio.timeout(30):
                while flow.integrated.count("zeta") < PASSES:  # noqa: ASYNC110 - the fake counts, no event
                    await asyncio.sleep(0.01)
            stopped_lease, acme = [
                await redis.get(TenantKeys(t).audit_integration_lease()) for t in ("stopped", "acme")
            ]
        finally:
            await stopped(loop)
        assert stopped_lease is None
        assert acme is not None

"""The integration loop every replica runs: refusals, and the staged entries it sequences first.

One tenant refused holds back no other, and says so once; a tenant's staged entries are
sequenced into its log by the loop, which integrates them.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from idverify.audit.integrator import TreeIntegrator
from idverify.audit.sequencer import StageSequencer
from idverify.audit.tile_mirror import TilesStopped
from idverify.audit.tree_state import TreeState
from idverify.flows.audit_setup import integrate_forever
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticStager

PASSES = 5


class Flow:
    """A flow whose tenant ``stopped`` is refused (its tiles in conflict) for ``PASSES`` passes."""

    configured_tenants = frozenset({"acme", "stopped", "zeta"})

    def __init__(self) -> None:
        self.integrated: list[str] = []
        self.resumed = asyncio.Event()

    async def integrate(self, tenant: str) -> TreeState:
        if tenant == "stopped" and self.integrated.count("zeta") < PASSES:
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

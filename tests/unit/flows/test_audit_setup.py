"""The integration loop every replica runs: one tenant refused holds back no other, and says so once."""

from __future__ import annotations

import asyncio
import logging

import pytest

from idverify.audit.tile_mirror import TilesStopped
from idverify.audit.tree_state import TreeState
from idverify.flows.audit_setup import integrate_forever

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

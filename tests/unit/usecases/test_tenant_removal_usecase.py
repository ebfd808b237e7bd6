"""TenantRemoval over an in-memory RemovalStore: a tenant's removal decided without Redis.

Each test shows one decision of the use case: a tenant unknown or holding operators, the due time
from the store's clock, what each state refuses, the final head signed once and kept, the export
written and verified (and refused when an entry is missing), an erasure stopped at its limit and
resumed. ``tests/e2e/test_tenant_removal.py`` runs it through the command line on a real store.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.checkpoint import SignedHead, TreeHeadSigner
from idverify.domain.errors import FailedPrecondition, NotFound, StoreUnavailable
from idverify.flows.tenant_removal import CLOSED, ERASING, REMOVED, SCHEDULED, TenantRemoval, export_paths
from idverify.testing.memory_tenant_removals import MemoryLogSigner, MemoryRemovalStore

REQUEST = {"principal": "tenants-remove/test@host", "request_id": "", "trace_id": ""}
DAY_MS = 86_400_000


class CountingSigner(MemoryLogSigner):
    """Counts the heads it signs."""

    signed = 0

    async def signed_head(self, tenant: str) -> SignedHead:
        self.signed += 1
        return await super().signed_head(tenant)


def removal_of(store: MemoryRemovalStore) -> tuple[TenantRemoval, CountingSigner]:
    signer = CountingSigner(store, TreeHeadSigner(Ed25519PrivateKey.generate()))
    return TenantRemoval(store, signer), signer


def store_with(*tenants: str) -> MemoryRemovalStore:
    store = MemoryRemovalStore()
    for tenant in tenants:
        store.add_client(tenant, f"{tenant}-reg", "registrar")
        store.add_keys(tenant, *(f"acct:{n}" for n in range(20)))
    return store


async def reason_of(call: Awaitable[object]) -> str:
    with pytest.raises(FailedPrecondition) as raised:
        await call
    return raised.value.reason


async def state_of(removal: TenantRemoval, tenant: str) -> str:
    record = await removal.get(tenant)
    assert record is not None
    return record.state


async def test_a_tenant_without_clients_or_log_is_not_found() -> None:
    removal, _ = removal_of(MemoryRemovalStore())
    with pytest.raises(NotFound):
        await removal.schedule("ghost", 30, REQUEST)


async def test_a_tenant_holding_an_operator_is_refused_and_not_left_listed() -> None:
    store = store_with("acme")
    store.add_client("acme", "root", "operator")
    removal, _ = removal_of(store)
    assert await reason_of(removal.schedule("acme", 30, REQUEST)) == "HOLDS_OPERATORS"
    assert await removal.get("acme") is None
    assert store.removals_listed == {}
    assert store.live_clients("acme") == ["acme-reg", "root"]


async def test_a_schedule_is_due_after_the_grace_period_and_made_once() -> None:
    store = store_with("acme")
    removal, _ = removal_of(store)
    due, revoked = await removal.schedule("acme", 30, REQUEST)
    assert (due, revoked) == (store.now + 30 * DAY_MS, 1)
    assert store.live_clients("acme") == []
    assert store.removals_listed == {"acme": due}
    assert await reason_of(removal.schedule("acme", 30, REQUEST)) == "REMOVAL_SCHEDULED"
    assert store.removals_listed == {"acme": due}  # listed once, at the first due time


async def test_pending_lists_removals_by_due_time_but_finished_or_unrecorded_ones() -> None:
    store = store_with("late", "early", "gone")
    removal, _ = removal_of(store)
    await removal.schedule("late", 9, REQUEST)
    await removal.schedule("early", 1, REQUEST)
    await store.enlist("crashed", 0)  # listed, its step never ran
    await removal.schedule("gone", 0, REQUEST)
    await store.forget("gone")
    assert [(r.tenant, r.state) for r in await removal.pending()] == [
        ("early", SCHEDULED),
        ("late", SCHEDULED),
    ]


async def test_a_cancel_unlists_and_only_a_scheduled_removal_is_cancelled() -> None:
    store = store_with("acme")
    removal, _ = removal_of(store)
    assert await reason_of(removal.cancel("acme", REQUEST)) == "NO_REMOVAL"
    await removal.schedule("acme", 30, REQUEST)
    await removal.cancel("acme", REQUEST)
    assert await removal.get("acme") is None
    assert store.removals_listed == {}
    await removal.schedule("acme", 0, REQUEST)
    await removal.close("acme", REQUEST)
    assert await reason_of(removal.cancel("acme", REQUEST)) == "REMOVAL_UNDER_WAY"


async def test_the_log_closes_once_due_and_its_final_head_is_signed_once() -> None:
    store = store_with("acme")
    removal, signer = removal_of(store)
    assert await reason_of(removal.close("acme", REQUEST)) == "NO_REMOVAL"
    due, _ = await removal.schedule("acme", 2, REQUEST)
    assert await reason_of(removal.close("acme", REQUEST)) == "REMOVAL_NOT_DUE"
    assert signer.signed == 0
    store.now = due
    head = await removal.close("acme", REQUEST)
    assert head.head.size == len(store.leaves("acme"))
    record = await removal.get("acme")
    assert record is not None
    assert (record.state, record.final_head) == (CLOSED, head)
    store.now += DAY_MS
    assert await removal.close("acme", REQUEST) == head
    assert signer.signed == 1


async def test_the_export_verifies_and_a_missing_entry_stops_it(tmp_path: Path) -> None:
    store = store_with("acme")
    removal, _ = removal_of(store)
    await removal.schedule("acme", 0, REQUEST)
    head = await removal.close("acme", REQUEST)
    seen: list[int] = []
    path = await removal.export("acme", head, tmp_path / "out", seen.append)
    log_path, key_path = export_paths(tmp_path / "out", "acme")
    assert path == log_path
    assert len(log_path.read_bytes().splitlines()) == 1 + head.head.size
    assert key_path.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert sum(seen) == head.head.size
    store.audit("other", REQUEST, type="x")
    assert await reason_of(removal.export("other", head, tmp_path / "bad", seen.append)) == (
        "EXPORT_DOES_NOT_VERIFY"
    )


async def test_an_erasure_waits_for_the_export_stops_at_its_limit_and_resumes() -> None:
    store = store_with("acme")
    store.erasure_tenants.add("acme")
    removal, _ = removal_of(store)
    await removal.schedule("acme", 0, REQUEST)
    progress: list[int] = []
    assert await reason_of(removal.erase("acme", page_size=5, limit=0, progress=progress.append)) == (
        "REMOVAL_SCHEDULED"
    )
    await removal.close("acme", REQUEST)
    await removal.start_erasing("acme")
    total = await removal.count_remaining("acme")
    stopped = await removal.erase("acme", page_size=5, limit=7, progress=progress.append)
    assert not stopped.finished
    assert 7 <= stopped.erased < total
    assert await state_of(removal, "acme") == ERASING
    stops = 1
    while not (await removal.erase("acme", page_size=5, limit=7, progress=progress.append)).finished:
        stops += 1
    assert total == 22  # the accounts, the client and the set of clients
    assert stops == 2  # each run erases two pages of five to reach its limit of 7; the third finishes
    assert sum(progress) == total
    assert await removal.count_remaining("acme") == 0
    assert await state_of(removal, "acme") == REMOVED
    assert store.client_tenants == {}
    assert store.erasure_tenants == set()
    assert await reason_of(removal.schedule("acme", 0, REQUEST)) == "TENANT_REMOVED"


async def test_an_unreachable_store_is_told_as_such() -> None:
    store = store_with("acme")
    removal, _ = removal_of(store)
    store.down = True
    with pytest.raises(StoreUnavailable):
        await removal.pending()

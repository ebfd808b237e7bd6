"""ErasureFlow over an in-memory ErasureStore: cancellation and erasure decided without Redis or gRPC.

Each test shows one decision of the use case: the due time from the store's clock and the working
calendar, what a repeated cancel returns, the retries of an account that keeps changing and the
refusal after them, which queued erasures are due, an identity kept while an account is bound to
it again, what is overdue. ``tests/e2e/test_lifecycle_erasure.py`` runs it through the server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from idverify.config import ErasureSettings
from idverify.domain.errors import InvalidArgument, StoreUnavailable
from idverify.flows.context import RequestInfo
from idverify.flows.erasure import ErasureFlow, ErasureItem, ErasureKind, ErasureWorker, ScheduledErasure
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.testing.memory_erasures import MemoryErasureStore

KEYRING = Keyring.generate()
INFO = RequestInfo(principal="registrar01", request_id="r1")
# Wednesday 2 December 2026, 10:00 in Shanghai.
WEDNESDAY_MS = int(datetime(2026, 12, 2, 2, 0, tzinfo=UTC).timestamp() * 1000)
# The start of Friday 4 December in Shanghai: two working days after Wednesday.
FRIDAY_MS = int(datetime(2026, 12, 3, 16, 0, tzinfo=UTC).timestamp() * 1000)
DAY_MS = 86_400_000


def flow(store: MemoryErasureStore, **settings: Any) -> ErasureFlow:
    return ErasureFlow(store, ErasureSettings(**{"working_days": 2, **settings}), KEYRING, Sealer(KEYRING))


def account(tenant: str, account_id: str) -> str:
    return KEYRING.pseudonym(tenant, "account", account_id)


async def test_a_cancel_is_due_at_the_start_of_the_nth_working_day_by_the_stores_clock() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    assert await flow(store).cancel("acme", "user-1", INFO) == FRIDAY_MS
    assert await store.scheduled("acme") == [
        ScheduledErasure(ErasureItem(ErasureKind.ACCOUNT, account("acme", "user-1")), FRIDAY_MS)
    ]
    assert await store.tenants() == ["acme"]  # the workers visit the tenant
    # A holiday on Thursday moves it to Monday 7 December.
    other = MemoryErasureStore(WEDNESDAY_MS)
    monday_ms = FRIDAY_MS + 3 * DAY_MS
    assert await flow(other, holidays=("2026-12-03",)).cancel("acme", "user-1", INFO) == monday_ms


async def test_cancelling_again_returns_the_first_due_time_and_changes_nothing() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    first = await flow(store).cancel("acme", "user-1", INFO)
    store.now += 3 * DAY_MS
    assert await flow(store).cancel("acme", "user-1", INFO) == first
    assert [entry[1] for entry in store.audit] == ["account.cancelled"]


async def test_a_malformed_account_id_is_refused_before_the_store_is_touched() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    with pytest.raises(InvalidArgument) as refused:
        await flow(store).cancel("acme", "", INFO)
    assert refused.value.field == "account_id"
    assert await store.tenants() == []


async def test_the_store_sees_pseudonyms_and_a_sealed_account_id_only() -> None:
    seen = []
    store = MemoryErasureStore(WEDNESDAY_MS)
    cancel = store.cancel

    async def spy(tenant: str, cancellation: Any) -> int | None:
        seen.append(cancellation)
        return await cancel(tenant, cancellation)

    store.cancel = spy  # type: ignore[method-assign]
    await flow(store).cancel("acme", "user-1", INFO)
    (cancellation,) = seen
    assert cancellation.account_pseudonym == account("acme", "user-1")
    assert cancellation.audit_pseudonym == KEYRING.pseudonym("acme", "audit", "user-1")
    request = json.loads(cancellation.request_json)
    assert request["principal"] == "registrar01"
    assert request["account"] == cancellation.audit_pseudonym
    assert "user-1" not in cancellation.request_json


async def test_a_changing_account_is_read_again_and_refused_after_five_tries() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    store.stale_reads = 4
    assert await flow(store).cancel("acme", "user-1", INFO) == FRIDAY_MS
    store.stale_reads = 5
    with pytest.raises(StoreUnavailable) as refused:
        await flow(store).cancel("acme", "user-2", INFO)
    assert refused.value.reason == "CONTENDED"
    assert store.stale_reads == 0
    # Nothing of the refused cancel was queued.
    assert [s.item.subject for s in await store.scheduled("acme")] == [account("acme", "user-1")]


async def test_only_due_erasures_are_performed_in_every_tenant() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    erasures = flow(store)
    await erasures.cancel("acme", "user-1", INFO)
    await erasures.cancel("globex", "user-1", INFO)
    store.now = FRIDAY_MS - 1
    assert await erasures.erase_due() == 0
    assert store.holds_account("acme", account("acme", "user-1"))
    store.now = FRIDAY_MS
    assert await erasures.erase_due() == 2
    assert not store.holds_account("acme", account("acme", "user-1"))
    assert not store.holds_account("globex", account("globex", "user-1"))
    assert await erasures.erase_due() == 0  # nothing left: the queue entries went with them
    assert await erasures.pending() == []


async def test_a_caller_given_time_decides_what_is_due() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    erasures = flow(store)
    await erasures.cancel("acme", "user-1", INFO)
    store.now = FRIDAY_MS  # the store's clock would allow it, the time given does not
    assert await erasures.erase_due(now_ms=FRIDAY_MS - 1) == 0
    assert await erasures.erase_due(now_ms=FRIDAY_MS) == 1


async def test_the_queue_is_read_in_pages_until_it_is_empty() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    erasures = flow(store, working_days=0)
    for n in range(230):
        await erasures.cancel("acme", f"user-{n}", INFO)
    assert await erasures.erase_due() == 230
    assert await store.scheduled("acme") == []


async def test_an_identity_is_erased_once_no_account_is_bound_to_it() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    erasures = flow(store)
    store.bind("acme", account("acme", "user-1"), "ref1")
    store.bind("acme", account("acme", "user-2"), "ref1")
    await erasures.cancel("acme", "user-1", INFO)
    assert [s.item.kind for s in await store.scheduled("acme")] == [ErasureKind.ACCOUNT]
    await erasures.cancel("acme", "user-2", INFO)
    assert ErasureItem(ErasureKind.IDENTITY, "ref1") in [s.item for s in await store.scheduled("acme")]
    store.now = FRIDAY_MS
    assert await erasures.erase_due() == 3
    assert not store.holds_identity("acme", "ref1")
    assert ("acme", "identity.erased", "erased") in store.audit


async def test_an_identity_bound_again_before_its_erasure_is_kept() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    erasures = flow(store)
    store.bind("acme", account("acme", "user-1"), "ref1")
    await erasures.cancel("acme", "user-1", INFO)
    store.bind("acme", account("acme", "user-3"), "ref1")
    store.now = FRIDAY_MS
    assert await erasures.erase_due() == 2  # the entry leaves the queue either way
    assert store.holds_identity("acme", "ref1")
    assert ("acme", "identity.erased", "kept") in store.audit
    assert await store.scheduled("acme") == []


async def test_an_erasure_raced_away_is_not_counted() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    erasures = flow(store, working_days=0)
    await erasures.cancel("acme", "user-1", INFO)
    item = ErasureItem(ErasureKind.ACCOUNT, account("acme", "user-1"))
    assert await erasures.erase("acme", item)
    assert not await erasures.erase("acme", item)  # another worker's, now


async def test_an_account_changing_under_its_erasure_is_retried_then_refused() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    erasures = flow(store, working_days=0)
    await erasures.cancel("acme", "user-1", INFO)
    await erasures.cancel("acme", "user-2", INFO)
    store.stale_reads = 4
    assert await erasures.erase("acme", ErasureItem(ErasureKind.ACCOUNT, account("acme", "user-1")))
    store.stale_reads = 5
    with pytest.raises(StoreUnavailable) as refused:
        await erasures.erase("acme", ErasureItem(ErasureKind.ACCOUNT, account("acme", "user-2")))
    assert refused.value.reason == "CONTENDED"
    assert store.holds_account("acme", account("acme", "user-2"))


async def test_pending_erasures_soonest_first_and_which_are_overdue() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    erasures = flow(store, overdue_after_seconds=3600)
    await erasures.cancel("globex", "user-1", INFO)
    store.now += DAY_MS  # Thursday: due on Monday
    await erasures.cancel("acme", "user-2", INFO)
    store.now = FRIDAY_MS + 3600 * 1000 + 1
    pending = await erasures.pending()
    assert [(p.tenant, p.kind, p.overdue) for p in pending] == [
        ("globex", "account", True),
        ("acme", "account", False),
    ]
    assert pending[0].subject == account("globex", "user-1")
    assert await erasures.overdue_count() == 1
    assert [p.overdue for p in await erasures.pending(now_ms=FRIDAY_MS)] == [False, False]


async def test_a_worker_round_erases_and_an_unreachable_store_is_store_unavailable() -> None:
    store = MemoryErasureStore(WEDNESDAY_MS)
    erasures = flow(store, working_days=0)
    await erasures.cancel("acme", "user-1", INFO)
    assert await ErasureWorker(erasures, 30.0).run_once() == 1
    store.down = True
    with pytest.raises(StoreUnavailable):
        await erasures.cancel("acme", "user-2", INFO)
    with pytest.raises(StoreUnavailable):
        await ErasureWorker(erasures, 30.0).run_once()

"""IncidentFlow over an in-memory IncidentStore: what a report says, decided without Redis or gRPC.

The store is the shared in-memory one (``idverify.testing.memory_incident``); its answers are set
here as plain values (who read in which hour, how many distinct accounts and identities, what the
tenant holds), so each test shows one decision of the use case: the window and principals it
asks about, the exact and estimated figures, the threshold, the deadline, one report of a tenant
at a time. ``tests/unit/flows/test_incident.py`` runs the flow
over Redis with the real read accounting.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.incident_report import verify_report
from idverify.config import IncidentSettings
from idverify.domain.errors import InvalidArgument, RateLimited, StoreUnavailable
from idverify.flows.context import RequestInfo
from idverify.flows.incident import HOLDINGS_FIELDS, Holdings, IncidentFlow
from idverify.flows.incident_request import IncidentRequest
from idverify.flows.read_accounting import HOUR_MS, Category
from idverify.testing.memory_incident import FixedHeads, MemoryIncidentStore

KEY = Ed25519PrivateKey.generate()
H0 = 490_000  # an hour bucket (2025-11-24)
NOW_MS = (H0 + 48) * HOUR_MS
LEAKED = "c0ffee01"
OTHER = "beef0002"
INFO = RequestInfo(principal="admin01", request_id="r1")


def read(store: MemoryIncidentStore, hour: int, client: str, category: Category, accounts: range) -> None:
    """``client`` of acme read accounts ``a<n>``, each bound to one identity ``i<n>``, in ``hour``."""
    store.read(
        "acme",
        hour,
        client,
        category,
        accounts=(f"a{n}" for n in accounts),
        identities=(f"i{n}" for n in accounts),
    )


def flow(store: MemoryIncidentStore, threshold: int = 1000, **settings: Any) -> IncidentFlow:
    return IncidentFlow(
        store, FixedHeads(7, NOW_MS), KEY, IncidentSettings(threshold_people=threshold, **settings)
    )


def request(*principals: str, hours: int = 24, **more: Any) -> IncidentRequest:
    return IncidentRequest(
        principals=principals,
        since_ms=H0 * HOUR_MS,
        until_ms=(H0 + hours) * HOUR_MS,
        detected_ms=NOW_MS,
        **more,
    )


async def report(
    store: MemoryIncidentStore, wanted: IncidentRequest, threshold: int = 1000
) -> dict[str, Any]:
    signed, markdown = await flow(store, threshold).create("acme", wanted, INFO)
    verified = verify_report(signed, KEY.public_key())
    assert verified.ok, verified.problem
    assert "acme" in markdown
    return dict(verified.report)


async def test_only_the_named_clients_reads_in_the_window_are_counted() -> None:
    store = MemoryIncidentStore(NOW_MS)
    read(store, H0, LEAKED, Category.IP_LOCATION, range(100))
    read(store, H0 + 1, LEAKED, Category.IP_LOCATION, range(50, 150))  # 50 read again
    read(store, H0 + 1, OTHER, Category.IP_LOCATION, range(1000, 1900))
    read(store, H0 + 30, LEAKED, Category.IP_LOCATION, range(5000, 9000))  # after the window
    reads = (await report(store, request(LEAKED)))["reads"]
    assert reads["clients_that_read"] == [LEAKED]
    assert reads["all_categories"]["accounts"] == {"estimate": 150, "low": 146, "high": 154, "exact": False}
    assert reads["by_category"][str(Category.IP_LOCATION)]["identities"]["estimate"] == 150
    nothing = {"estimate": 0, "low": 0, "high": 0, "exact": True}
    other_categories = [str(c) for c in Category if c != Category.IP_LOCATION]
    assert all(reads["by_category"][c]["accounts"] == nothing for c in other_categories)


async def test_no_principal_named_counts_every_client() -> None:
    store = MemoryIncidentStore(NOW_MS)
    read(store, H0, LEAKED, Category.IP_LOCATION, range(100))
    read(store, H0, OTHER, Category.IP_LOCATION, range(1000, 1900))
    reads = (await report(store, request()))["reads"]
    assert reads["clients_that_read"] == [OTHER, LEAKED]
    assert reads["all_categories"]["identities"]["estimate"] == 1000


async def test_nothing_read_is_an_exact_zero_below_the_threshold() -> None:
    body = await report(MemoryIncidentStore(NOW_MS), request(LEAKED))
    assert body["reads"]["all_categories"]["identities"] == {
        "estimate": 0,
        "low": 0,
        "high": 0,
        "exact": True,
    }
    assert body["threshold"]["state"] == "no"
    assert body["threshold"]["crossed"] is False


@pytest.mark.parametrize(
    ("distinct", "state"),
    [(970, "no"), (990, "possibly: the threshold lies within the estimate's bounds; report"), (1030, "yes")],
)
async def test_the_threshold_is_judged_on_the_estimates_bounds(distinct: int, state: str) -> None:
    store = MemoryIncidentStore(NOW_MS)
    read(store, H0, LEAKED, Category.IP_LOCATION, range(distinct))
    assert (await report(store, request(LEAKED)))["threshold"]["state"] == state


async def test_a_store_breach_counts_what_the_tenant_holds_exactly() -> None:
    store = MemoryIncidentStore(NOW_MS)
    fields = dict.fromkeys(HOLDINGS_FIELDS, 0) | {"identities": 1200, "bound_accounts": 1300, "vf_phone": 4}
    store.held["acme"] = Holdings(
        keys_scanned=9000, accounts=1400, verifications=5, consents=3, audited=11, fields=fields
    )
    body = await report(store, request(LEAKED, store_breach=True))
    assert body["incident"]["kind"] == "store_breach"
    assert body["threshold"]["affected"] == {"estimate": 1200, "low": 1200, "high": 1200, "exact": True}
    assert body["threshold"]["state"] == "yes"
    holdings = body["holdings"]
    assert (holdings["accounts"], holdings["bound_accounts"], holdings["verifications_in_progress"]) == (
        1400,
        1300,
        5,
    )
    assert holdings["sealed_values"]["phone_number"] == 4
    assert holdings["by_category"] == {"verification": 1300, "ip_location": 0, "consent": 3, "audit": 11}


async def test_the_report_entry_is_appended_and_the_head_named() -> None:
    store = MemoryIncidentStore(NOW_MS)
    body = await report(store, request(LEAKED, OTHER, LEAKED))
    [(tenant, entry)] = store.entries
    assert tenant == "acme"
    assert (entry.kind, entry.since_ms, entry.until_ms, entry.principals) == (
        "reads",
        H0 * HOUR_MS,
        (H0 + 24) * HOUR_MS,
        3,
    )
    assert '"principal": "admin01"' in entry.request_fields
    assert body["incident"]["principals"] == [LEAKED, OTHER]  # named once each
    assert body["audit_log"]["tree_size"] == 7


async def test_the_deadline_runs_from_detection() -> None:
    store = MemoryIncidentStore(NOW_MS)
    plain = await flow(store, report_hours=4).create("acme", request(LEAKED), INFO)
    critical = await flow(store, critical_report_hours=1).create(
        "acme", request(LEAKED, critical_infrastructure=True), INFO
    )
    due = [verify_report(signed, KEY.public_key()).report["deadline"] for signed, _ in (plain, critical)]
    assert [d["hours"] for d in due] == ["4", "1"]
    assert due[0]["due"] == "2025-11-26T20:00:00.000Z"
    assert due[1]["due"] == "2025-11-26T17:00:00.000Z"


async def test_one_report_of_a_tenant_at_a_time_and_the_lock_is_released_even_on_failure() -> None:
    store = MemoryIncidentStore(NOW_MS)
    await store.try_lock("acme", 600.0)  # another worker's report
    with pytest.raises(RateLimited) as refused:
        await flow(store).create("acme", request(LEAKED), INFO)
    assert refused.value.reason == "REPORT_IN_PROGRESS"
    store.locks.clear()
    store.lock_seconds.clear()
    store.fail_holdings = True
    with pytest.raises(StoreUnavailable):
        await flow(store).create("acme", request(LEAKED), INFO)
    assert store.locks == {}
    assert store.lock_seconds == [600.0]
    assert store.entries == []


@pytest.mark.parametrize("field", ["detected_ms", "since_ms"])
async def test_a_time_in_the_future_is_refused_before_any_lock(field: str) -> None:
    store = MemoryIncidentStore(NOW_MS)
    future = NOW_MS + 3_600_000
    wanted = request(LEAKED, hours=1)
    changed = IncidentRequest(
        principals=wanted.principals,
        since_ms=future if field == "since_ms" else wanted.since_ms,
        until_ms=future + HOUR_MS,
        detected_ms=future if field == "detected_ms" else wanted.detected_ms,
    )
    with pytest.raises(InvalidArgument) as refused:
        await flow(store).create("acme", changed, INFO)
    assert refused.value.reason == "IN_THE_FUTURE"
    assert store.lock_seconds == []

"""ReadLedger over in-memory ReadRecords: what is recorded and when a minute closes, without Redis.

``tests/unit/flows/test_read_ledger.py`` runs the ledger over Redis with the scripts that record.
"""

from __future__ import annotations

import pytest

from idverify.domain.errors import InvalidArgument
from idverify.flows.read_accounting import MINUTE_MS, Category, Reader, ReadLedger, accounts_digest
from idverify.privacy.keyring import Keyring
from idverify.testing.memory_read_records import MemoryReadRecords

KEYRING = Keyring.generate()
MINUTE = 29_400_000  # a minute of the store clock (2025-11-24)
LEAKED = Reader("c0ffee", "t/platform/c0ffee", "GetAccount")
OTHER = Reader("beef00", "t/platform/beef00", "ListConsents")


def ps(account_id: str) -> str:
    return KEYRING.pseudonym("acme", "account", account_id)


def ledger(store: MemoryReadRecords, delay_seconds: float = 60.0) -> ReadLedger:
    return ReadLedger(store, KEYRING, 7, summary_delay_seconds=delay_seconds)


@pytest.fixture
def store() -> MemoryReadRecords:
    records = MemoryReadRecords(MINUTE * MINUTE_MS + 1_000)
    records.accounts["acme", ps("a1")] = "ref-1"
    records.accounts["acme", ps("a2")] = ""
    return records


async def test_reads_are_recorded_by_pseudonym_and_only_existing_accounts_count(
    store: MemoryReadRecords,
) -> None:
    reads = ledger(store)
    assert await reads.record("acme", LEAKED, [Category.VERIFICATION], ["a1", "a2", "nobody"]) == 2
    assert await reads.record("acme", LEAKED, [Category.VERIFICATION], ["nobody"], only_existing=False) == 1
    member = f"{MINUTE}:{LEAKED.client_id}"
    assert await store.minute_accounts("acme", member) == {ps("a1"), ps("a2"), ps("nobody")}
    hour = MINUTE * MINUTE_MS // 3_600_000
    assert store.hours["acme", hour, LEAKED.client_id, "verification"] == (
        {ps("a1"), ps("a2"), ps("nobody")},
        {"ref-1"},
    )


async def test_a_malformed_account_id_is_refused_and_nothing_recorded(store: MemoryReadRecords) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await ledger(store).record("acme", LEAKED, [Category.VERIFICATION], ["a1", ""])
    assert refused.value.field == "account_id"
    assert store.minutes == {}


async def test_a_call_opens_its_minute_with_no_account(store: MemoryReadRecords) -> None:
    await ledger(store).record_call("acme", OTHER, [Category.AUDIT])
    [member] = await store.open_minutes("acme", MINUTE)
    assert await store.minute_accounts("acme", member) == frozenset()


@pytest.mark.parametrize("delay_seconds", [60.0, 1.0])
async def test_a_minute_closes_once_its_delay_has_passed(
    store: MemoryReadRecords, delay_seconds: float
) -> None:
    reads = ledger(store, delay_seconds)
    await reads.record("acme", LEAKED, [Category.VERIFICATION], ["a1"])
    closes_at = (MINUTE + 1) * MINUTE_MS + round(delay_seconds * 1000)
    store.now = closes_at - 1
    assert await reads.close_minutes("acme") == 0
    store.now = closes_at
    assert await reads.close_minutes("acme") == 1
    assert await reads.close_minutes("acme") == 0  # closed once
    [summary] = store.summaries
    assert summary.principal == LEAKED.principal
    assert summary.attributes["digest"] == accounts_digest([ps("a1")])
    assert summary.attributes["accounts"] == "1"


async def test_each_principal_and_minute_is_its_own_summary(store: MemoryReadRecords) -> None:
    reads = ledger(store)
    await reads.record("acme", LEAKED, [Category.VERIFICATION], ["a1"])
    await reads.record("acme", OTHER, [Category.CONSENT], ["a1", "a2"])
    store.now = (MINUTE + 1) * MINUTE_MS + 5_000
    await reads.record("acme", LEAKED, [Category.VERIFICATION], ["a2"])  # the next minute: still open
    store.now = (MINUTE + 2) * MINUTE_MS + 59_999
    assert await reads.close_minutes("acme") == 2
    assert sorted((s.principal, s.attributes["accounts"]) for s in store.summaries) == [
        (OTHER.principal, "2"),
        (LEAKED.principal, "1"),
    ]
    assert await store.open_minutes("acme", MINUTE + 5) == [f"{MINUTE + 1}:{LEAKED.client_id}"]


class ReadMidDigest(MemoryReadRecords):
    """A store where a read lands between the digest's read of a minute and its closing, once."""

    def __init__(self, now_ms: int) -> None:
        super().__init__(now_ms)
        self.late_read = True

    async def minute_accounts(self, tenant: str, minute: str) -> frozenset[str]:
        accounts = await super().minute_accounts(tenant, minute)
        if self.late_read:
            self.late_read = False
            self.minutes[tenant, minute].accounts.add("late")
        return accounts


async def test_a_minute_changed_after_its_digest_is_left_for_the_next_round() -> None:
    store = ReadMidDigest(MINUTE * MINUTE_MS)
    reads = ledger(store)
    await reads.record("acme", LEAKED, [Category.VERIFICATION], ["a1"], only_existing=False)
    store.now = (MINUTE + 2) * MINUTE_MS
    assert await reads.close_minutes("acme") == 0  # CHANGED: no entry with a stale digest
    assert store.summaries == []
    assert await reads.close_minutes("acme") == 1
    assert store.summaries[0].attributes["digest"] == accounts_digest([ps("a1"), "late"])

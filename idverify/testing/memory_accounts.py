"""An in-memory ``AccountStore``: accounts, login labels and recorded reads without Redis.

It keeps what the Redis implementation keeps for these use cases: the account's stored facts,
its login label (parts, wire form, the store's time) with a ``login_ip.recorded`` entry, and the
reads ``ip_labels.lua`` records. ``tests/unit/usecases/test_accounts_store.py`` holds it to
``store.accounts.RedisAccounts``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from idverify.flows.accounts import AccountRecord, LoginLabel, StoredLocation
from idverify.flows.read_accounting import Reader
from idverify.testing.unreachable import refuse_if_down

__all__ = ["BOUND_ACCOUNT", "LabelEntry", "MemoryAccounts", "RecordedRead"]

_EMPTY = AccountRecord("", 0, "", "", "", "", None, "", None, 0, 0)

# An account bound by a person's document and phone: no birth date sealed, no login label, nothing due.
BOUND_ACCOUNT = AccountRecord(
    identity="v1.ref",
    verified_ms=1_700_000_000_000,
    method="ric_phone",
    assurance="substantial",
    kind="person",
    age_band="",
    age_source="document",
    birth_sealed="",
    location=None,
    erase_due_ms=0,
    superseded_ms=0,
)


@dataclass(frozen=True, slots=True)
class LabelEntry:
    """One ``login_ip.recorded`` audit entry: it names the database, never the label."""

    tenant: str
    source: str
    source_build_date: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RecordedRead:
    """One batch read as recorded: who, and the accounts (and their identities) that had a label."""

    tenant: str
    reader: Reader
    accounts: tuple[str, ...]
    identities: tuple[str, ...]


@dataclass
class MemoryAccounts:
    """Accounts set by the test (``put``); labels and reads kept as the scripts keep them.

    ``clock_ms`` is the store's clock; ``down`` makes every call raise StoreUnavailable.
    """

    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    down: bool = False
    records: dict[tuple[str, str], AccountRecord] = field(default_factory=dict)
    wires: dict[tuple[str, str], bytes] = field(default_factory=dict)
    entries: list[LabelEntry] = field(default_factory=list)
    reads: list[RecordedRead] = field(default_factory=list)

    def put(self, tenant: str, account: str, record: AccountRecord) -> None:
        """Stores an account as a verification (or an earlier release) would have."""
        self.records[(tenant, account)] = record

    def _reach(self) -> None:
        refuse_if_down(self.down)

    async def account(self, tenant: str, account: str) -> AccountRecord | None:
        """The stored account, if any."""
        self._reach()
        return self.records.get((tenant, account))

    async def record_login_label(
        self, tenant: str, account: str, label: LoginLabel, audit: Mapping[str, str]
    ) -> None:
        """As ``login_ip.lua``: the label on the account (created if absent), and its entry."""
        self._reach()
        location = StoredLocation(
            label.display,
            label.display_en,
            label.country_code,
            label.region_code,
            label.source,
            label.source_build_date,
            self.clock_ms(),
        )
        record = self.records.get((tenant, account), _EMPTY)
        self.records[(tenant, account)] = replace(record, location=location)
        self.wires[(tenant, account)] = label.wire
        self.entries.append(LabelEntry(tenant, label.source, label.source_build_date, dict(audit)))

    async def ip_labels(
        self, tenant: str, accounts: Sequence[str], reader: Reader | None
    ) -> list[bytes | StoredLocation | None]:
        """As ``ip_labels.lua``: the wire form, else the parts, else None; the read recorded."""
        self._reach()
        labels: list[bytes | StoredLocation | None] = []
        read: list[str] = []
        identities: list[str] = []
        for account in accounts:
            record = self.records.get((tenant, account))
            wire = self.wires.get((tenant, account))
            label = wire if wire is not None else (record.location if record else None)
            labels.append(label)
            if label is not None:
                read.append(account)
                if record is not None and record.identity:
                    identities.append(record.identity)
        if reader is not None:
            self.reads.append(RecordedRead(tenant, reader, tuple(read), tuple(identities)))
        return labels

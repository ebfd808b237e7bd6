"""An in-memory ``flows.read_accounting.ReadRecords``: the read ledger's records without Redis.

It keeps what the prelude's ``record_reads`` and ``reads_close.lua`` keep, as sets and counts:
per hour, client and category the accounts and identities read (exact sets where Redis keeps
HyperLogLogs), the hour's readers, and per minute and client the accounts read and the calls
and reads per RPC, closed into summaries. ``tests/unit/usecases/test_read_records_contract.py``
checks it against ``store.read_records.RedisReadRecords``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from idverify.flows.read_accounting import HOUR_MS, MINUTE_MS, Category, MinuteClose, Reader

__all__ = ["MemoryReadRecords", "Summary"]


@dataclass(slots=True)
class _Minute:
    minute: int
    principal: str = ""
    accounts: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Summary:
    """A ``reads.summarized`` entry: who, and its attributes."""

    tenant: str
    principal: str
    attributes: dict[str, str]


class MemoryReadRecords:
    """The read ledger's records; ``now`` is the store's clock (the wall clock when None).

    ``accounts`` maps a tenant's account pseudonyms to their bound identity ref ("" when
    unbound): the account records a read may count.
    """

    def __init__(self, now_ms: int | None = None) -> None:
        self.now = now_ms
        self.accounts: dict[tuple[str, str], str] = {}
        self.hours: dict[tuple[str, int, str, str], tuple[set[str], set[str]]] = {}
        self.who: dict[tuple[str, int], set[str]] = {}
        self.minutes: dict[tuple[str, str], _Minute] = {}
        self.summaries: list[Summary] = []

    async def now_ms(self) -> int:
        """The store's clock, in ms of the epoch."""
        return self.now if self.now is not None else time.time_ns() // 1_000_000

    async def record(
        self,
        tenant: str,
        reader: Reader,
        categories: Sequence[Category],
        retention_days: int,  # noqa: ARG002 - nothing expires here
        account_pseudonyms: Sequence[str],
        *,
        only_existing: bool,
    ) -> int:
        """Records a read of the accounts (none: a call); the number of accounts counted."""
        counted = [ps for ps in account_pseudonyms if not only_existing or (tenant, ps) in self.accounts]
        identities = [ref for ps in counted if (ref := self.accounts.get((tenant, ps), ""))]
        now = await self.now_ms()
        hour, minute = now // HOUR_MS, now // MINUTE_MS
        if counted:
            for category in categories:
                accounts, ids = self.hours.setdefault(
                    (tenant, hour, reader.client_id, str(category)), (set(), set())
                )
                accounts.update(counted)
                ids.update(identities)
        member = f"{minute}:{reader.client_id}"
        record = self.minutes.setdefault((tenant, member), _Minute(minute))
        record.accounts.update(counted)
        calls = f"calls:{reader.rpc}"
        first = calls not in record.counts
        record.counts[calls] = record.counts.get(calls, 0) + 1
        if counted or first:
            reads = f"accounts:{reader.rpc}"
            record.counts[reads] = record.counts.get(reads, 0) + len(counted)
        if first:
            record.principal = reader.principal
            self.who.setdefault((tenant, hour), set()).add(reader.client_id)
        return len(counted)

    async def open_minutes(self, tenant: str, through_minute: int) -> list[str]:
        """The open minutes (``<minute>:<client id>``) up to ``through_minute``, oldest first."""
        return [
            member
            for _, member in sorted(
                (record.minute, member)
                for (t, member), record in self.minutes.items()
                if t == tenant and record.minute <= through_minute
            )
        ]

    async def minute_accounts(self, tenant: str, minute: str) -> frozenset[str]:
        """The account pseudonyms read in an open minute."""
        record = self.minutes.get((tenant, minute))
        return frozenset(record.accounts) if record is not None else frozenset()

    async def close_minute(
        self, tenant: str, minute: str, accounts: int, digest: str, delay_ms: int
    ) -> MinuteClose:
        """Writes the minute's summary, if it is still open, ``delay_ms`` past its end, unchanged."""
        record = self.minutes.get((tenant, minute))
        if record is None:
            return MinuteClose.GONE
        if (record.minute + 1) * MINUTE_MS + delay_ms > await self.now_ms():
            return MinuteClose.OPEN
        if len(record.accounts) != accounts:
            return MinuteClose.CHANGED
        attributes = {
            "client_id": minute.split(":", 1)[1],
            "minute_ms": str(record.minute * MINUTE_MS),
            "accounts": str(accounts),
            "digest": digest,
            "calls": str(sum(n for name, n in record.counts.items() if name.startswith("calls:"))),
        } | {name: str(n) for name, n in record.counts.items()}
        self.summaries.append(Summary(tenant, record.principal, attributes))
        del self.minutes[tenant, minute]
        return MinuteClose.CLOSED

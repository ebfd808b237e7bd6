"""In-memory ``flows.incident`` ports: the ``IncidentStore``, its ``HeldLock``, and ``SignedHeads``.

The reads are exact sets where Redis keeps HyperLogLogs, so a count here is the true distinct
count and Redis's lies within its standard error of it; everything else answers exactly as
``store.incident_reads.RedisIncidentStore`` does. ``tests/unit/usecases/test_incident_contract.py``
runs one contract suite on both.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from idverify.audit.checkpoint import SignedHead, TreeHead
from idverify.flows.incident import HOLDINGS_FIELDS, Holdings, ReadFigure, ReportEntry
from idverify.flows.read_accounting import Category
from idverify.testing.unreachable import refuse_if_down

__all__ = ["FixedHeads", "MemoryIncidentStore", "MemoryLock", "nothing_held"]

_tokens = itertools.count(1)


def nothing_held() -> Holdings:
    """The holdings of a tenant with no keys."""
    return Holdings(0, 0, 0, 0, 0, dict.fromkeys(HOLDINGS_FIELDS, 0))


@dataclass(slots=True)
class _Reads:
    accounts: set[str] = field(default_factory=set)
    identities: set[str] = field(default_factory=set)


class MemoryLock:
    """A tenant's report lock, held by one report until released or expired."""

    def __init__(self, store: MemoryIncidentStore, tenant: str, token: int) -> None:
        self._store = store
        self._tenant = tenant
        self._token = token

    async def release(self) -> None:
        """Releases the lock if it is still this one's; one that expired and was taken stays taken."""
        held = self._store.locks.get(self._tenant)
        if held is not None and held[0] == self._token:
            del self._store.locks[self._tenant]


class MemoryIncidentStore:
    """An ``IncidentStore`` whose reads are sets, per tenant, hour, client and category.

    ``now`` is the store's clock (the wall clock when None); ``held`` the holdings of each tenant
    (none held by default); ``entries`` the appended report entries; ``fail_holdings`` makes
    ``holdings`` raise StoreUnavailable, as a Redis lost in the middle of a report would.
    """

    def __init__(self, now_ms: int | None = None) -> None:
        self.now = now_ms
        self.locks: dict[str, tuple[int, float]] = {}  # tenant -> (token, monotonic expiry)
        self.lock_seconds: list[float] = []
        self.reads: dict[tuple[str, int, str, str], _Reads] = {}
        self.held: dict[str, Holdings] = {}
        self.entries: list[tuple[str, ReportEntry]] = []
        self.fail_holdings = False

    def read(
        self,
        tenant: str,
        hour: int,
        client: str,
        category: Category,
        *,
        accounts: Iterable[str],
        identities: Iterable[str],
    ) -> None:
        """Records that ``client`` read ``accounts`` (bound to ``identities``) in ``hour``."""
        held = self.reads.setdefault((tenant, hour, client, str(category)), _Reads())
        held.accounts.update(accounts)
        held.identities.update(identities)

    async def now_ms(self) -> int:
        """The store's clock, in ms of the epoch."""
        return self.now if self.now is not None else time.time_ns() // 1_000_000

    async def try_lock(self, tenant: str, seconds: float) -> MemoryLock | None:
        """The tenant's report lock for at most ``seconds``, or None while another report holds it."""
        held = self.locks.get(tenant)
        if held is not None and held[1] > time.monotonic():
            return None
        token = next(_tokens)
        self.locks[tenant] = (token, time.monotonic() + seconds)
        self.lock_seconds.append(seconds)
        return MemoryLock(self, tenant, token)

    async def readers(self, tenant: str, hours: Sequence[int]) -> list[list[str]]:
        """The clients that read in each of ``hours``, sorted."""
        return [sorted({c for t, h, c, _ in self.reads if t == tenant and h == hour}) for hour in hours]

    async def read_figures(self, tenant: str, pairs: Sequence[tuple[int, str]]) -> list[ReadFigure]:
        """Distinct accounts and identities read by the ``(hour, client)`` pairs, per category and in any."""
        figures = []
        for kind in ("accounts", "identities"):
            every: set[str] = set()
            for category in Category:
                union: set[str] = set()
                for hour, client in pairs:
                    reads = self.reads.get((tenant, hour, client, str(category)))
                    if reads is not None:
                        union |= reads.accounts if kind == "accounts" else reads.identities
                every |= union
                figures.append(ReadFigure(str(category), kind, not pairs, len(union)))
            figures.append(ReadFigure("*", kind, not pairs, len(every)))
        return figures

    async def append_report(self, tenant: str, entry: ReportEntry) -> None:
        """Appends the report's entry (kept in ``entries``)."""
        self.entries.append((tenant, entry))

    async def holdings(self, tenant: str) -> Holdings:
        """What ``held`` says the tenant holds; nothing when it says nothing."""
        refuse_if_down(self.fail_holdings)
        return self.held.get(tenant, nothing_held())


class FixedHeads:
    """``SignedHeads`` that answer one head of ``size`` entries for every tenant (not a real signature)."""

    def __init__(self, size: int, timestamp_ms: int) -> None:
        self.size = size
        self.timestamp_ms = timestamp_ms

    async def signed_head(self, tenant: str) -> SignedHead:
        """A head of the tenant's log, its root and signature fixed bytes."""
        head = TreeHead(f"idverify/{tenant}", self.size, b"\x01" * 32, self.timestamp_ms)
        return SignedHead(head, "key1", b"\x00" * 64)

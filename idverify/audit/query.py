"""Filtered reads of an audit log that page through millions of entries in bounded memory.

A query is cut to the log as it was when the query began (so it ends), and to the index range
its time bounds map to (entry times never decrease, so one binary search in Redis finds each
end). Every filter field is indexed (a posting of entry numbers per account, type, outcome and
method); candidates come from the field with the fewest entries in range, as the union of the
postings of its values, and the other fields filter them. With no filter, every index in range
is a candidate. Candidates are read ``PAGE`` at a time, decoded and filtered; nothing holds more
than one page, whatever the size of the log.

The log is read through :class:`IndexedLog` (``store.audit_store.AuditStore`` over Redis, whose
``audit_seek.lua`` does the binary searches; ``testing.memory_audit_log.MemoryAuditLog`` in memory).
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from idverify.audit.events import AuditEvent, EntryDamaged, EntryFormatError, parse_entry

__all__ = [
    "PAGE",
    "EventFilter",
    "IndexedLog",
    "Posting",
    "PostingSeek",
    "QueryResult",
    "StagedAt",
    "run_query",
]

PAGE = 256
"""Entries read per round trip."""

POSTING_BLOCK = 2048
"""Indices read from one posting per round trip (12 KiB)."""


@dataclass(frozen=True, slots=True)
class Posting:
    """One index posting of a tenant's log: the entry numbers whose ``field`` has ``value``.

    Attributes:
        field: ``type``, ``outcome``, ``method`` or ``acct`` (the account's audit pseudonym).
        value: the field's value (an empty value has no posting).
    """

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class PostingSeek:
    """Where an entry number falls in a posting: the position of the first at or after it, and its length."""

    position: int
    length: int


class IndexedLog(Protocol):
    """The reads a query makes of a tenant's log (every method may raise StoreUnavailable)."""

    async def size(self, tenant: str) -> int:
        """Entries in the log."""
        ...

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The entries' bytes, in order; None where there is none."""
        ...

    async def leaf_hashes(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The entries' leaf hashes as stored in the tree; None where not integrated."""
        ...

    async def seek_times(self, tenant: str, times_ms: Sequence[int]) -> list[int]:
        """For each time, the index of the first entry at or after it (the size if none)."""
        ...

    async def seek_postings(self, tenant: str, postings: Sequence[Posting], index: int) -> list[PostingSeek]:
        """For each posting, where the entry number ``index`` falls in it."""
        ...

    async def read_posting(self, tenant: str, posting: Posting, position: int, count: int) -> list[int]:
        """Up to ``count`` indices of a posting from ``position`` on."""
        ...


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What a query asks for; empty fields match everything.

    Attributes:
        start_ms: first time included (ms since the epoch), or None.
        end_ms: first time excluded, or None.
        types: event types, any of them.
        outcomes: outcomes, any of them.
        method: one verification method.
        accounts: the account's audit pseudonyms (one per pepper version still readable).
        start_index: the first index to consider.
        limit: stop after this many events (0: no limit).
        end_index: the first index not considered, or None for the log's size when the query
            begins (a caller that read the size itself fixes the cut there).
    """

    start_ms: int | None = None
    end_ms: int | None = None
    types: frozenset[str] = frozenset()
    outcomes: frozenset[str] = frozenset()
    method: str = ""
    accounts: tuple[str, ...] = ()
    start_index: int = 0
    limit: int = 0
    end_index: int | None = None

    def matches(self, event: AuditEvent) -> bool:
        """Whether an event passes the filter's non-index conditions."""
        return (
            (not self.types or event.type in self.types)
            and (not self.outcomes or event.outcome in self.outcomes)
            and (not self.method or event.method == self.method)
            and (not self.accounts or event.account in self.accounts)
            and (self.start_ms is None or event.time_ms >= self.start_ms)
            and (self.end_ms is None or event.time_ms < self.end_ms)
        )


@dataclass(frozen=True, slots=True)
class StagedAt:
    """Where an entry not yet in the log was staged: its tenant's bucket and its stream id there."""

    bucket: int
    stream_id: str


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One matching entry.

    Attributes:
        event: the decoded entry (for a pending one: number 0, the time it was staged).
        leaf: its stored bytes, the Merkle leaf (empty for a pending one: fixed when numbered).
        stored_leaf_hash: its leaf hash as stored in the tree, or None while not integrated.
        pending: where it was staged, for an entry not yet in the log (``audit.pending``).
    """

    event: AuditEvent
    leaf: bytes
    stored_leaf_hash: bytes | None
    pending: StagedAt | None = None


def decoded_entry(index: int, leaf: bytes | None) -> tuple[AuditEvent, bytes]:
    """Entry ``index`` of a log decoded from its stored bytes (None: none stored), and the bytes.

    Raises:
        EntryDamaged: it is missing, does not decode, or names another number ("AUDIT_ENTRY_DAMAGED").
    """
    if leaf is None:
        raise EntryDamaged(index, "it is missing")
    try:
        event = parse_entry(leaf)
    except EntryFormatError as error:
        raise EntryDamaged(index, str(error)) from None
    if event.index != index:
        raise EntryDamaged(index, f"it says it is entry {event.index}")
    return event, leaf


async def run_query(store: IndexedLog, tenant: str, query: EventFilter) -> AsyncIterator[QueryResult]:
    """The entries of a tenant's log that match, in index order.

    Raises:
        EntryDamaged: when a stored entry does not decode (the store was altered); the entries
            before it were given.
        StoreUnavailable: when Redis cannot be reached.
    """
    low, high = await _index_range(store, tenant, query)
    if low >= high:
        return
    sent = 0
    async for page in _candidate_pages(store, tenant, query, low, high):
        leaves = await store.entries(tenant, page)
        stored = await store.leaf_hashes(tenant, page)
        for index, stored_leaf, stored_hash in zip(page, leaves, stored, strict=True):
            event, leaf = decoded_entry(index, stored_leaf)
            if not query.matches(event):
                continue
            yield QueryResult(event, leaf, stored_hash)
            sent += 1
            if query.limit and sent >= query.limit:
                return


async def _index_range(store: IndexedLog, tenant: str, query: EventFilter) -> tuple[int, int]:
    high = await store.size(tenant)
    if query.end_index is not None:
        high = min(high, query.end_index)
    low = query.start_index
    times = [t for t in (query.start_ms, query.end_ms) if t is not None]
    if times and low < high:
        found = iter(await store.seek_times(tenant, times))
        if query.start_ms is not None:
            low = max(low, next(found))
        if query.end_ms is not None:
            high = min(high, next(found))
    return low, high


async def _candidate_pages(
    store: IndexedLog, tenant: str, query: EventFilter, low: int, high: int
) -> AsyncIterator[list[int]]:
    # Every filter field has postings; candidates come from the field whose postings hold the
    # fewest indices from ``low`` on (the union of its values), and the others filter them.
    dimensions = [
        [Posting(kind, value) for value in sorted(values)]
        for kind, values in (
            ("acct", query.accounts),
            ("type", query.types),
            ("outcome", query.outcomes),
            ("method", (query.method,) if query.method else ()),
        )
        if values
    ]
    if not dimensions:
        for first in range(low, high, PAGE):
            yield list(range(first, min(first + PAGE, high)))
        return
    sought = iter(await store.seek_postings(tenant, [p for postings in dimensions for p in postings], low))
    options = [[(p, next(sought)) for p in postings] for postings in dimensions]
    best = min(options, key=lambda found: sum(seek.length - seek.position for _, seek in found))
    streams = [_posting(store, tenant, p, seek.position, high) for p, seek in best]
    page: list[int] = []
    async for index in _merge(streams):
        page.append(index)
        if len(page) == PAGE:
            yield page
            page = []
    if page:
        yield page


async def _posting(
    store: IndexedLog, tenant: str, posting: Posting, position: int, high: int
) -> AsyncIterator[int]:
    while True:
        block = await store.read_posting(tenant, posting, position, POSTING_BLOCK)
        for index in block:
            if index >= high:
                return
            yield index
        if len(block) < POSTING_BLOCK:
            return
        position += len(block)


async def _merge(streams: Sequence[AsyncIterator[int]]) -> AsyncIterator[int]:
    """The union of ascending streams, ascending, each index once."""
    heap: list[tuple[int, int]] = []
    for number, stream in enumerate(streams):
        first = await anext(stream, None)
        if first is not None:
            heap.append((first, number))
    heapq.heapify(heap)
    last = -1
    while heap:
        index, number = heapq.heappop(heap)
        if index != last:
            yield index
            last = index
        following = await anext(streams[number], None)
        if following is not None:
            heapq.heappush(heap, (following, number))

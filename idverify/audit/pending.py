"""Audit entries staged and not yet in the log (issue 26): QueryEvents' ``include_pending``.

An entry staged in one of a tenant's buckets (``audit.sequencer``) is in no query, head or proof
until a worker's loop has sequenced it, half a second or so later. An auditor who asks sees
them after the log's entries, marked pending with their staged position, and only as what they
will be in the log: the body the sequencer would append, judged by the sequencer's own check
(``audit_stage_read.lua`` runs the prelude's ``staged_event``), so a record planted or altered
in Redis, which the sequencer will refuse, is never shown; nothing else of a record (the sealed
account id, whose, the span the outbox takes) leaves Redis.

A query's pending part is cut with its log part, neither missing nor doubling an entry that a
sequencer moves from one to the other meanwhile: the stage streams are read first
(:func:`staged_snapshot`), then the log's size, which ends the log part; afterwards
(:func:`not_in_log_part`), a record the bucket's cursor has passed since is looked up by its
receipt and left out when its number is below that size (it was in the log part, or could have
been). A record sequenced after the size was read is still shown pending: it was, at the cut.

The work is bounded: at most ``PENDING_READ`` records read in all, buckets in order, each
bucket's in stream order (the streams hold little: every worker sequences them twice a second):
the first bucket's read beside one read of the other buckets' stream lengths, then the reads
those lengths plan; and one read of the cursors. When more is staged than that, the query says
where its read stopped (:class:`PendingReadLimit`), and the next one walks on from there
(``after``): a walk over the staged positions, buckets in order, that never shows a position
twice, while an entry sequenced between two queries is in the log part of the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from idverify.audit.events import ENTRY_VERSION, AuditEvent, EntryFormatError, parse_entry
from idverify.audit.query import EventFilter, StagedAt
from idverify.audit.sequencer import PositionState, StagedPosition, stream_order
from idverify.domain.errors import FailedPrecondition

__all__ = [
    "BEFORE_EVERY_RECORD",
    "PENDING_READ",
    "PendingEntry",
    "PendingReadLimit",
    "PendingSnapshot",
    "PendingStages",
    "StagedRead",
    "StagedView",
    "not_in_log_part",
    "staged_snapshot",
]

PENDING_READ = 1024
"""Staged records one query reads at most, over all its tenant's buckets: the pending part of a
query shows what the sequencer has not reached yet, a backlog of that size is already seconds of
a sequencer's work (docs/PERFORMANCE.md), and a query holds its pending part in memory until its
log part has been sent."""

BEFORE_EVERY_RECORD = "0-0"
"""The stream id a walk starts a bucket after: below every id Redis gives (XADD refuses 0-0)."""


@dataclass(frozen=True, slots=True)
class StagedView:
    """A staged record as the sequencer would judge it.

    Attributes:
        stream_id: its id in its bucket's stream.
        staged_ms: when it was staged (0 for a record the sequencer would refuse).
        body: the entry's bytes after its number and time, or None when the sequencer would
            refuse the record (not what ``audit_stage`` writes).
    """

    stream_id: str
    staged_ms: int
    body: bytes | None


@dataclass(frozen=True, slots=True)
class StagedRead:
    """What one read of a bucket's stream gave, and whether the stream goes on past it.

    Attributes:
        views: the records read, in stream order.
        more: whether the stream held a record after the last one read (the read's count cut it).
    """

    views: list[StagedView]
    more: bool


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """A staged entry that matches a query: where it was staged, and what it records (number 0)."""

    at: StagedAt
    event: AuditEvent


@dataclass(frozen=True, slots=True)
class PendingSnapshot:
    """A query's read of the stages.

    Attributes:
        found: the matching entries among the records read, buckets in order, each in stream order.
        cut_after: where the read stopped when ``PENDING_READ`` cut it (the last record read, or
            where the read began when it read none): records may be staged after it that were
            not read. None when every bucket was read to its end.
    """

    found: list[PendingEntry]
    cut_after: StagedAt | None


class PendingReadLimit(FailedPrecondition):
    """A query read the ``PENDING_READ`` staged records one query reads, and more were staged.

    Raised after the query's entries; its metadata says where the next query goes on, with the
    same filters: ``start_index`` (where its log part ended) and ``pending_bucket`` and
    ``pending_stream_id`` (its ``pending_after``). Not retried unchanged: the same query reads
    the same records again.
    """

    default_reason = "PENDING_READ_LIMIT"

    def __init__(self, start_index: int, after: StagedAt) -> None:
        super().__init__(
            f"this query read the {PENDING_READ} staged records one query reads, and more are staged: "
            "ask again with the same filters, start_index and pending_after from this error's metadata"
        )
        self.start_index = start_index
        self.after = after
        self.metadata.update(
            start_index=str(start_index), pending_bucket=str(after.bucket), pending_stream_id=after.stream_id
        )


class PendingStages(Protocol):
    """The reads of a tenant's stage streams a pending query makes (each may raise StoreUnavailable)."""

    async def staged_counts(self, tenant: str, buckets: Sequence[int]) -> list[int]:
        """How many records each of ``buckets``' streams holds, in the same order."""
        ...

    async def read_staged(self, tenant: str, bucket: int, count: int, after: str = "") -> StagedRead:
        """The first ``count`` records of ``bucket``'s stream after the id ``after`` ('' from its first).

        Each judged as the sequencer judges it.
        """
        ...

    async def cursors(self, tenant: str) -> dict[int, str]:
        """Each bucket's cursor: the last stream id sequenced (buckets never sequenced are absent)."""
        ...

    async def position(self, tenant: str, bucket: int, stream_id: str) -> StagedPosition:
        """Whether the entry staged at ``stream_id`` in ``bucket`` is pending, and its number if not."""
        ...


async def staged_snapshot(
    stages: PendingStages, tenant: str, buckets: int, query: EventFilter, after: StagedAt | None = None
) -> PendingSnapshot:
    """The entries a tenant's first ``buckets`` buckets hold staged now that match ``query``.

    Buckets in order, each in stream order, from the position after ``after`` (its bucket after
    its stream id, then the buckets after it) or from the first bucket's first record;
    ``PENDING_READ`` records read at most, and of those only the ones the sequencer would append
    (and that decode as entries) are kept.

    Raises:
        StoreUnavailable: when Redis cannot be reached.
    """
    first = after.bucket if after is not None else 0
    if first >= buckets:
        return PendingSnapshot([], None)
    # The first bucket read with the whole bound beside the others' lengths: one round trip for
    # a query whose walk starts within a bucket, whose length counts records already shown.
    rest = range(first + 1, buckets)
    head, counts = await asyncio.gather(
        stages.read_staged(tenant, first, PENDING_READ, after.stream_id if after is not None else ""),
        stages.staged_counts(tenant, rest),
    )
    plan: list[tuple[int, int]] = []
    left = PENDING_READ - len(head.views)
    for bucket, count in zip(rest, counts, strict=True):
        if count and left:
            plan.append((bucket, min(count, left)))
            left -= plan[-1][1]
    reads = await asyncio.gather(*(stages.read_staged(tenant, bucket, count) for bucket, count in plan))
    walked = [(first, head), *((bucket, read) for (bucket, _), read in zip(plan, reads, strict=True))]
    found: list[PendingEntry] = []
    for bucket, read in walked:
        for view in read.views:
            event = _pending_event(view)
            if event is not None and query.matches(event):
                found.append(PendingEntry(StagedAt(bucket, view.stream_id), event))
    # Cut when the last bucket read goes on past its read, or a bucket after it held records
    # when counted (a spurious cut, when the sequencer took them since, costs an empty query).
    last_bucket, last_read = walked[-1]
    unread = any(count for bucket, count in zip(rest, counts, strict=True) if bucket > last_bucket)
    if not (last_read.more or unread):
        return PendingSnapshot(found, None)
    return PendingSnapshot(found, _walked_to(walked, after))


def _walked_to(walked: Sequence[tuple[int, StagedRead]], after: StagedAt | None) -> StagedAt:
    """The last position a read reached: its last record, or where it began when it read none."""
    for bucket, read in reversed(walked):
        if read.views:
            return StagedAt(bucket, read.views[-1].stream_id)
    return after if after is not None else StagedAt(0, BEFORE_EVERY_RECORD)


async def not_in_log_part(
    stages: PendingStages, tenant: str, found: Sequence[PendingEntry], log_size: int
) -> AsyncIterator[PendingEntry]:
    """Those of ``found`` (read before ``log_size`` was) that were not among the log's first ``log_size``.

    A record still above its bucket's cursor is not in the log. One the cursor has passed (it
    was sequenced since it was read, or is a leftover a crash or a failover left in the stream)
    is looked up by its receipt: kept while it is still pending, or sequenced at ``log_size`` or
    later; left out when refused, or when its number is below ``log_size`` or unknown (a receipt
    is kept a day; a record that old was in the log long before this query).

    Raises:
        StoreUnavailable: when Redis cannot be reached.
    """
    if not found:
        return
    cursors = await stages.cursors(tenant)
    for entry in found:
        cursor = cursors.get(entry.at.bucket, "")
        if cursor and stream_order(entry.at.stream_id) <= stream_order(cursor):
            position = await stages.position(tenant, entry.at.bucket, entry.at.stream_id)
            sequenced_after = (
                position.state is PositionState.SEQUENCED
                and position.index is not None
                and position.index >= log_size
            )
            if not (position.state is PositionState.PENDING or sequenced_after):
                continue
        yield entry


def _pending_event(view: StagedView) -> AuditEvent | None:
    """The entry a staged body will be, numbered 0 and timed when staged; None if it will not be one.

    A body the sequencer takes but this parser refuses is left out, as the log's own reads
    would refuse it once appended (none is known: a body that is not UTF-8, the one that was,
    is refused by the sequencer's judgement since, and the read script never returns it).
    """
    if view.body is None:
        return None
    try:
        return parse_entry(b'{"v":%d,"seq":0,"time_ms":%d%s' % (ENTRY_VERSION, view.staged_ms, view.body))
    except EntryFormatError:
        return None

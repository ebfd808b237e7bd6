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

The work is bounded: one read of every bucket's stream length, then at most ``PENDING_READ``
records read in all, buckets in order, each bucket's in stream order (the streams hold little:
every worker sequences them twice a second), and one read of the cursors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from idverify.audit.events import ENTRY_VERSION, AuditEvent, EntryFormatError, parse_entry
from idverify.audit.query import EventFilter, StagedAt
from idverify.audit.sequencer import PositionState, StagedPosition, stream_order

__all__ = [
    "PENDING_READ",
    "PendingEntry",
    "PendingStages",
    "StagedView",
    "not_in_log_part",
    "staged_snapshot",
]

PENDING_READ = 1024
"""Staged records one query reads at most, over all its tenant's buckets: the pending part of a
query shows what the sequencer has not reached yet, a backlog of that size is already seconds of
a sequencer's work (docs/PERFORMANCE.md), and a query holds its pending part in memory until its
log part has been sent."""


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
class PendingEntry:
    """A staged entry that matches a query: where it was staged, and what it records (number 0)."""

    at: StagedAt
    event: AuditEvent


class PendingStages(Protocol):
    """The reads of a tenant's stage streams a pending query makes (each may raise StoreUnavailable)."""

    async def staged_counts(self, tenant: str, buckets: int) -> list[int]:
        """How many records each of the first ``buckets`` buckets' streams holds."""
        ...

    async def read_staged(self, tenant: str, bucket: int, count: int) -> list[StagedView]:
        """The first ``count`` records of ``bucket``'s stream, judged as the sequencer judges them."""
        ...

    async def cursors(self, tenant: str) -> dict[int, str]:
        """Each bucket's cursor: the last stream id sequenced (buckets never sequenced are absent)."""
        ...

    async def position(self, tenant: str, bucket: int, stream_id: str) -> StagedPosition:
        """Whether the entry staged at ``stream_id`` in ``bucket`` is pending, and its number if not."""
        ...


async def staged_snapshot(
    stages: PendingStages, tenant: str, buckets: int, query: EventFilter
) -> list[PendingEntry]:
    """The entries a tenant's first ``buckets`` buckets hold staged now that match ``query``.

    Buckets in order, each in stream order; ``PENDING_READ`` records read at most, and of those
    only the ones the sequencer would append (and that decode as entries) are kept.

    Raises:
        StoreUnavailable: when Redis cannot be reached.
    """
    counts = await stages.staged_counts(tenant, buckets)
    plan: list[tuple[int, int]] = []
    left = PENDING_READ
    for bucket, count in enumerate(counts):
        if count and left:
            plan.append((bucket, min(count, left)))
            left -= plan[-1][1]
    reads = await asyncio.gather(*(stages.read_staged(tenant, bucket, count) for bucket, count in plan))
    found: list[PendingEntry] = []
    for (bucket, _), views in zip(plan, reads, strict=True):
        for view in views:
            event = _pending_event(view)
            if event is not None and query.matches(event):
                found.append(PendingEntry(StagedAt(bucket, view.stream_id), event))
    return found


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

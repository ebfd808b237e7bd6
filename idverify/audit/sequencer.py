"""Folds the entries staged in a tenant's bucket streams into its audit log (issue 26).

A script whose keys live in one of a tenant's buckets (``{t:<tenant>:<bucket>}``, its own hash
slot, maybe another shard) cannot append to the tenant's log; it stages its change's entry in the
bucket's stream in the same step (the prelude's ``audit_stage``). The sequencer brings each
bucket's staged entries into the log, in stream order, a batch of at most ``SEQUENCE_BATCH`` per
call, each call one atomic step in the tenant's slot that appends the batch and moves the
bucket's cursor past it with a check-and-set (``audit_sequence.lua``). Only after that call
committed does it delete the batch's records from the bucket's stream, those and no others. So:

- a batch sequenced twice (a crash after the call, before the deletion; two workers racing) is
  refused by the cursor's check-and-set, and the stream is read again after the new cursor: no
  entry is appended twice;
- an entry leaves its stream only once a committed step appended it (or found its receipt):
  none is lost, whatever the clocks. A record still in the stream at or below the cursor (a crash
  before the deletion; a failover that rolled the stream back below the cursor, after which a
  node whose clock is behind staged there) is read before anything above the cursor and sent as
  a *late* batch, appended unless its receipt (its id and a digest of it) says it was;
- a bucket's entries keep their stream order (buckets are sequenced side by side, so their
  entries interleave); every entry's time is at least the log's last, so time never runs
  backwards across buckets either.

The integrator then hashes the appended entries into the tree as before; a signed head covers
only integrated entries. A staged position (bucket, stream id) is *pending* while the bucket's
cursor is below it, and is then given its entry number (``StagedLog.position``); until then it is
in no export, proof or signed head, and a query shows it only when asked to (``audit.pending``).

The store is read and written through :class:`StagedLog`, the port declared here
(``store.audit_stages.RedisAuditStages`` over Redis).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from idverify.audit.integrator import BATCH, FOLD_SLICE
from idverify.domain.errors import FailedPrecondition

__all__ = [
    "CONCURRENT_BUCKETS",
    "PASS_LIMIT",
    "SEQUENCE_BATCH",
    "STREAM_ID_PART_MAX",
    "PositionState",
    "SequenceReport",
    "Sequenced",
    "StageCursorDamaged",
    "StageSequencer",
    "StagedLog",
    "StagedPosition",
    "StagedRecord",
    "is_stream_id",
    "stream_order",
]

SEQUENCE_BATCH = FOLD_SLICE
"""Staged entries sequenced per call: a Lua step this long holds the tenant's shard for about as
long as the integrator's fold slice holds a worker's loop (a few milliseconds)."""

CONCURRENT_BUCKETS = 8
"""Buckets sequenced side by side in a pass. Each bucket's calls wait on two shards (its stream's
and the log's) one after the other, so a pass over buckets one at a time is bound by round trips;
buckets are independent (a cursor each), and their steps interleave in the log."""

PASS_LIMIT = BATCH
"""Entries sequenced from one bucket in one pass, at most: a bucket staged faster than it is
sequenced would otherwise keep a pass going, and the tenant would never be integrated (the
loop integrates between passes; bench/audit_rate.py --stage-buckets showed it)."""

log = logging.getLogger("idverify.audit")


_STREAM_ID = re.compile(r"(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})")
STREAM_ID_PART_MAX = 2**64 - 1
"""A stream id's parts are unsigned 64-bit numbers."""


def is_stream_id(text: str) -> bool:
    """Whether ``text`` is a stream id as Redis writes one: ``<ms>-<seq>``, 64-bit decimals unpadded."""
    parts = _STREAM_ID.fullmatch(text)
    return parts is not None and all(int(part) <= STREAM_ID_PART_MAX for part in parts.groups())


class StageCursorDamaged(FailedPrecondition):
    """A bucket's cursor holds what the sequencer never writes (planted, or a corrupt store).

    Nothing below it can be told sequenced or pending until an operator repairs it
    (docs/ARCHITECTURE.md, "Audit entries staged, then sequenced"); the sequencer passes the
    bucket over, and the other buckets are served as usual.
    """

    default_reason = "STAGE_CURSOR_DAMAGED"

    def __init__(self, tenant: str, bucket: int) -> None:
        super().__init__(
            f"the audit stage cursor of bucket {bucket} of tenant {tenant} is not a stream id: "
            "the store was altered"
        )
        self.tenant = tenant
        self.bucket = bucket


def stream_order(stream_id: str) -> tuple[int, int]:
    """A stream id ``<ms>-<seq>`` as what it sorts by.

    Raises:
        ValueError: ``stream_id`` is not ``<ms>-<seq>``.
    """
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq)


@dataclass(frozen=True, slots=True)
class StagedRecord:
    """One staged entry as its stream holds it: its id and fields, passed back unread."""

    stream_id: str
    fields: dict[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Sequenced:
    """What one call made of a batch (nothing written when ``conflict`` or ``closed``).

    ``conflict``: another process had moved the cursor first; ``closed``: the tenant's removal
    had closed its log.
    """

    first_index: int = 0
    appended: int = 0
    refused: tuple[str, ...] = ()
    conflict: bool = False
    closed: bool = False


class PositionState(Enum):
    """Where a staged position stands."""

    PENDING = "pending"
    """In its stream above the bucket's cursor: not in the log yet."""
    SEQUENCED = "sequenced"
    """Appended (its number is known while its receipt is kept, a day)."""
    REFUSED = "refused"
    """Not what ``audit_stage`` writes: passed over by the sequencer, never appended."""
    UNKNOWN = "unknown"
    """Neither staged above the cursor nor below it: never staged there."""


@dataclass(frozen=True, slots=True)
class StagedPosition:
    """A staged entry's state and, once sequenced and while its receipt is kept, its number."""

    state: PositionState
    index: int | None = None


class StagedLog(Protocol):
    """The stage streams, their cursors and the sequencing step (every method may raise StoreUnavailable)."""

    async def cursor(self, tenant: str, bucket: int) -> str:
        """The last stream id of ``bucket`` sequenced into the log ('' for none).

        Raises:
            StageCursorDamaged: the cursor is not a stream id.
        """
        ...

    async def staged(self, tenant: str, bucket: int, after: str, count: int) -> list[StagedRecord]:
        """Up to ``count`` records of ``bucket``'s stream, in order: at or below ``after`` first.

        Those at or below ``after`` while the stream still holds any (a late batch), else those
        above it ('' for all): either way the stream's first records when read (``trim`` may
        rely on it).
        """
        ...

    async def sequence(
        self, tenant: str, bucket: int, after: str, records: Sequence[StagedRecord]
    ) -> Sequenced:
        """Appends ``records``, moving the cursor to the last, if still at ``after`` and the log open."""
        ...

    async def trim(self, tenant: str, bucket: int, records: Sequence[StagedRecord]) -> None:
        """Deletes ``records`` (a committed step's batch) from ``bucket``'s stream, and nothing else."""
        ...

    async def position(self, tenant: str, bucket: int, stream_id: str) -> StagedPosition:
        """Whether the entry staged at ``stream_id`` in ``bucket`` is pending, and its number if not.

        Raises:
            StageCursorDamaged: the bucket's cursor is not a stream id.
        """
        ...

    async def drop(self, tenant: str, bucket: int) -> int:
        """Deletes ``bucket``'s stream; the records it held above the cursor (never sequenced)."""
        ...


@dataclass(slots=True)
class SequenceReport:
    """One pass over a tenant's buckets."""

    appended: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(bucket, stream id) of each record refused as not what ``audit_stage`` writes."""
    conflicts: int = 0
    """Batches another process sequenced first (read again after its cursor)."""
    closed: bool = False
    """The tenant's removal closed its log: what is staged stays, for the erasure to drop."""
    damaged: list[int] = field(default_factory=list)
    """Buckets passed over because their cursor is not a stream id (``StageCursorDamaged``)."""


class StageSequencer:
    """Sequences every bucket of a tenant; one pass per tenant at a time in this process."""

    def __init__(
        self, store: StagedLog, buckets: int, *, bucket_count: Callable[[str], int] | None = None
    ) -> None:
        """``bucket_count`` says how many buckets a tenant has when not ``buckets`` (its layout's)."""
        self._store = store
        self._buckets = buckets
        self._bucket_count = bucket_count
        self._locks: dict[str, asyncio.Lock] = {}
        # Damaged cursors already warned of: a warning when one is found, not every pass.
        self._damaged: set[tuple[str, int]] = set()

    @property
    def buckets(self) -> int:
        """How many buckets each tenant's entries are staged in."""
        return self._buckets

    def buckets_of(self, tenant: str) -> int:
        """How many buckets ``tenant``'s entries are staged in: its layout's, else :attr:`buckets`."""
        return self._buckets if self._bucket_count is None else self._bucket_count(tenant)

    async def sequence(self, tenant: str) -> SequenceReport:
        """Sequences what every bucket of ``tenant`` has staged by now, ``PASS_LIMIT`` a bucket at most.

        Raises:
            StoreUnavailable: when Redis cannot be reached (what was sequenced stays so).
        """
        report = SequenceReport()
        gate = asyncio.Semaphore(CONCURRENT_BUCKETS)

        async def one(bucket: int) -> None:
            async with gate:
                await self._sequence_bucket(tenant, bucket, report)

        async with self._locks.setdefault(tenant, asyncio.Lock()):
            tasks = [asyncio.ensure_future(one(bucket)) for bucket in range(self.buckets_of(tenant))]
            try:
                await asyncio.gather(*tasks)
            finally:
                # A bucket that failed ends the pass: the others stop where they are (as a crash
                # would stop them, which every step allows) before the lock is let go, so that
                # no step of this pass runs on beside the next one, or after a removal's close
                # that this pass was to precede.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return report

    async def drop_stages(self, tenant: str) -> int:
        """Deletes every stage stream of a tenant whose log is closed; the records never sequenced.

        A tenant's removal calls it when it erases the tenant's keys: its log took its last
        entry when it was closed (after a last pass of :meth:`sequence`), so a record staged
        since cannot be appended.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        dropped = 0
        for bucket in range(self.buckets_of(tenant)):
            dropped += await self._store.drop(tenant, bucket)
        if dropped:
            log.warning(
                "%d staged audit records of %s dropped: staged after its log was closed", dropped, tenant
            )
        return dropped

    async def _cursor(self, tenant: str, bucket: int, report: SequenceReport) -> str | None:
        """The bucket's cursor, or None when it is damaged: the bucket is then passed over."""
        try:
            cursor = await self._store.cursor(tenant, bucket)
        except StageCursorDamaged:
            report.damaged.append(bucket)
            if (tenant, bucket) not in self._damaged:
                self._damaged.add((tenant, bucket))
                # Its records stay staged until an operator repairs the cursor; the others go on.
                log.warning(
                    "audit stage cursor of %s bucket %d is not a stream id: bucket skipped", tenant, bucket
                )
            return None
        self._damaged.discard((tenant, bucket))
        return cursor

    async def _sequence_bucket(self, tenant: str, bucket: int, report: SequenceReport) -> None:
        cursor = await self._cursor(tenant, bucket, report)
        if cursor is None:
            return
        read = 0
        while read < PASS_LIMIT:
            records = await self._store.staged(tenant, bucket, cursor, min(SEQUENCE_BATCH, PASS_LIMIT - read))
            if not records:
                return
            outcome = await self._store.sequence(tenant, bucket, cursor, records)
            if outcome.closed:
                report.closed = True
                return
            read += len(records)
            if outcome.conflict:
                report.conflicts += 1
                cursor = await self._cursor(tenant, bucket, report)
                if cursor is None:
                    return
                continue
            # A late batch (records at or below the cursor) leaves the cursor where it was.
            if not cursor or stream_order(records[0].stream_id) > stream_order(cursor):
                cursor = records[-1].stream_id
            report.appended += outcome.appended
            for stream_id in outcome.refused:
                # The position, never the record's bytes: they may hold whatever was planted.
                log.warning("staged audit record %s of %s bucket %d refused", stream_id, tenant, bucket)
                report.refused.append((bucket, stream_id))
            await self._store.trim(tenant, bucket, records)
            await asyncio.sleep(0)

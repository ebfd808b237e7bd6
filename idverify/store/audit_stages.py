"""The audit stage streams over Redis: ``audit.sequencer.StagedLog`` and ``audit.pending.PendingStages``.

A bucket's stream (``TenantKeys.audit_stage``) is in the bucket's slot; its cursor and receipts
are in the tenant's, beside the log that ``audit_sequence.lua`` appends to. No read or write here
joins the two slots in one command, so on Cluster each goes to its own shard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from idverify.audit.pending import StagedRead, StagedView
from idverify.audit.sequencer import (
    STREAM_ID_PART_MAX,
    PositionState,
    Sequenced,
    StageCursorDamaged,
    StagedPosition,
    StagedRecord,
    StageSequencer,
    is_stream_id,
    stream_order,
)
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["RedisAuditStages", "is_utf8", "record_digest", "stage_sequencer", "stage_streams"]


def stage_sequencer(
    redis: RedisClient, scripts: Scripts, buckets: int, *, keys: Callable[[str], TenantKeys] = TenantKeys
) -> StageSequencer | None:
    """The sequencer of the tenants' staged audit entries (``audit_stage_buckets``), or None for none.

    A tenant that ``keys`` names in a layout has its layout's buckets read, in their labels;
    every other tenant has ``buckets`` numbered ones (today's namer: every tenant).
    """
    if not buckets:
        return None

    def bucket_count(tenant: str) -> int:
        return keys(tenant).bucket_count or buckets

    return StageSequencer(RedisAuditStages(redis, scripts, keys=keys), buckets, bucket_count=bucket_count)


def stage_streams(tenant: str, keys: TenantKeys) -> Callable[[int], str]:
    """Names ``tenant``'s stage stream by bucket, as ``keys`` names the tenant.

    With a layout, the bucket's label's stream, where a step given a key of the bucket stages
    its entry (``TenantKeys.audit_entries``); without one, today's numbered ``{t:T:<bucket>}``
    (``audit_stage_buckets``). Kept out of ``TenantKeys``, whose keys without a layout are all
    in the tenant's slot.
    """
    if not keys.bucketed:
        return lambda bucket: BucketKeys(tenant, bucket).audit_stage()
    prefixes = keys.bucket_prefixes()
    return lambda bucket: keys.audit_entries(prefixes[bucket])


class RedisAuditStages:
    """Stage streams, cursors and receipts of every tenant on one Redis (standalone or Cluster)."""

    def __init__(
        self, redis: RedisClient, scripts: Scripts, *, keys: Callable[[str], TenantKeys] = TenantKeys
    ) -> None:
        """``keys`` names a tenant's keys: a bucketed tenant's namer reads its labelled buckets' stages.

        The default, today's namer, reads the numbered stages ``{t:T:<bucket>}``.
        """
        self._redis = redis
        self._scripts = scripts
        self._keys = keys

    def _stage(self, tenant: str, bucket: int) -> str:
        return stage_streams(tenant, self._keys(tenant))(bucket)

    async def cursor(self, tenant: str, bucket: int) -> str:
        """The last stream id of ``bucket`` sequenced into the log ('' for none).

        Raises:
            StageCursorDamaged: the cursor is not a stream id (never sent to Redis or the step).
        """
        async with translate_errors():
            value = await self._redis.hget(TenantKeys(tenant).audit_stage_cursor(), str(bucket))
        return _checked_cursor(tenant, bucket, value)

    async def staged(self, tenant: str, bucket: int, after: str, count: int) -> list[StagedRecord]:
        """Up to ``count`` records of ``bucket``'s stream: those at or below ``after`` if any, else above."""
        async with translate_errors():
            raw: list[Any] = await self._redis.xrange(  # type: ignore[assignment]
                self._stage(tenant, bucket), "-", "+", count=count
            )
        # One read from the stream's start: it begins with what the stream holds at or below the
        # cursor, if anything, and is then that late batch; else it is the records above. A record
        # a rolled-back stream takes below the cursor after this read was staged after all it
        # returned, so the next read takes it, after them: the bucket's order is kept. A batch is
        # always the stream's first records, which trim() relies on.
        records = _records(raw)
        if after and records and stream_order(records[0].stream_id) <= stream_order(after):
            cursor = stream_order(after)
            return [r for r in records if stream_order(r.stream_id) <= cursor]
        return records

    async def sequence(
        self, tenant: str, bucket: int, after: str, records: Sequence[StagedRecord]
    ) -> Sequenced:
        """Appends ``records``, moving the cursor to the last, if still at ``after`` and the log open.

        Records at or below ``after`` (a late batch) are appended unless their receipts say they
        were, and leave the cursor where it is.
        """
        keys = TenantKeys(tenant)
        late = bool(after) and stream_order(records[0].stream_id) <= stream_order(after)
        args: list[str | bytes] = [str(bucket), after, after if late else records[-1].stream_id]
        digests: list[str] = []
        marks: list[str] = []
        for record in records:
            # The body, its staged time, then what audit_stage() keeps for the outbox (sealed
            # account id, whose, span) in the script's order; one tuple an entry, no generator.
            get = record.fields.get
            fields = (get(b"b", b""), get(b"ms", b""), get(b"ea", b""), get(b"ef", b""), get(b"c", b""))
            args += (record.stream_id, *fields)
            digests.append(record_digest(fields))
            # Judged from the very bytes passed above: a record changed in its stream after the
            # read is not what the step appends, and its next read is judged afresh.
            marks.append("1" if is_utf8(fields[0]) else "0")
        args.append("".join(digests))  # the receipts' digests, then the UTF-8 marks, last
        args.append("".join(marks))
        script_keys = [
            keys.audit_log(),
            keys.audit_stage_cursor(),
            keys.audit_receipts(bucket),
            keys.removal(),
            keys.audit_late_receipts(bucket),
        ]
        reply: list[Any] = await self._scripts.run("audit_sequence", script_keys, args)
        status = as_text(reply[0])
        if status == "CONFLICT":
            return Sequenced(conflict=True)
        if status == "CLOSED":
            return Sequenced(closed=True)
        if status != "OK":
            # The caller's batch, not the store's data: a bug here, never a record's fault.
            msg = f"audit_sequence refused the batch: {as_text(reply[1])}"
            raise RuntimeError(msg)
        return Sequenced(int(reply[1]), int(reply[2]), tuple(as_text(r) for r in reply[3:]))

    async def trim(self, tenant: str, bucket: int, records: Sequence[StagedRecord]) -> None:
        """Deletes ``records`` (a committed step's batch) from ``bucket``'s stream, and nothing else.

        By range when ``audit_stage_trim.lua`` shows the range holds the batch alone (one
        command for the batch, where an ``XDEL`` finds each id in its stream node), else each
        record the stream still holds as it was read.
        """
        stage = self._stage(tenant, bucket)
        above = _id_above(records[-1].stream_id)
        if above is not None:
            last = _flat(records[-1].fields)
            args: list[str | bytes] = ["range", records[0].stream_id, records[-1].stream_id, above, *last]
            reply: list[Any] = await self._scripts.run("audit_stage_trim", [stage], args)
            if as_text(reply[0]) == "RANGE":
                return
        each: list[str | bytes] = ["records"]
        for record in records:
            fields = _flat(record.fields)
            each += (record.stream_id, str(len(fields)), *fields)
        await self._scripts.run("audit_stage_trim", [stage], each)

    async def staged_counts(self, tenant: str, buckets: Sequence[int]) -> list[int]:
        """How many records each of ``buckets``' streams holds, in order (one round trip a shard).

        On the scripts' shared connection where there is one: 1,024 ``XLEN`` through redis-py's
        pipeline cost a query about four times as much (bench/audit_pending.py).
        """
        if not buckets:
            return []
        stage = stage_streams(tenant, self._keys(tenant))
        lengths = await self._scripts.commands(*(("XLEN", stage(bucket)) for bucket in buckets))
        return [int(count) for count in lengths]

    async def read_staged(self, tenant: str, bucket: int, count: int, after: str = "") -> StagedRead:
        """The first ``count`` records of ``bucket``'s stream after the id ``after`` ('' from its first).

        Each judged as the sequencer judges it.

        Raises:
            ValueError: ``after`` is neither empty nor ``<ms>-<seq>``.
        """
        if after and not is_stream_id(after):  # refused before it reaches Redis
            msg = f"a stream id is <ms>-<seq>, not {after!r}"
            raise ValueError(msg)
        # From the least id above: Redis refuses an exclusive range after the greatest id.
        start = _id_above(after) if after else ""
        if start is None:
            return StagedRead([], more=False)
        more, reply = await self._scripts.run(
            "audit_stage_read", [self._stage(tenant, bucket)], [count, start]
        )
        # A record the sequencer would refuse comes back without its time or body.
        views = [
            StagedView(as_text(i), int(ms), bytes(body)) if body else StagedView(as_text(i), 0, None)
            for i, ms, body in reply
        ]
        return StagedRead(views, more=bool(more))

    async def cursors(self, tenant: str) -> dict[int, str]:
        """Each bucket's cursor: the last stream id sequenced (buckets never sequenced are absent)."""
        async with translate_errors():
            raw = await self._redis.hgetall(TenantKeys(tenant).audit_stage_cursor())
        # Only what the sequencer writes: a field planted beside them names no bucket it reads,
        # and a bucket whose cursor is damaged is taken as never sequenced (its records pending,
        # as they stay until the cursor is repaired).
        cursors = {_planted_text(bucket): _planted_text(cursor) for bucket, cursor in raw.items()}
        return {
            int(bucket): cursor
            for bucket, cursor in cursors.items()
            if bucket.isascii() and bucket.isdigit() and is_stream_id(cursor)
        }

    async def position(self, tenant: str, bucket: int, stream_id: str) -> StagedPosition:
        """Whether the entry staged at ``stream_id`` in ``bucket`` is pending, and its number if not.

        Raises:
            ValueError: ``stream_id`` is not ``<ms>-<seq>``.
            StageCursorDamaged: the bucket's cursor is not a stream id.
        """
        if not is_stream_id(stream_id):  # refused before it reaches Redis
            msg = f"a stream id is <ms>-<seq>, not {stream_id!r}"
            raise ValueError(msg)
        keys = TenantKeys(tenant)
        async with translate_errors():
            # The stream first: read after the cursor, an entry sequenced in between is found
            # below it, never missing from both.
            staged = await self._redis.xrange(self._stage(tenant, bucket), stream_id, stream_id)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hget(keys.audit_stage_cursor(), str(bucket))
                pipe.xrange(keys.audit_receipts(bucket), stream_id, stream_id)
                pipe.hget(keys.audit_late_receipts(bucket), stream_id)
                stored_cursor, receipt, late_receipt = await pipe.execute()
        cursor = _checked_cursor(tenant, bucket, stored_cursor)
        if cursor and stream_order(stream_id) <= stream_order(cursor):
            if late_receipt is not None:
                number = as_text(late_receipt).split(" ", 1)[0]
                if number == "r":
                    return StagedPosition(PositionState.REFUSED)
                return StagedPosition(PositionState.SEQUENCED, int(number))
            if receipt:
                fields = receipt[0][1]
                if b"i" in fields:
                    return StagedPosition(PositionState.SEQUENCED, int(fields[b"i"]))
                return StagedPosition(PositionState.REFUSED)
            # Still staged below the cursor with no receipt: what a rolled-back stream took
            # there, which the next pass sequences late.
            return StagedPosition(PositionState.PENDING if staged else PositionState.SEQUENCED)
        return StagedPosition(PositionState.PENDING if staged else PositionState.UNKNOWN)

    async def drop(self, tenant: str, bucket: int) -> int:
        """Deletes ``bucket``'s stream; the records it held above the cursor (never sequenced).

        With a damaged cursor, every record it held: none can be told sequenced.
        """
        try:
            cursor = await self.cursor(tenant, bucket)
        except StageCursorDamaged:
            cursor = ""
        stage = self._stage(tenant, bucket)
        async with translate_errors():
            if cursor:
                above = _id_above(cursor)
                if above is None:  # a cursor at the greatest id (a record planted there): none above
                    await self._redis.delete(stage)
                    return 0
                await self._redis.xtrim(stage, minid=above, approximate=False)
            left = await self._redis.xlen(stage)
            await self._redis.delete(stage)
        return int(left)


def _id_above(stream_id: str) -> str | None:
    """The least stream id above ``stream_id``, None for the greatest (a planted record may hold it)."""
    ms, seq = stream_order(stream_id)
    if seq < STREAM_ID_PART_MAX:
        return f"{ms}-{seq + 1}"
    return f"{ms + 1}-0" if ms < STREAM_ID_PART_MAX else None


DIGEST_HEX = 16
"""Hex digits of a record's digest that its receipt keeps (audit_sequence.lua's ``DIGEST_HEX``)."""


def record_digest(fields: Sequence[bytes]) -> str:
    """What ``audit_sequence.lua``'s receipts keep of a record: the SHA-1 of its fields joined by NULs, cut.

    Computed here, in the worker, rather than by Redis's SHA-1 in the step, which every
    tenant's steps on the shard wait behind; the same digest, so receipts written either way
    know their records again.
    """
    return hashlib.sha1(b"\0".join(fields), usedforsecurity=False).hexdigest()[:DIGEST_HEX]


def is_utf8(body: bytes) -> bool:
    """Whether ``body`` is UTF-8 as the step's check has it (``utf8_valid`` in the Lua prelude).

    Python's strict decoder refuses what that check does (stray continuation bytes, truncated
    sequences, overlong forms, surrogates, code points above U+10FFFF), so the step skips its
    check for a body marked here: about 6 % of the shard's instructions an entry, on the shard
    every tenant's steps share, for a fraction of a microsecond here (ASCII is tested in C).
    """
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _flat(fields: dict[bytes, bytes]) -> list[bytes]:
    """A record's fields and values in a row, in the order the read returned them."""
    return [part for pair in fields.items() for part in pair]


def _checked_cursor(tenant: str, bucket: int, value: bytes | str | None) -> str:
    """A stored cursor ('' for none), refused unless it is a stream id as the sequencer writes one.

    Raises:
        StageCursorDamaged: it is not (planted, or a corrupt store): "STAGE_CURSOR_DAMAGED".
    """
    if value is None:
        return ""
    cursor = _planted_text(value)
    if not is_stream_id(cursor):
        raise StageCursorDamaged(tenant, bucket)
    return cursor


def _planted_text(value: bytes | str) -> str:
    """A stored text anyone with Redis write access may have planted: a byte outside ASCII is U+FFFD."""
    return value if isinstance(value, str) else value.decode("ascii", errors="replace")


def _records(raw: list[tuple[bytes, dict[bytes, bytes]]]) -> list[StagedRecord]:
    return [StagedRecord(as_text(stream_id), fields) for stream_id, fields in raw]

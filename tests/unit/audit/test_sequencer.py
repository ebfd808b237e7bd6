"""Staged audit entries sequenced into the log (issue 26), on a real redis-server.

The sequencer must write exactly what ``audit()`` would have (the entry bytes are Merkle leaves
and the golden file pins them), keep each bucket's order and the log's time monotone, append a
batch once however often it is sent, and refuse records that ``audit_stage`` did not write
without letting them into the log or stopping the bucket.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from typing import Any, cast

import pytest

from idverify.audit import merkle
from idverify.audit import sequencer as sequencer_module
from idverify.audit.events import parse_entry
from idverify.audit.integrator import TreeIntegrator
from idverify.audit.sequencer import (
    SEQUENCE_BATCH,
    PositionState,
    StageCursorDamaged,
    StagedLog,
    StagedPosition,
    StagedRecord,
    StageSequencer,
)
from idverify.domain.errors import StatusKind, StoreUnavailable
from idverify.flows.tenant_removal import StepOutcome
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender, SyntheticStager
from idverify.store.tenant_removals import RedisRemovalStore
from tests.unit.store import test_audit_entry_bytes as golden

_tenants = itertools.count()


@pytest.fixture
def tenant() -> str:
    return f"stage-{next(_tenants)}"


def event(bucket: int, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (base, fields) pair whose request id names its bucket and place."""
    base = {"principal": "t/registrar/c1", "request_id": f"b{bucket}-{n}", "trace_id": ""}
    return base, {
        "type": "verification.started",
        "outcome": "started",
        "account": f"a{n % 5}",
        "method": "sms",
    }


# Texts put in a staged body's attribute: UTF-8 at each sequence length, the edges of each range
# included, and what RFC 3629 refuses (the step's check and the worker's decoder alike).
UTF8_TEXTS = [
    "é".encode(),
    b"\xc2\x80",  # U+0080, the first two-byte one
    "中文".encode(),
    b"\xe0\xa0\x80",  # U+0800, the first three-byte one
    b"\xed\x9f\xbf",  # U+D7FF, just below the surrogates
    b"\xee\x80\x80",  # U+E000, just above them
    "😀".encode(),
    b"\xf4\x8f\xbf\xbf",  # U+10FFFF, the last code point
    b"a" * 100 + "é".encode() + b"b" * 100 + "中".encode(),
]
NOT_UTF8_TEXTS = [
    b"\x80",  # a continuation byte alone
    b"\xbf",
    b"\xc0\xaf",  # overlong '/'
    b"\xc1\xbf",  # overlong
    b"\xe0\x80\xaf",  # overlong '/' in three bytes
    b"\xe0\x9f\xbf",  # overlong U+07FF
    b"\xf0\x80\x80\xaf",  # overlong '/' in four bytes
    b"\xf0\x8f\xbf\xbf",  # overlong U+FFFF
    b"\xed\xa0\x80",  # U+D800, a surrogate
    b"\xed\xbf\xbf",  # U+DFFF
    b"\xf4\x90\x80\x80",  # U+110000
    b"\xf5\x80\x80\x80",
    b"\xff",
    b"\xc3",  # truncated by the closing quote
    b"\xe4\xb8",
    b"\xf0\x9f\x98",
    b"\xc3\xc3\xa9",  # a lead byte where a continuation belongs
    "é".encode() + b"\x80",  # valid first, then bad
]


async def log_entries(redis: RedisClient, tenant: str) -> list[dict[str, Any]]:
    """Every entry of the log, parsed, checked to sit at its own number."""
    raw = await redis.hgetall(TenantKeys(tenant).audit_log())
    entries = [json.loads(raw[str(i).encode()]) for i in range(len(raw))]
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    for i in range(len(raw)):
        parse_entry(raw[str(i).encode()])
    return entries


class TestBytes:
    async def test_sequenced_from_one_stage_the_golden_bytes(
        self, redis: RedisClient, stages: RedisAuditStages
    ) -> None:
        """Every golden event staged, then sequenced: the golden entries, postings, head and outbox."""
        await golden.emptied(redis)
        await SyntheticStager(redis).stage(golden.TENANT, 0, golden.EVENTS)
        report = await StageSequencer(stages, 1).sequence(golden.TENANT)
        assert (report.appended, report.refused) == (len(golden.EVENTS), [])
        assert await golden.stored(redis) == json.loads(golden.GOLDEN.read_text(encoding="utf-8"))

    async def test_spread_over_buckets_the_bytes_audit_writes_in_the_same_order(
        self, redis: RedisClient, stages: RedisAuditStages
    ) -> None:
        """Staged round-robin in 3 buckets: what audit() writes appending in the order sequenced.

        The events of the one account whose hash they name stay in one bucket, as an account's
        records do under the bucket plan: a later one takes its sealed id from the account as the
        earlier one left it, so the buckets' order must not reorder them.
        """
        by_bucket: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {0: [], 1: [], 2: []}
        for i, pair in enumerate(golden.EVENTS):
            by_bucket[0 if "event_account_key" in pair[0] else i % 3].append(pair)
        await golden.emptied(redis)
        stager = SyntheticStager(redis)
        positions = {
            bucket: await stager.stage(golden.TENANT, bucket, pairs) for bucket, pairs in by_bucket.items()
        }
        await StageSequencer(stages, 3).sequence(golden.TENANT)
        sequenced = await golden.stored(redis)
        order: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        for bucket, ids in positions.items():
            for stream_id, pair in zip(ids, by_bucket[bucket], strict=True):
                found = await stages.position(golden.TENANT, bucket, stream_id)
                assert found.state is PositionState.SEQUENCED
                assert found.index is not None
                order[found.index] = pair
        await golden.emptied(redis)
        await SyntheticAppender(redis).append(golden.TENANT, [order[i] for i in range(len(order))])
        assert sequenced == await golden.stored(redis)
        assert len(sequenced["entries"]) == len(golden.EVENTS)

    async def test_a_batch_longer_than_one_write_the_bytes_audit_writes(
        self, redis: RedisClient, stages: RedisAuditStages
    ) -> None:
        """One call of 1,100 entries (the script stores 512 a write, so three writes): audit()'s bytes."""
        pairs = [event(0, n) for n in range(1100)]
        await golden.emptied(redis)
        await SyntheticStager(redis).stage(golden.TENANT, 0, pairs)
        records = await stages.staged(golden.TENANT, 0, "", len(pairs))
        outcome = await stages.sequence(golden.TENANT, 0, "", records)
        assert (outcome.first_index, outcome.appended, outcome.refused) == (0, len(pairs), ())
        sequenced = await golden.stored(redis)
        await golden.emptied(redis)
        await SyntheticAppender(redis).append(golden.TENANT, pairs)
        assert sequenced == await golden.stored(redis)
        assert len(sequenced["entries"]) == len(pairs)


class TestOrder:
    async def test_each_bucket_in_stream_order_and_time_never_back(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """Bucket 1 staged 20 ms before bucket 0: interleaved, each in its order, times never back."""
        stager = SyntheticStager(redis)
        for n in range(0, 600, 100):  # several batches of SEQUENCE_BATCH per bucket
            await stager.stage(tenant, 1, [event(1, i) for i in range(n, n + 100)])
        await asyncio.sleep(0.02)
        await stager.stage(tenant, 0, [event(0, i) for i in range(600)])
        report = await StageSequencer(stages, 2).sequence(tenant)
        assert report.appended == 1200 > 2 * SEQUENCE_BATCH
        entries = await log_entries(redis, tenant)
        for bucket in range(2):
            mine = [e["request_id"] for e in entries if e["request_id"].startswith(f"b{bucket}-")]
            assert mine == [f"b{bucket}-{i}" for i in range(600)]
        times = [e["time_ms"] for e in entries]
        assert times == sorted(times)
        # Bucket 1's entries sequenced after bucket 0's first took its later time, not their own.
        after = next(i for i, e in enumerate(entries) if e["request_id"].startswith("b0-"))
        late_b1 = [e["time_ms"] for e in entries[after:] if e["request_id"].startswith("b1-")]
        assert late_b1
        assert all(t >= entries[after]["time_ms"] for t in late_b1)
        assert await redis.xlen(BucketKeys(tenant, 0).audit_stage()) == 0
        assert await redis.xlen(BucketKeys(tenant, 1).audit_stage()) == 0

    async def test_a_pass_takes_at_most_its_limit_from_a_bucket(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bucket staged faster than it is sequenced cannot keep a pass (and its integration) waiting."""
        monkeypatch.setattr(sequencer_module, "PASS_LIMIT", 300)
        stager = SyntheticStager(redis)
        for bucket in range(2):
            await stager.stage(tenant, bucket, [event(bucket, i) for i in range(700)])
        sequencer = StageSequencer(stages, 2)
        assert [(await sequencer.sequence(tenant)).appended for _ in range(4)] == [600, 600, 200, 0]
        entries = await log_entries(redis, tenant)
        assert sorted(e["request_id"] for e in entries[:600]) == sorted(
            [f"b0-{i}" for i in range(300)] + [f"b1-{i}" for i in range(300)]
        )

    async def test_a_stage_clock_ahead_does_not_move_the_log_time(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """A record staged an hour ahead (a shard's clock, or a planted time) takes the log shard's time."""
        await SyntheticStager(redis).stage(tenant, 0, [event(0, 0)])
        ((stream_id, fields),) = await redis.xrange(BucketKeys(tenant, 0).audit_stage())
        ahead = int(time.time() * 1000) + 3_600_000
        await redis.xadd(BucketKeys(tenant, 0).audit_stage(), {**fields, b"ms": str(ahead).encode()})
        await StageSequencer(stages, 1).sequence(tenant)
        entries = await log_entries(redis, tenant)
        assert len(entries) == 2
        assert entries[1]["time_ms"] < ahead - 3_000_000
        assert stream_id


class TestOnce:
    async def test_a_batch_sent_again_is_a_no_op(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """The replay of a committed batch (a crash before the trim) is refused by the cursor."""
        await SyntheticStager(redis).stage(tenant, 0, [event(0, i) for i in range(10)])
        records = await stages.staged(tenant, 0, "", 100)
        first = await stages.sequence(tenant, 0, "", records)
        assert (first.first_index, first.appended, first.conflict) == (0, 10, False)
        again = await stages.sequence(tenant, 0, "", records)
        assert again.conflict
        assert len(await log_entries(redis, tenant)) == 10
        # Not trimmed yet: the next pass trims first and reads after the cursor, so appends nothing.
        report = await StageSequencer(stages, 1).sequence(tenant)
        assert report.appended == 0
        assert len(await log_entries(redis, tenant)) == 10
        assert await redis.xlen(BucketKeys(tenant, 0).audit_stage()) == 0

    async def test_racing_sequencers_append_each_entry_once(
        self, redis: RedisClient, scripts: Scripts, tenant: str
    ) -> None:
        """Four sequencers of their own (as in four workers) over the same 3 buckets."""
        stager = SyntheticStager(redis)
        for bucket in range(3):
            await stager.stage(tenant, bucket, [event(bucket, i) for i in range(700)])
        racers = [StageSequencer(RedisAuditStages(redis, scripts), 3) for _ in range(4)]
        reports = await asyncio.gather(*(r.sequence(tenant) for r in racers))
        assert sum(r.appended for r in reports) == 2100
        entries = await log_entries(redis, tenant)
        assert sorted(e["request_id"] for e in entries) == sorted(
            f"b{b}-{i}" for b in range(3) for i in range(700)
        )
        for bucket in range(3):
            mine = [e["request_id"] for e in entries if e["request_id"].startswith(f"b{bucket}-")]
            assert mine == [f"b{bucket}-{i}" for i in range(700)]


class TestPositions:
    async def test_pending_then_its_number(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        await SyntheticAppender(redis).append(tenant, [event(9, 0), event(9, 1)])
        ids = await SyntheticStager(redis).stage(tenant, 2, [event(2, i) for i in range(3)])
        assert await stages.position(tenant, 2, ids[1]) == StagedPosition(PositionState.PENDING)
        await StageSequencer(stages, 3).sequence(tenant)
        assert [await stages.position(tenant, 2, i) for i in ids] == [
            StagedPosition(PositionState.SEQUENCED, n) for n in (2, 3, 4)
        ]
        entries = await log_entries(redis, tenant)
        assert entries[3]["request_id"] == "b2-1"

    async def test_unknown_and_malformed_positions(self, stages: RedisAuditStages, tenant: str) -> None:
        assert await stages.position(tenant, 0, "5-0") == StagedPosition(PositionState.UNKNOWN)
        with pytest.raises(ValueError, match="stream id"):
            await stages.position(tenant, 0, "5")


class TestHostileRecords:
    async def test_planted_records_are_refused_alone(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """Forged seq, non-canonical JSON, oversized, no body, a bad time: passed over, receipts say so."""
        stage = BucketKeys(tenant, 0).audit_stage()
        (good_id,) = await SyntheticStager(redis).stage(tenant, 0, [event(0, 0)])
        ((_, good),) = await redis.xrange(stage)
        body = good[b"b"]
        now = str(int(time.time() * 1000)).encode()
        planted = [
            {b"b": body[:-1] + b',"seq":5}', b"ms": now},  # a second "seq" in the attributes' place
            {b"b": b',"seq":5' + body, b"ms": now},
            {b"b": body.replace(b'","', b'", "', 1), b"ms": now},  # JSON, but not the canonical bytes
            {b"b": body.replace(b'"attributes":{}', b'"attributes":{"type":"x"}'), b"ms": now},
            {b"b": body.replace(b'"attributes":{}', b'"attributes":{"n":7}'), b"ms": now},
            {
                b"b": body.replace(b'"attributes":{}', b'"attributes":{"x":"' + b"y" * 70_000 + b'"}'),
                b"ms": now,
            },
            {b"b": b"", b"ms": now},
            {b"ms": now},
            {b"b": body, b"ms": b"soon"},
            {b"b": body, b"ms": b"9" * 30},
            {b"b": b'{"v":1,"seq":0,"time_ms":1' + body, b"ms": now},
        ]
        planted_ids = [(await redis.xadd(stage, fields)).decode() for fields in planted]
        (last_id,) = await SyntheticStager(redis).stage(tenant, 0, [event(0, 1)])
        report = await StageSequencer(stages, 1).sequence(tenant)
        assert report.appended == 2
        assert report.refused == [(0, i) for i in planted_ids]
        entries = await log_entries(redis, tenant)
        assert [e["request_id"] for e in entries] == ["b0-0", "b0-1"]
        assert await stages.position(tenant, 0, planted_ids[0]) == StagedPosition(PositionState.REFUSED)
        assert await stages.position(tenant, 0, last_id) == StagedPosition(PositionState.SEQUENCED, 1)
        assert await stages.position(tenant, 0, good_id) == StagedPosition(PositionState.SEQUENCED, 0)
        assert await redis.xlen(stage) == 0

    async def test_a_body_that_is_not_utf8_is_refused_alone_and_utf8_is_kept(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """A body of bytes >= 0x80 that cjson passes through is canonical: UTF-8 is checked too.

        Each refused text would otherwise be an entry no reader decodes (parse_entry); the valid
        ones at each sequence length, the edges of each range included, are appended as staged.
        """
        stage = BucketKeys(tenant, 0).audit_stage()
        await SyntheticStager(redis).stage(tenant, 0, [event(0, 0)])
        ((_, good),) = await redis.xrange(stage)
        await redis.delete(stage)

        def with_text(text: bytes) -> dict[bytes, bytes]:
            attributes = b'"attributes":{"x":"' + text + b'"}'
            return {b"b": good[b"b"].replace(b'"attributes":{}', attributes), b"ms": good[b"ms"]}

        valid_ids = [(await redis.xadd(stage, with_text(t))).decode() for t in UTF8_TEXTS]  # type: ignore[arg-type]
        invalid_ids = [(await redis.xadd(stage, with_text(t))).decode() for t in NOT_UTF8_TEXTS]  # type: ignore[arg-type]
        report = await StageSequencer(stages, 1).sequence(tenant)
        assert report.refused == [(0, i) for i in invalid_ids]
        assert report.appended == len(UTF8_TEXTS)
        entries = await log_entries(redis, tenant)
        assert [e["attributes"]["x"].encode() for e in entries] == UTF8_TEXTS
        assert await stages.position(tenant, 0, invalid_ids[0]) == StagedPosition(PositionState.REFUSED)
        assert await stages.position(tenant, 0, valid_ids[-1]) == StagedPosition(
            PositionState.SEQUENCED, len(UTF8_TEXTS) - 1
        )

    @pytest.mark.parametrize(
        "planted",
        [
            b"not a stream id",
            b"",
            b"5",
            b"1-2-3",
            b"01-0",  # Redis reads it, the step's order of decimals would not
            b"18446744073709551616-0",  # past 64 bits: Redis refuses it in an XRANGE
            b"\xff\xfe-1",
            "١-٠".encode(),  # noqa: RUF001 - digits, but not ASCII ones
        ],
    )
    async def test_a_damaged_cursor_passes_its_bucket_over_and_the_others_are_served(
        self,
        redis: RedisClient,
        stages: RedisAuditStages,
        tenant: str,
        planted: bytes,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A bucket's cursor planted as no stream id: that bucket waits, named once in a warning."""
        stager = SyntheticStager(redis)
        for bucket in range(3):
            await stager.stage(tenant, bucket, [event(bucket, 0)])
        await StageSequencer(stages, 3).sequence(tenant)
        staged = {bucket: await stager.stage(tenant, bucket, [event(bucket, 1)]) for bucket in range(3)}
        await redis.hset(TenantKeys(tenant).audit_stage_cursor(), "1", planted)
        sequencer = StageSequencer(stages, 3)
        caplog.set_level("WARNING", logger="idverify.audit")
        first = await sequencer.sequence(tenant)
        second = await sequencer.sequence(tenant)
        assert (first.damaged, first.appended, second.damaged, second.appended) == ([1], 2, [1], 0)
        warnings = [r.getMessage() for r in caplog.records if "cursor" in r.getMessage()]
        assert warnings == [f"audit stage cursor of {tenant} bucket 1 is not a stream id: bucket skipped"]
        entries = await log_entries(redis, tenant)
        assert sorted(e["request_id"] for e in entries[3:]) == ["b0-1", "b2-1"]
        assert await redis.xlen(BucketKeys(tenant, 1).audit_stage()) == 1  # kept for after the repair
        with pytest.raises(StageCursorDamaged) as damaged:
            await stages.position(tenant, 1, staged[1][0])
        assert (damaged.value.reason, damaged.value.status) == (
            "STAGE_CURSOR_DAMAGED",
            StatusKind.FAILED_PRECONDITION,
        )
        assert (await stages.position(tenant, 2, staged[2][0])).state is PositionState.SEQUENCED
        assert await stages.cursors(tenant) == {0: staged[0][0], 2: staged[2][0]}
        # Repaired (the cursor removed: the stream holds only what was never sequenced).
        await redis.hdel(TenantKeys(tenant).audit_stage_cursor(), "1")
        repaired = await sequencer.sequence(tenant)
        assert (repaired.damaged, repaired.appended) == ([], 1)
        assert (await log_entries(redis, tenant))[-1]["request_id"] == "b1-1"

    async def test_a_cursor_damaged_during_a_pass_passes_its_bucket_over(
        self, redis: RedisClient, tenant: str
    ) -> None:
        """Planted between the pass's read and its step: the step's CONFLICT, then the bucket is skipped."""
        await SyntheticStager(redis).stage(tenant, 0, [event(0, 0)])

        class PlantingFirst(RedisAuditStages):
            async def sequence(self, tenant: str, bucket: int, after: str, records: Any) -> Any:
                await redis.hset(TenantKeys(tenant).audit_stage_cursor(), str(bucket), "planted")
                return await super().sequence(tenant, bucket, after, records)

        report = await StageSequencer(PlantingFirst(redis, Scripts(redis)), 1).sequence(tenant)
        assert (report.conflicts, report.damaged, report.appended) == (1, [0], 0)
        assert await redis.xlen(BucketKeys(tenant, 0).audit_stage()) == 1

    async def test_a_closed_tenants_stage_with_a_damaged_cursor_is_dropped_whole(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """A removal's erasure drops the stream and counts all it held: none can be told sequenced."""
        await SyntheticStager(redis).stage(tenant, 0, [event(0, i) for i in range(2)])
        await redis.hset(TenantKeys(tenant).audit_stage_cursor(), "0", "planted")
        assert await stages.drop(tenant, 0) == 2
        assert await redis.exists(BucketKeys(tenant, 0).audit_stage()) == 0

    async def test_a_record_planted_below_the_cursor_is_read_and_refused_alone(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """A stream emptied and refilled below the cursor (its ids restart): read late, refused, deleted."""
        stage = BucketKeys(tenant, 0).audit_stage()
        await SyntheticStager(redis).stage(tenant, 0, [event(0, 0)])
        await StageSequencer(stages, 1).sequence(tenant)
        ((_, fields),) = await redis.xrange(TenantKeys(tenant).audit_receipts(0))
        await redis.delete(stage)
        await redis.xadd(stage, {b"b": b"x", b"ms": b"1"}, id="1-1")
        await SyntheticStager(redis).stage(tenant, 0, [event(0, 1)])
        report = await StageSequencer(stages, 1).sequence(tenant)
        assert (report.appended, report.refused) == (1, [(0, "1-1")])
        assert [e["request_id"] for e in await log_entries(redis, tenant)] == ["b0-0", "b0-1"]
        assert await redis.xlen(stage) == 0
        assert fields[b"i"] == b"0"
        assert re.fullmatch(rb"[0-9a-f]{16}", fields[b"h"])  # 64 bits of SHA-1: a receipt is kept a day
        assert await stages.position(tenant, 0, "1-1") == StagedPosition(PositionState.REFUSED)

    async def test_a_batch_below_the_cursor_or_out_of_order_writes_nothing(
        self, redis: RedisClient, scripts: Scripts, stages: RedisAuditStages, tenant: str
    ) -> None:
        """What the port never sends is refused whole by the script: no entry, the cursor kept."""
        await SyntheticStager(redis).stage(tenant, 0, [event(0, i) for i in range(3)])
        records = await stages.staged(tenant, 0, "", 10)
        await stages.sequence(tenant, 0, "", records[:1])
        cursor = records[0].stream_id
        for batch in ([records[0], records[1]], [records[2], records[1]]):
            with pytest.raises(RuntimeError, match="refused the batch"):
                await stages.sequence(tenant, 0, cursor, batch)
        keys = TenantKeys(tenant)
        script_keys = [
            keys.audit_log(),
            keys.audit_stage_cursor(),
            keys.audit_receipts(0),
            keys.removal(),
            keys.audit_late_receipts(0),
        ]
        no_record = await scripts.run("audit_sequence", script_keys, ["0", cursor, cursor])
        assert no_record[0] == b"BAD_BATCH"
        wrong_last = await scripts.run(
            "audit_sequence", script_keys, ["0", cursor, "9-9", records[1].stream_id, b"", b"", b"", b"", b""]
        )
        assert wrong_last[0] == b"BAD_BATCH"
        assert len(await log_entries(redis, tenant)) == 1
        assert await stages.cursor(tenant, 0) == cursor


class TestStreamRolledBack:
    """A bucket's shard failed over and lost its newest records; the promoted node's clock is behind.

    The promoted stream holds what its replica had: some records already sequenced (their
    deletion lost with the rest), its last id below the cursor. Records staged next follow that
    id, below the cursor, as a clock behind the lost ids makes them: XADD's ``*`` with such a clock
    takes the next sequence number after the stream's last id, which is the id of a lost record,
    then the next. Here they are written with those ids (one host, one clock), then one with the
    real clock, above the cursor.
    """

    async def test_records_staged_below_the_cursor_reach_the_log_once_in_order(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        stage = BucketKeys(tenant, 0).audit_stage()
        stager, sequencer = SyntheticStager(redis), StageSequencer(stages, 1)
        await stager.stage(tenant, 0, [event(0, n) for n in range(5)])
        await sequencer.sequence(tenant)
        lost = await stager.stage(tenant, 0, [event(0, n) for n in range(5, 10)])
        held = await redis.xrange(stage)
        await sequencer.sequence(tenant)
        assert await stages.cursor(tenant, 0) == lost[-1]
        # The promoted node's stream: the first two of them, its last id below the cursor.
        await redis.delete(stage)
        for stream_id, fields in held[:2]:
            await redis.xadd(stage, fields, id=stream_id)
        # Records as audit_stage writes them, staged for another tenant and copied at the ids
        # a clock behind gives: those of the lost records 7 and 8, whose receipts the log has.
        elsewhere = f"{tenant}-elsewhere"
        await stager.stage(elsewhere, 0, [event(0, n) for n in (10, 11)])
        new = await redis.xrange(BucketKeys(elsewhere, 0).audit_stage())
        behind = [lost[2], lost[3]]
        for stream_id, (_, fields) in zip(behind, new, strict=True):
            await redis.xadd(stage, fields, id=stream_id)
        (caught_up,) = await stager.stage(tenant, 0, [event(0, 12)])
        await sequencer.sequence(tenant)
        entries = await log_entries(redis, tenant)
        assert [e["request_id"] for e in entries] == [f"b0-{n}" for n in range(13)]
        assert await redis.xlen(stage) == 0
        assert [await stages.position(tenant, 0, i) for i in [*behind, caught_up]] == [
            StagedPosition(PositionState.SEQUENCED, n) for n in (10, 11, 12)
        ]
        # Sequenced once: another pass finds nothing, at or below the cursor or above it.
        assert (await sequencer.sequence(tenant)).appended == 0


class _OneBucketFails:
    """A stage store whose bucket 0 is unreachable and whose bucket 1's read never returns."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.stopped = False

    async def cursor(self, tenant: str, bucket: int) -> str:  # noqa: ARG002 - the port's signature
        return ""

    async def staged(
        self,
        tenant: str,  # noqa: ARG002 - the port's signature
        bucket: int,
        after: str,  # noqa: ARG002
        count: int,  # noqa: ARG002
    ) -> list[StagedRecord]:
        if bucket == 0:
            await self.reading.wait()  # bucket 1 is mid-read when bucket 0 fails
            raise StoreUnavailable("redis unavailable")
        self.reading.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stopped = True
            raise
        return []  # pragma: no cover - the wait above ends only by cancellation


async def test_a_failed_bucket_ends_the_whole_pass_before_it_returns() -> None:
    """No step of a failed pass runs on beside the next pass, or after a removal's close it preceded."""
    store = _OneBucketFails()
    with pytest.raises(StoreUnavailable):
        await StageSequencer(cast("StagedLog", store), 2).sequence("t")
    assert store.stopped


class TestClosedLog:
    async def test_a_log_its_removal_closed_takes_no_staged_entry_after_its_last(
        self, redis: RedisClient, scripts: Scripts, stages: RedisAuditStages, tenant: str
    ) -> None:
        """Staged while the removal is scheduled: before the close. Staged after: left for the erasure.

        A worker's loop sequences every tenant it knows, a closed one too, until it is erased.
        """
        request = {"principal": "tenants-remove/test@host", "request_id": "", "trace_id": ""}
        await SyntheticAppender(redis).append(tenant, [(request, {"type": "client.created"})])
        removals = RedisRemovalStore(redis, scripts)
        assert (await removals.schedule(tenant, request, 0, 0)).outcome is StepOutcome.DONE
        stager = SyntheticStager(redis)
        sequencer = StageSequencer(stages, 1)
        await stager.stage(tenant, 0, [event(0, 0)])
        assert (await sequencer.sequence(tenant)).appended == 1
        assert (await removals.close(tenant, request)).outcome is StepOutcome.DONE
        await stager.stage(tenant, 0, [event(0, 1)])
        report = await sequencer.sequence(tenant)
        entries = await log_entries(redis, tenant)
        assert entries[-1]["type"] == "tenant.removed"
        assert [e["request_id"] for e in entries if e["request_id"].startswith("b0-")] == ["b0-0"]
        assert report.appended == 0
        assert report.closed
        assert await sequencer.drop_stages(tenant) == 1

    async def test_a_cursor_at_the_greatest_id_drops_the_stream_without_a_failure(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """A record planted at the greatest stream id, passed by the sequencer: nothing sits above it.

        The least id above the cursor does not exist; computed without a carry it was one past
        2^64 - 1, which XTRIM refuses, and the tenant's removal could not drop the stage.
        """
        greatest = f"{2**64 - 1}-{2**64 - 1}"
        stage = BucketKeys(tenant, 0).audit_stage()
        await redis.xadd(stage, {"planted": "1"}, id=greatest)
        await redis.hset(TenantKeys(tenant).audit_stage_cursor(), "0", greatest)
        assert await StageSequencer(stages, 1).drop_stages(tenant) == 0
        assert not await redis.exists(stage)


class TestIntegrated:
    async def test_sequenced_entries_integrate_and_prove(
        self, redis: RedisClient, scripts: Scripts, stages: RedisAuditStages, tenant: str
    ) -> None:
        store = AuditStore(redis, scripts)
        stager = SyntheticStager(redis)
        for bucket in range(3):
            await stager.stage(tenant, bucket, [event(bucket, i) for i in range(40)])
        await StageSequencer(stages, 3).sequence(tenant)
        state = await TreeIntegrator(store).integrate(tenant)
        leaves = [merkle.leaf_hash(e) for e in await store.entries(tenant, list(range(120))) if e is not None]
        assert state.size == len(leaves) == 120
        for index in (0, 41, 119):
            plan = merkle.inclusion_plan(index, 120)
            merkle.verify_inclusion(
                leaves[index],
                index,
                120,
                plan.assemble(await store.read_nodes(tenant, plan.nodes)),
                state.root,
            )

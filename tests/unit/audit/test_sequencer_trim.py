"""A sequenced batch deleted from its stage stream by range, only where nothing else is in the range.

``RedisAuditStages.trim`` deletes a committed batch with one ``XTRIM MINID`` when
``audit_stage_trim.lua`` shows the stream holds, at or below the batch's last id, the batch alone;
else by id. Here the stream is changed between the read and the trim as a failover to a node whose
clock is behind, or a stream deleted and refilled, would change it, on a real redis-server: a
record below the cursor, or one between the batch's ids, must not be deleted unread.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from idverify.audit.sequencer import StagedRecord, StageSequencer, stream_order
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.connection import RedisClient
from idverify.store.keys import BucketKeys
from idverify.store.synthetic_audit import SyntheticStager
from tests.unit.audit.test_sequencer import event, log_entries

_tenants = itertools.count()


@pytest.fixture
def tenant() -> str:
    return f"trim-{next(_tenants)}"


async def deletions(redis: RedisClient) -> dict[str, int]:
    """How many XDEL and XTRIM commands the server ran so far (a worker's tests run one at a time)."""
    stats: dict[str, Any] = await redis.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("xdel", "xtrim")}


async def staged_elsewhere(redis: RedisClient, tenant: str, numbers: range) -> list[dict[bytes, bytes]]:
    """Records as ``audit_stage`` writes them, staged for another tenant (to be copied at chosen ids)."""
    elsewhere = f"{tenant}-elsewhere-{numbers.start}"
    await SyntheticStager(redis).stage(elsewhere, 0, [event(0, n) for n in numbers])
    return [dict(fields) for _, fields in await redis.xrange(BucketKeys(elsewhere, 0).audit_stage())]


async def sequenced_batch(
    redis: RedisClient, stages: RedisAuditStages, tenant: str
) -> tuple[str, list[StagedRecord]]:
    """Five entries sequenced and trimmed, then three more read and sequenced, not yet trimmed.

    The three are 10 ms apart, so that a clock behind may stage between them. Returns the
    cursor before the three, and the three as read.
    """
    await SyntheticStager(redis).stage(tenant, 0, [event(0, n) for n in range(5)])
    await StageSequencer(stages, 1).sequence(tenant)
    cursor = await stages.cursor(tenant, 0)
    ms, _ = stream_order(cursor)
    for step, fields in enumerate(await staged_elsewhere(redis, tenant, range(5, 8)), 1):
        await redis.xadd(BucketKeys(tenant, 0).audit_stage(), fields, id=f"{ms + 10 * step}-0")
    batch = await stages.staged(tenant, 0, cursor, 100)
    outcome = await stages.sequence(tenant, 0, cursor, batch)
    assert (outcome.appended, outcome.conflict) == (3, False)
    return cursor, batch


class TestTrimByRange:
    async def test_a_batch_nothing_else_joined_is_trimmed_by_range(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """The usual case takes the fast path: one XTRIM, no XDEL, and the records above stay."""
        _, batch = await sequenced_batch(redis, stages, tenant)
        (above,) = await SyntheticStager(redis).stage(tenant, 0, [event(0, 8)])
        before = await deletions(redis)
        await stages.trim(tenant, 0, batch)
        after = await deletions(redis)
        assert (after["xdel"] - before["xdel"], after["xtrim"] - before["xtrim"]) == (0, 1)
        assert [i.decode() for i, _ in await redis.xrange(BucketKeys(tenant, 0).audit_stage())] == [above]

    async def test_a_record_staged_below_the_cursor_after_the_read_is_not_trimmed(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """Between the read and the trim, the stream refilled: a record below the cursor, the batch.

        The range up to the batch's last id would take the low record unread; the trim deletes
        the batch's ids alone, and the next pass sequences the low record (late), once.
        """
        stage = BucketKeys(tenant, 0).audit_stage()
        cursor, batch = await sequenced_batch(redis, stages, tenant)
        (low,) = await staged_elsewhere(redis, tenant, range(8, 9))
        await redis.delete(stage)
        await redis.xadd(stage, low, id="1-1")  # below the cursor: a new stream takes any id
        for record in batch:  # then the batch again, each record as it was read
            await redis.xadd(stage, record.fields, id=record.stream_id)
        assert stream_order("1-1") < stream_order(cursor)
        before = await deletions(redis)
        await stages.trim(tenant, 0, batch)
        assert (await deletions(redis))["xtrim"] == before["xtrim"]  # no range deleted
        assert [i for i, _ in await redis.xrange(stage)] == [b"1-1"]
        assert (await StageSequencer(stages, 1).sequence(tenant)).appended == 1
        assert [e["request_id"] for e in await log_entries(redis, tenant)] == [f"b0-{n}" for n in range(9)]
        assert await redis.xlen(stage) == 0

    async def test_a_record_staged_between_the_batch_ids_after_a_rollback_is_not_trimmed(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """A failover lost the batch's newest record; the promoted node's clock, behind, staged below it.

        The stream's first record is still the batch's, so only the record at the batch's last
        id (gone) tells that the range holds another record, which the next pass sequences late.
        """
        stage = BucketKeys(tenant, 0).audit_stage()
        _, batch = await sequenced_batch(redis, stages, tenant)
        await redis.delete(stage)
        for record in batch[:2]:  # what the promoted node's replica held
            await redis.xadd(stage, record.fields, id=record.stream_id)
        ms, _ = stream_order(batch[1].stream_id)
        between = f"{ms + 5}-0"  # what XADD * takes with the promoted node's clock
        (fields,) = await staged_elsewhere(redis, tenant, range(8, 9))
        await redis.xadd(stage, fields, id=between)
        await stages.trim(tenant, 0, batch)
        assert [i.decode() for i, _ in await redis.xrange(stage)] == [between]
        assert (await StageSequencer(stages, 1).sequence(tenant)).appended == 1
        assert [e["request_id"] for e in await log_entries(redis, tenant)] == [f"b0-{n}" for n in range(9)]
        assert await redis.xlen(stage) == 0

    async def test_a_record_staged_at_the_last_ids_very_id_after_a_rollback_is_not_trimmed(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """The promoted node staged below the lost newest record and then at its very id, other fields.

        The stream's first and last ids are the batch's, but the last record is another: neither
        a range nor the batch's ids may delete the two new records, which the next pass takes.
        """
        stage = BucketKeys(tenant, 0).audit_stage()
        _, batch = await sequenced_batch(redis, stages, tenant)
        await redis.delete(stage)
        for record in batch[:2]:
            await redis.xadd(stage, record.fields, id=record.stream_id)
        ms, _ = stream_order(batch[1].stream_id)
        taken = [f"{ms + 5}-0", batch[2].stream_id]
        for stream_id, fields in zip(taken, await staged_elsewhere(redis, tenant, range(8, 10)), strict=True):
            await redis.xadd(stage, fields, id=stream_id)
        await stages.trim(tenant, 0, batch)
        assert [i.decode() for i, _ in await redis.xrange(stage)] == taken
        assert (await StageSequencer(stages, 1).sequence(tenant)).appended == 2
        assert [e["request_id"] for e in await log_entries(redis, tenant)] == [f"b0-{n}" for n in range(10)]
        assert await redis.xlen(stage) == 0

    async def test_a_planted_record_with_a_field_twice_is_still_deleted(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str
    ) -> None:
        """A read returns a field written twice once (a dict): the record is still the one read."""
        stage = BucketKeys(tenant, 0).audit_stage()
        await SyntheticStager(redis).stage(tenant, 0, [event(0, 0)])
        planted = (await redis.execute_command("XADD", stage, "*", "b", "x", "b", "y", "ms", "1")).decode()
        await SyntheticStager(redis).stage(tenant, 0, [event(0, 1)])
        batch = await stages.staged(tenant, 0, "", 100)
        assert batch[1].fields == {b"b": b"y", b"ms": b"1"}
        outcome = await stages.sequence(tenant, 0, "", batch)
        assert (outcome.appended, outcome.refused) == (2, (planted,))
        # Deleted by its record (the stream's first is another), then the others by range.
        await stages.trim(tenant, 0, batch[1:2])
        assert [i.decode() for i, _ in await redis.xrange(stage)] == [batch[0].stream_id, batch[2].stream_id]
        await stages.trim(tenant, 0, batch[:1])
        await stages.trim(tenant, 0, batch[2:])
        assert await redis.xlen(stage) == 0

    @pytest.mark.parametrize(
        "planted", ["{ms}-18446744073709551615", "18446744073709551615-18446744073709551615"]
    )
    async def test_a_record_planted_at_a_last_sequence_number_is_refused_and_deleted(
        self, redis: RedisClient, stages: RedisAuditStages, tenant: str, planted: str
    ) -> None:
        """No id follows a millisecond's greatest sequence number but the next one's, none the greatest id."""
        stage = BucketKeys(tenant, 0).audit_stage()
        (first,) = await SyntheticStager(redis).stage(tenant, 0, [event(0, 0)])
        ms, _ = stream_order(first)
        planted_id = planted.format(ms=ms + 1)
        await redis.xadd(stage, {b"b": b"x", b"ms": b"1"}, id=planted_id)
        report = await StageSequencer(stages, 1).sequence(tenant)
        assert (report.appended, report.refused) == (1, [(0, planted_id)])
        assert await redis.xlen(stage) == 0

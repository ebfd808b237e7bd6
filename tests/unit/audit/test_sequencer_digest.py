"""The receipts' digests, computed by the sequencer rather than by Redis in the step, are the same.

A receipt keeps 64 bits of the SHA-1 of its record's fields; ``audit_sequence.lua`` takes them
from its caller (``store.audit_stages.record_digest``) and computes them itself only when not
given. Receipts written either way must know their records again: a crash's leftover whose
receipt Redis's SHA-1 wrote (as before the digests moved) is deleted, not appended twice.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from idverify.audit.sequencer import StageSequencer
from idverify.store.audit_stages import RedisAuditStages, record_digest
from idverify.store.connection import RedisClient
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticStager
from tests.unit.audit.test_sequencer import event, log_entries

_tenants = itertools.count()
FIELDS = (b"b", b"ms", b"ea", b"ef", b"c")


@pytest.fixture
def tenant() -> str:
    return f"digest-{next(_tenants)}"


def script_keys(tenant: str) -> list[str]:
    keys = TenantKeys(tenant)
    return [
        keys.audit_log(),
        keys.audit_stage_cursor(),
        keys.audit_receipts(0),
        keys.removal(),
        keys.audit_late_receipts(0),
    ]


async def receipt_digests(redis: RedisClient, tenant: str) -> list[bytes]:
    return [fields[b"h"] for _, fields in await redis.xrange(TenantKeys(tenant).audit_receipts(0))]


async def test_a_receipt_redis_digested_knows_its_leftover_record_again(
    redis: RedisClient, scripts: Scripts, stages: RedisAuditStages, tenant: str
) -> None:
    """A batch appended with the digests computed in the step, not deleted (a crash), then a pass."""
    await SyntheticStager(redis).stage(tenant, 0, [event(0, n) for n in range(3)])
    records = await stages.staged(tenant, 0, "", 100)
    args: list[Any] = ["0", "", records[-1].stream_id]
    for record in records:
        args += [record.stream_id, *(record.fields.get(name, b"") for name in FIELDS)]
    reply = await scripts.run("audit_sequence", script_keys(tenant), args)
    assert (reply[0], reply[2]) == (b"OK", 3)
    assert await receipt_digests(redis, tenant) == [
        record_digest([r.fields.get(name, b"") for name in FIELDS]).encode() for r in records
    ]
    report = await StageSequencer(stages, 1).sequence(tenant)
    assert report.appended == 0
    assert [e["request_id"] for e in await log_entries(redis, tenant)] == ["b0-0", "b0-1", "b0-2"]
    assert await redis.xlen(BucketKeys(tenant, 0).audit_stage()) == 0


async def test_digests_of_another_length_write_nothing(
    redis: RedisClient, scripts: Scripts, stages: RedisAuditStages, tenant: str
) -> None:
    await SyntheticStager(redis).stage(tenant, 0, [event(0, 0)])
    (record,) = await stages.staged(tenant, 0, "", 100)
    args: list[Any] = ["0", "", record.stream_id, record.stream_id]
    args += [record.fields.get(name, b"") for name in FIELDS]
    reply = await scripts.run("audit_sequence", script_keys(tenant), [*args, "0" * 15])
    assert reply == [b"BAD_BATCH", b"digests"]
    assert await stages.cursor(tenant, 0) == ""
    assert await log_entries(redis, tenant) == []

"""The worker's UTF-8 marks: the step skips its own check of a body its caller decoded, and only then.

``audit_sequence.lua`` refuses a staged body that is not UTF-8 (a record planted by someone with
Redis write access). The sequencer's worker decodes each body it passes (``is_utf8``) and marks
those it found UTF-8; the step skips its check for them and keeps it for a record unmarked (a
worker of an earlier release, or another caller). On a real redis-server.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from idverify.audit.sequencer import StagedRecord, StageSequencer
from idverify.store.audit_stages import RedisAuditStages, is_utf8, record_digest
from idverify.store.connection import RedisClient
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticStager
from tests.unit.audit.test_sequencer import NOT_UTF8_TEXTS, UTF8_TEXTS, event, log_entries
from tests.unit.audit.test_sequencer_digest import FIELDS, script_keys

_tenants = itertools.count()


@pytest.fixture
def tenant() -> str:
    return f"utf8-{next(_tenants)}"


async def staged_body(redis: RedisClient, tenant: str) -> dict[bytes, bytes]:
    """A record as audit_stage() writes it (staged, read, and deleted again)."""
    stage = BucketKeys(tenant, 0).audit_stage()
    await SyntheticStager(redis).stage(tenant, 0, [event(0, 0)])
    ((_, fields),) = await redis.xrange(stage)
    await redis.delete(stage)
    return dict(fields)


def with_text(fields: dict[bytes, bytes], text: bytes) -> dict[bytes, bytes]:
    """The record with ``text`` as its attribute: canonical, whatever the bytes."""
    attributes = b'"attributes":{"x":"' + text + b'"}'
    return {**fields, b"b": fields[b"b"].replace(b'"attributes":{}', attributes)}


async def stage_texts(redis: RedisClient, tenant: str, texts: list[bytes]) -> list[str]:
    good = await staged_body(redis, tenant)
    stage = BucketKeys(tenant, 0).audit_stage()
    return [(await redis.xadd(stage, with_text(good, t))).decode() for t in texts]  # type: ignore[arg-type]


async def run_step(
    redis: RedisClient, tenant: str, records: list[StagedRecord], *, digests: bool, marks: str | None
) -> Any:
    """audit_sequence.lua called as a worker of a given release calls it (digests, marks or neither)."""
    args: list[Any] = ["0", "", records[-1].stream_id]
    rows = [tuple(record.fields.get(name, b"") for name in FIELDS) for record in records]
    for record, row in zip(records, rows, strict=True):
        args += [record.stream_id, *row]
    if digests:
        args.append("".join(record_digest(row) for row in rows))
    if marks is not None:
        args.append(marks)
    return await Scripts(redis).run("audit_sequence", script_keys(tenant), args)


def test_the_workers_decoder_agrees_with_the_steps_check() -> None:
    """Each case of the step's own test (tests/unit/audit/test_sequencer.py) judged alike here."""
    body = b',"type":"x","attributes":{"x":"%s"}'
    assert is_utf8(body % b"plain ascii")
    assert is_utf8(body % b"a\x00b")  # the step's check lets a NUL by too (the canonical one does not)
    assert [t for t in UTF8_TEXTS if not is_utf8(body % t)] == []
    assert [t for t in NOT_UTF8_TEXTS if is_utf8(body % t)] == []


@pytest.mark.parametrize(
    ("digests", "marks"),
    [(False, None), (True, None), (True, "0")],
    ids=["a worker before the digests", "a worker before the marks", "nothing marked"],
)
async def test_a_step_without_marks_still_refuses_every_case_alone(
    redis: RedisClient,
    stages: RedisAuditStages,
    tenant: str,
    digests: bool,
    marks: str | None,
) -> None:
    texts = UTF8_TEXTS + NOT_UTF8_TEXTS
    ids = await stage_texts(redis, tenant, texts)
    records = await stages.staged(tenant, 0, "", 100)
    reply = await run_step(
        redis, tenant, records, digests=digests, marks=None if marks is None else marks * len(records)
    )
    assert reply[:3] == [b"OK", 0, len(UTF8_TEXTS)]
    assert [r.decode() for r in reply[3:]] == ids[len(UTF8_TEXTS) :]
    assert [e["attributes"]["x"].encode() for e in await log_entries(redis, tenant)] == UTF8_TEXTS


async def test_a_mark_is_the_callers_word_so_only_the_worker_sets_it(
    redis: RedisClient, stages: RedisAuditStages, tenant: str
) -> None:
    """The step skips its check for a marked body: a mark, not the bytes, decides there.

    Hence the worker marks only a body it decoded, from the bytes it passes beside the mark;
    whoever can call the step can write the log directly anyway.
    """
    await stage_texts(redis, tenant, [b"\xff"])
    records = await stages.staged(tenant, 0, "", 100)
    reply = await run_step(redis, tenant, records, digests=True, marks="1")
    assert reply == [b"OK", 0, 1]
    assert b'"x":"\xff"' in (await redis.hget(TenantKeys(tenant).audit_log(), "0") or b"")


@pytest.mark.parametrize("marks", ["", "11", "2", "x"])
async def test_marks_of_another_length_or_alphabet_write_nothing(
    redis: RedisClient, stages: RedisAuditStages, tenant: str, marks: str
) -> None:
    await stage_texts(redis, tenant, ["é".encode()])
    records = await stages.staged(tenant, 0, "", 100)
    assert await run_step(redis, tenant, records, digests=True, marks=marks) == [b"BAD_BATCH", b"marks"]
    assert await stages.cursor(tenant, 0) == ""
    assert await log_entries(redis, tenant) == []


async def test_a_record_changed_after_the_read_is_judged_by_its_new_bytes(
    redis: RedisClient, stages: RedisAuditStages, tenant: str
) -> None:
    """A record rewritten at its id between the worker's read and its step (Redis write access).

    The step appends the bytes read, for which the mark was made; the rewritten record is not
    deleted with the batch (not as read), is read again below the cursor, its digest unknown to
    the receipts, and its new bytes are decoded afresh: unmarked, the step's check refuses it.
    """
    stage = BucketKeys(tenant, 0).audit_stage()
    (read_id,) = await stage_texts(redis, tenant, ["é".encode()])
    records = await stages.staged(tenant, 0, "", 100)
    read = records[0].fields
    planted = {**read, b"b": read[b"b"].replace("é".encode(), b"\xed\xa0\x80")}  # a surrogate
    await redis.delete(stage)
    await redis.xadd(stage, planted, id=read_id)  # type: ignore[arg-type]

    assert (await stages.sequence(tenant, 0, "", records)).appended == 1
    await stages.trim(tenant, 0, records)
    assert [r[0].decode() for r in await redis.xrange(stage)] == [read_id]

    report = await StageSequencer(stages, 1).sequence(tenant)
    assert report.refused == [(0, read_id)]
    assert [e["attributes"]["x"] for e in await log_entries(redis, tenant)] == ["é"]
    assert await redis.xlen(stage) == 0

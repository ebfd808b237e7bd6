"""Staged entries not yet in the log, as QueryEvents' include_pending and GetStagedEntry show them.

At the use-case level (``AuditFlow`` over ``RedisAuditLog`` and ``RedisAuditStages``) on a real
redis-server: entries staged through the prelude's real ``audit_stage`` (``SyntheticStager``),
sequenced by the real ``StageSequencer``. A pending entry follows the log's entries, filtered as
they are, is in no head or proof, and is later in the log with the same content; a query that
races a sequencer shows each entry once; a record the sequencer would refuse is never shown,
nor anything of a record that no entry holds.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import pending as pending_module
from idverify.audit.checkpoint import TreeHeadSigner
from idverify.audit.events import AuditEvent
from idverify.audit.pending import PendingReadLimit, StagedRead
from idverify.audit.query import QueryResult, StagedAt
from idverify.audit.sequencer import (
    PositionState,
    StageCursorDamaged,
    StagedPosition,
    StagedRecord,
    StageSequencer,
    stream_order,
)
from idverify.domain.errors import InvalidArgument, OutOfRange
from idverify.flows.audit import AuditFlow, QueryRequest
from idverify.flows.read_accounting import Category, Reader, ReadLedger
from idverify.privacy.keyring import Keyring
from idverify.security.principals import Principal, Role, current_principal
from idverify.services.audit import AuditServicer
from idverify.services.interceptor import status_for
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.connection import RedisClient
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender, SyntheticStager
from idverify.v1 import audit_pb2

KEYRING = Keyring.generate()
BUCKETS = 4
_tenants = itertools.count()

# Positions no bucket of a server with BUCKETS holds: (bucket, stream id, the field at fault).
BAD_POSITIONS = [
    (BUCKETS, "1-0", "bucket"),
    (2**32 - 1, "1-0", "bucket"),
    (0, "", "stream_id"),
    (0, "5", "stream_id"),
    (0, "a-b", "stream_id"),
    (0, "1-2-3", "stream_id"),
    (0, "-1-0", "stream_id"),
    (0, " 1-0", "stream_id"),
    (0, "18446744073709551616-0", "stream_id"),
    (0, "1-" + "9" * 21, "stream_id"),
    # Leading zeros: no stored id has them (Redis would read 01-0 as 1-0).
    (0, "01-0", "stream_id"),
    (0, "1-00", "stream_id"),
    (0, "00-0", "stream_id"),
    (0, "١-٠", "stream_id"),  # noqa: RUF001 - digits, but not ASCII ones
]


@pytest.fixture
def tenant() -> str:
    return f"pending-{next(_tenants)}"


@pytest.fixture
def flow(redis: RedisClient, stages: RedisAuditStages) -> AuditFlow:
    return AuditFlow(
        RedisAuditLog(redis, Scripts(redis)),
        TreeHeadSigner(Ed25519PrivateKey.generate()),
        KEYRING,
        stages=stages,
        stage_buckets=BUCKETS,
    )


def event(tenant: str, name: str, **fields: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (base, fields) pair: a verification start of account ``acct-<name>`` unless told otherwise."""
    base = {"principal": f"{tenant}/registrar/c1", "request_id": name, "trace_id": ""}
    return base, {
        "type": "verification.started",
        "outcome": "started",
        "method": "sms",
        "account": KEYRING.pseudonym(tenant, "audit", f"acct-{name}"),
        **fields,
    }


async def query(flow: AuditFlow, tenant: str, **request: Any) -> list[QueryResult]:
    return [found async for found in flow.query(tenant, QueryRequest(**request))]


async def pages(
    flow: AuditFlow, tenant: str, **request: Any
) -> tuple[list[QueryResult], PendingReadLimit | None]:
    """A query's entries, and the cut that ended it when its pending part read its bound."""
    found: list[QueryResult] = []
    try:
        async for result in flow.query(tenant, QueryRequest(**request)):
            found.append(result)  # noqa: PERF401 - a comprehension would lose those before the cut
    except PendingReadLimit as cut:
        return found, cut
    return found, None


def names(results: list[QueryResult]) -> list[tuple[str, bool]]:
    """Each result's request id, and whether it is pending."""
    return [(r.event.request_id, r.pending is not None) for r in results]


def content(found: AuditEvent) -> AuditEvent:
    """An entry without its number and time: what it records."""
    return AuditEvent(**{**{f: getattr(found, f) for f in AuditEvent.__slots__}, "index": 0, "time_ms": 0})


async def stage(redis: RedisClient, tenant: str, bucket: int, *names_: str) -> list[str]:
    return await SyntheticStager(redis).stage(tenant, bucket, [event(tenant, n) for n in names_])


class TestPendingPart:
    async def test_after_the_log_in_no_head_then_in_the_log_with_the_same_content(
        self, redis: RedisClient, flow: AuditFlow, stages: RedisAuditStages, tenant: str
    ) -> None:
        await SyntheticAppender(redis).append(tenant, [event(tenant, "log-0"), event(tenant, "log-1")])
        ids_2 = await stage(redis, tenant, 2, "b2-0", "b2-1")
        ids_0 = await stage(redis, tenant, 0, "b0-0")
        assert names(await query(flow, tenant)) == [("log-0", False), ("log-1", False)]
        found = await query(flow, tenant, include_pending=True)
        # Buckets in order, each in stream order, after the log's entries.
        assert names(found) == [
            ("log-0", False),
            ("log-1", False),
            ("b0-0", True),
            ("b2-0", True),
            ("b2-1", True),
        ]
        pending = found[2:]
        assert [r.pending for r in pending] == [
            StagedAt(0, ids_0[0]),
            StagedAt(2, ids_2[0]),
            StagedAt(2, ids_2[1]),
        ]
        assert all(r.event.index == 0 and r.leaf == b"" and r.stored_leaf_hash is None for r in pending)
        assert (await flow.signed_head(tenant)).head.size == 2  # a signed head covers the log alone
        with pytest.raises(OutOfRange):
            await flow.inclusion_proof(tenant, 2, 3)
        assert await flow.staged_entry(tenant, 2, ids_2[1]) == StagedPosition(PositionState.PENDING)

        await StageSequencer(stages, BUCKETS).sequence(tenant)
        assert (await flow.signed_head(tenant)).head.size == 5
        after = await query(flow, tenant, include_pending=True)
        assert [r.pending for r in after] == [None] * 5
        integrated = {r.event.request_id: r for r in after}
        for was in pending:
            now = integrated[was.event.request_id]
            assert content(now.event) == content(was.event)
            assert now.stored_leaf_hash is not None
            assert was.pending is not None
            position = await flow.staged_entry(tenant, was.pending.bucket, was.pending.stream_id)
            assert position == StagedPosition(PositionState.SEQUENCED, now.event.index)
            await flow.inclusion_proof(tenant, now.event.index, 5)

    async def test_filtered_as_the_logs_entries_are(
        self, redis: RedisClient, flow: AuditFlow, tenant: str
    ) -> None:
        await SyntheticStager(redis).stage(
            tenant,
            1,
            [
                event(tenant, "a"),
                event(tenant, "b", type="verification.verified", outcome="verified"),
                event(tenant, "c", method="faceid"),
            ],
        )

        async def pending(**request: Any) -> list[str]:
            return [r.event.request_id for r in await query(flow, tenant, include_pending=True, **request)]

        assert await pending() == ["a", "b", "c"]
        assert await pending(types=["verification.verified"]) == ["b"]
        assert await pending(outcomes=["started"]) == ["a", "c"]
        assert await pending(method="faceid") == ["c"]
        assert await pending(account_id="acct-b") == ["b"]
        assert await pending(account_id="acct-z") == []
        now_ms = int(time.time() * 1000)
        assert await pending(start_ms=now_ms + 60_000) == []
        assert await pending(end_ms=now_ms - 60_000) == []
        assert await pending(start_ms=now_ms - 60_000) == ["a", "b", "c"]

    async def test_only_when_no_limit_cut_the_log_part_and_within_it(
        self, redis: RedisClient, flow: AuditFlow, tenant: str
    ) -> None:
        await SyntheticAppender(redis).append(tenant, [event(tenant, "log-0"), event(tenant, "log-1")])
        await stage(redis, tenant, 3, "p-0", "p-1")
        assert names(await query(flow, tenant, include_pending=True, limit=2)) == [
            ("log-0", False),
            ("log-1", False),
        ]
        assert names(await query(flow, tenant, include_pending=True, limit=3))[-1] == ("p-0", True)
        # Pending entries have no number: a query resumed past the log still ends with them.
        assert names(await query(flow, tenant, include_pending=True, start_index=2)) == [
            ("p-0", True),
            ("p-1", True),
        ]

    async def test_a_query_reads_at_most_its_bound_of_staged_records_and_says_where_it_stopped(
        self, redis: RedisClient, flow: AuditFlow, tenant: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(pending_module, "PENDING_READ", 5)
        await SyntheticAppender(redis).append(tenant, [event(tenant, "log-0")])
        ids = [
            await stage(redis, tenant, bucket, *(f"b{bucket}-{i}" for i in range(3))) for bucket in range(3)
        ]
        found, cut = await pages(flow, tenant, include_pending=True)
        assert [r.event.request_id for r in found] == ["log-0", "b0-0", "b0-1", "b0-2", "b1-0", "b1-1"]
        assert cut is not None
        assert (cut.start_index, cut.after) == (1, StagedAt(1, ids[1][1]))
        status = status_for(cut)
        assert status.code is grpc.StatusCode.FAILED_PRECONDITION
        assert cut.reason == "PENDING_READ_LIMIT"
        assert cut.metadata == {"start_index": "1", "pending_bucket": "1", "pending_stream_id": ids[1][1]}
        # Where it stopped, the next query goes on: the rest, and the walk has ended.
        rest, end = await pages(flow, tenant, include_pending=True, start_index=1, pending_after=cut.after)
        assert (names(rest), end) == ([("b1-2", True), ("b2-0", True), ("b2-1", True), ("b2-2", True)], None)

    async def test_a_cut_is_told_when_no_record_read_matched(
        self, redis: RedisClient, flow: AuditFlow, tenant: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The bound counts records read, not entries shown: a stream without a message is still told."""
        monkeypatch.setattr(pending_module, "PENDING_READ", 4)
        await stage(redis, tenant, 0, *(f"other-{i}" for i in range(6)))
        await SyntheticStager(redis).stage(
            tenant, 1, [event(tenant, "wanted", type="verification.verified", outcome="verified")]
        )
        wanted = {"include_pending": True, "types": ["verification.verified"]}
        found, cut = await pages(flow, tenant, **wanted)
        assert found == []
        assert cut is not None
        assert cut.start_index == 0
        found, cut = await pages(flow, tenant, **wanted, pending_after=cut.after)
        assert (names(found), cut) == ([("wanted", True)], None)

    async def test_a_cut_at_a_buckets_end_goes_on_with_the_next_bucket(
        self, redis: RedisClient, flow: AuditFlow, tenant: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(pending_module, "PENDING_READ", 2)
        first = await stage(redis, tenant, 1, "b1-0", "b1-1")
        await stage(redis, tenant, 3, "b3-0")
        found, cut = await pages(flow, tenant, include_pending=True)
        assert names(found) == [("b1-0", True), ("b1-1", True)]
        assert cut is not None
        assert cut.after == StagedAt(1, first[1])
        found, cut = await pages(flow, tenant, include_pending=True, pending_after=cut.after)
        assert (names(found), cut) == ([("b3-0", True)], None)

    async def test_exactly_the_bound_staged_is_no_cut(
        self, redis: RedisClient, flow: AuditFlow, tenant: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(pending_module, "PENDING_READ", 3)
        await stage(redis, tenant, 0, "b0-0", "b0-1")
        await stage(redis, tenant, 2, "b2-0")
        found, cut = await pages(flow, tenant, include_pending=True)
        assert (len(found), cut) == (3, None)

    async def test_a_server_that_stages_nowhere_shows_none(self, redis: RedisClient, tenant: str) -> None:
        unstaged = AuditFlow(
            RedisAuditLog(redis, Scripts(redis)), TreeHeadSigner(Ed25519PrivateKey.generate()), KEYRING
        )
        await SyntheticAppender(redis).append(tenant, [event(tenant, "log-0")])
        await stage(redis, tenant, 0, "p-0")
        assert names(await query(unstaged, tenant, include_pending=True)) == [("log-0", False)]


class _Calls(ReadLedger):
    """A ledger that keeps the calls recorded, as (tenant, RPC)."""

    def __init__(self) -> None:
        super().__init__(None, KEYRING, 1)  # type: ignore[arg-type]
        self.calls: list[tuple[str, str]] = []

    async def record_call(self, tenant: str, reader: Reader, categories: Sequence[Category]) -> None:
        del categories
        self.calls.append((tenant, reader.rpc))


async def test_a_query_cut_before_any_entry_is_still_a_recorded_read(
    redis: RedisClient, flow: AuditFlow, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QueryEvents over the servicer: the cut ends the call, and the call is recorded as a read."""
    monkeypatch.setattr(pending_module, "PENDING_READ", 2)
    await SyntheticAppender(redis).append(tenant, [event(tenant, "log-0")])
    await stage(redis, tenant, 0, "b0-0", "b0-1", "b0-2")
    ledger = _Calls()
    servicer = AuditServicer(flow, ledger)
    current_principal.set(Principal(tenant, Role.AUDITOR, "c1"))
    request = audit_pb2.QueryEventsRequest(
        include_pending=True, start_index=1, event_types=["verification.verified"]
    )
    with pytest.raises(PendingReadLimit):
        await anext(aiter(servicer.QueryEvents(request, None)))  # type: ignore[arg-type]
    assert ledger.calls == [(tenant, "QueryEvents")]


class TestPendingAfter:
    """``pending_after``: a query's pending part goes on after a position, never showing one twice."""

    async def test_a_limit_cut_among_pending_entries_goes_on_after_the_last(
        self, redis: RedisClient, flow: AuditFlow, tenant: str
    ) -> None:
        await SyntheticAppender(redis).append(tenant, [event(tenant, "log-0")])
        await stage(redis, tenant, 0, "b0-0", "b0-1")
        await stage(redis, tenant, 2, "b2-0")
        first = await query(flow, tenant, include_pending=True, limit=2)
        assert names(first) == [("log-0", False), ("b0-0", True)]
        rest = await query(flow, tenant, include_pending=True, start_index=1, pending_after=first[-1].pending)
        assert names(rest) == [("b0-1", True), ("b2-0", True)]

    async def test_before_every_record_is_the_whole_bucket(
        self, redis: RedisClient, flow: AuditFlow, tenant: str
    ) -> None:
        await stage(redis, tenant, 0, "b0-0")
        await stage(redis, tenant, 2, "b2-0", "b2-1")
        from_2 = await query(flow, tenant, include_pending=True, pending_after=StagedAt(2, "0-0"))
        assert names(from_2) == [("b2-0", True), ("b2-1", True)]
        largest = f"{2**64 - 1}-{2**64 - 1}"
        assert (
            await query(flow, tenant, include_pending=True, pending_after=StagedAt(BUCKETS - 1, largest))
            == []
        )

    async def test_an_entry_sequenced_between_two_queries_is_in_the_next_ones_log_part(
        self,
        redis: RedisClient,
        flow: AuditFlow,
        stages: RedisAuditStages,
        tenant: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Shown pending, then numbered: once as each.

        Staged meanwhile: ahead of the walk, shown pending by the next query; behind it, by a
        query that starts a walk anew.
        """
        monkeypatch.setattr(pending_module, "PENDING_READ", 3)
        await SyntheticAppender(redis).append(tenant, [event(tenant, "log-0")])
        await stage(redis, tenant, 0, "b0-0", "b0-1")
        await stage(redis, tenant, 1, "b1-0")
        await stage(redis, tenant, 3, "b3-0")
        first, cut = await pages(flow, tenant, include_pending=True)
        assert names(first) == [("log-0", False), ("b0-0", True), ("b0-1", True), ("b1-0", True)]
        assert cut is not None
        await StageSequencer(stages, 2).sequence(tenant)  # buckets 0 and 1: b3-0 stays staged
        await stage(redis, tenant, 0, "b0-late")
        await stage(redis, tenant, 1, "b1-late")
        rest, end = await pages(
            flow, tenant, include_pending=True, start_index=cut.start_index, pending_after=cut.after
        )
        assert (names(rest), end) == (
            [("b0-0", False), ("b0-1", False), ("b1-0", False), ("b1-late", True), ("b3-0", True)],
            None,
        )
        for was, now in zip(first[1:], rest, strict=False):
            assert content(now.event) == content(was.event)
        anew = await query(flow, tenant, include_pending=True, start_index=rest[2].event.index + 1)
        assert names(anew) == [("b0-late", True), ("b1-late", True), ("b3-0", True)]

    @pytest.mark.parametrize(("bucket", "stream_id", "field"), BAD_POSITIONS)
    async def test_bad_positions_are_named(
        self, flow: AuditFlow, tenant: str, bucket: int, stream_id: str, field: str
    ) -> None:
        with pytest.raises(InvalidArgument) as refused:
            flow.query(tenant, QueryRequest(include_pending=True, pending_after=StagedAt(bucket, stream_id)))
        assert refused.value.field == f"pending_after.{field}"
        assert refused.value.reason == ("BAD_BUCKET" if field == "bucket" else "BAD_STREAM_ID")
        assert status_for(refused.value).code is grpc.StatusCode.INVALID_ARGUMENT

    async def test_without_include_pending_it_contradicts_the_request(
        self, flow: AuditFlow, tenant: str
    ) -> None:
        with pytest.raises(InvalidArgument) as refused:
            flow.query(tenant, QueryRequest(pending_after=StagedAt(0, "1-0")))
        assert (refused.value.reason, refused.value.field) == (
            "PENDING_AFTER_WITHOUT_PENDING",
            "pending_after",
        )

    async def test_a_server_that_stages_nowhere_has_no_bucket_to_go_on_in(
        self, redis: RedisClient, tenant: str
    ) -> None:
        unstaged = AuditFlow(
            RedisAuditLog(redis, Scripts(redis)), TreeHeadSigner(Ed25519PrivateKey.generate()), KEYRING
        )
        with pytest.raises(InvalidArgument) as refused:
            unstaged.query(tenant, QueryRequest(include_pending=True, pending_after=StagedAt(0, "1-0")))
        assert refused.value.field == "pending_after.bucket"


class _Untrimmed(RedisAuditStages):
    """A sequencer's stages that never delete what a step appended: a crash before each trim."""

    async def trim(self, tenant: str, bucket: int, records: Sequence[StagedRecord]) -> None:
        del tenant, bucket, records


class _Busy(RedisAuditStages):
    """Stage reads beside a sequencer drawn at random: some buckets, trimmed or not, within a query."""

    def __init__(self, redis: RedisClient, scripts: Scripts, tenant: str, draw: random.Random) -> None:
        super().__init__(redis, scripts)
        self._plain = RedisAuditStages(redis, scripts)
        self._untrimmed = _Untrimmed(redis, scripts)
        self._tenant = tenant
        self.draw = draw

    async def maybe_sequence(self) -> None:
        if self.draw.random() < 0.3:
            store = self._untrimmed if self.draw.random() < 0.3 else self._plain
            await StageSequencer(store, self.draw.randint(1, BUCKETS)).sequence(self._tenant)

    async def read_staged(self, tenant: str, bucket: int, count: int, after: str = "") -> StagedRead:
        read = await super().read_staged(tenant, bucket, count, after)
        await self.maybe_sequence()
        return read

    async def cursors(self, tenant: str) -> dict[int, str]:
        await self.maybe_sequence()
        return await super().cursors(tenant)


@pytest.mark.parametrize("seed", range(12))
async def test_a_walk_through_the_pages_shows_every_entry_and_no_position_twice(
    redis: RedisClient, tenant: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages cut by the bound and by limits while sequencers run in and between them and more is staged.

    Every entry staged before the walk is shown, pending or numbered; no staged position and no
    number is shown twice, each in walk order; an entry numbered is never shown pending after,
    and shows what it showed pending.
    """
    monkeypatch.setattr(pending_module, "PENDING_READ", 4)
    draw = random.Random(seed)  # noqa: S311 - a test's draw
    busy = _Busy(redis, Scripts(redis), tenant, draw)
    flow = AuditFlow(
        RedisAuditLog(redis, Scripts(redis)),
        TreeHeadSigner(Ed25519PrivateKey.generate()),
        KEYRING,
        stages=busy,
        stage_buckets=BUCKETS,
    )
    await SyntheticAppender(redis).append(tenant, [event(tenant, "log-0"), event(tenant, "log-1")])
    names_ = (f"s{n}" for n in itertools.count())
    before: set[str] = set()
    for bucket in range(BUCKETS):
        batch = [next(names_) for _ in range(draw.randint(0, 10))]
        if batch:
            await stage(redis, tenant, bucket, *batch)
            before.update(batch)
    start, after = 0, None
    positions: list[tuple[int, tuple[int, int]]] = []
    numbers: list[int] = []
    pending_shown: dict[str, AuditEvent] = {}
    numbered: set[str] = set()
    for _ in range(200):
        if draw.random() < 0.3:
            await stage(redis, tenant, draw.randrange(BUCKETS), next(names_))
        limit = draw.choice([0, 0, 3])
        found, cut = await pages(
            flow, tenant, include_pending=True, start_index=start, pending_after=after, limit=limit
        )
        for result in found:
            name = result.event.request_id
            if result.pending is None:
                numbers.append(result.event.index)
                numbered.add(name)
                if name in pending_shown:
                    assert content(result.event) == content(pending_shown[name])
            else:
                assert name not in numbered, f"{name} shown pending after it was numbered"
                positions.append((result.pending.bucket, stream_order(result.pending.stream_id)))
                pending_shown[name] = result.event
        if cut is not None:
            start, after = cut.start_index, cut.after
        elif limit and len(found) == limit:
            logged = [r.event.index for r in found if r.pending is None]
            start = logged[-1] + 1 if logged else start
            after = found[-1].pending or after
        else:
            break
    else:
        pytest.fail("the walk never ended")
    assert positions == sorted(set(positions)), "a staged position shown twice, or out of walk order"
    assert numbers == sorted(set(numbers)), "a number shown twice, or out of order"
    assert before <= numbered | set(pending_shown), "an entry staged before the walk was never shown"


class _Racing(RedisAuditStages):
    """Stage reads that let a sequencer run in a query: after its stage read, or before its cursor read."""

    def __init__(self, redis: RedisClient, scripts: Scripts, tenant: str, *, when: str) -> None:
        super().__init__(redis, scripts)
        self._sequencer = StageSequencer(RedisAuditStages(redis, scripts), BUCKETS)
        self._tenant = tenant
        self._when = when

    async def read_staged(self, tenant: str, bucket: int, count: int, after: str = "") -> StagedRead:
        read = await super().read_staged(tenant, bucket, count, after)
        if self._when == "before the log's size":
            await self._sequencer.sequence(self._tenant)
        return read

    async def cursors(self, tenant: str) -> dict[int, str]:
        if self._when == "after the log's size":
            await self._sequencer.sequence(self._tenant)
        return await super().cursors(tenant)


@pytest.mark.parametrize("when", ["before the log's size", "after the log's size"])
async def test_an_entry_sequenced_while_a_query_runs_is_shown_once(
    redis: RedisClient, tenant: str, when: str
) -> None:
    """Sequenced before the log part's cut: in it; after: still pending. Never in both, never in neither."""
    racing = _Racing(redis, Scripts(redis), tenant, when=when)
    flow = AuditFlow(
        RedisAuditLog(redis, Scripts(redis)),
        TreeHeadSigner(Ed25519PrivateKey.generate()),
        KEYRING,
        stages=racing,
        stage_buckets=BUCKETS,
    )
    await SyntheticAppender(redis).append(tenant, [event(tenant, "log-0")])
    await stage(redis, tenant, 1, "p-0", "p-1")
    found = names(await query(flow, tenant, include_pending=True))
    sequenced_first = when == "before the log's size"
    assert found == [("log-0", False), ("p-0", not sequenced_first), ("p-1", not sequenced_first)]


class TestHostileRecords:
    async def test_records_the_sequencer_refuses_are_never_shown(
        self, redis: RedisClient, flow: AuditFlow, stages: RedisAuditStages, tenant: str
    ) -> None:
        """Planted bodies (a forged seq, spacing, a number, not UTF-8, oversized, bad times) are left out.

        What the query shows is exactly what the sequencer then appends: the same judgement.
        """
        stage_key = BucketKeys(tenant, 0).audit_stage()
        await stage(redis, tenant, 0, "good-0")
        ((_, good),) = await redis.xrange(stage_key)
        body = good[b"b"]
        now = good[b"ms"]
        planted = [
            {b"b": body[:-1] + b',"seq":5}', b"ms": now},
            {b"b": b',"seq":5' + body, b"ms": now},
            {b"b": body.replace(b'","', b'", "', 1), b"ms": now},
            {b"b": body.replace(b'"attributes":{}', b'"attributes":{"n":7}'), b"ms": now},
            {b"b": body.replace(b'"attributes":{}', b'"attributes":{"x":"\xed\xa0\x80"}'), b"ms": now},
            {
                b"b": body.replace(b'"attributes":{}', b'"attributes":{"x":"' + b"y" * 70_000 + b'"}'),
                b"ms": now,
            },
            {b"b": body.replace(b'"request_id":"good-0"', b'"request_id":"planted"'), b"ms": b"soon"},
            {b"b": b"", b"ms": now},
            {b"ms": now},
            {b"b": b'{"v":1,"seq":0,"time_ms":1' + body, b"ms": now},
        ]
        for fields in planted:
            await redis.xadd(stage_key, fields)  # type: ignore[arg-type]
        # A field repeated: the sequencer takes the last, and so does the query.
        await redis.execute_command(  # type: ignore[no-untyped-call]
            "XADD", stage_key, "*", "b", body.replace(b"good-0", b"first"), "ms", now, "b", b"x"
        )
        await redis.hset(TenantKeys(tenant).audit_stage_cursor(), "planted", "not a stream id")
        await stage(redis, tenant, 0, "good-1")
        found = await query(flow, tenant, include_pending=True)
        assert names(found) == [("good-0", True), ("good-1", True)]
        report = await StageSequencer(stages, BUCKETS).sequence(tenant)
        assert (report.appended, len(report.refused)) == (2, len(planted) + 1)

    async def test_a_pending_entry_carries_only_what_its_log_entry_will(
        self, redis: RedisClient, flow: AuditFlow, tenant: str
    ) -> None:
        """The sealed account id, whose and the span a record keeps for the outbox never leave Redis."""
        stage_key = BucketKeys(tenant, 0).audit_stage()
        await stage(redis, tenant, 0, "template")
        ((_, good),) = await redis.xrange(stage_key)
        await redis.xadd(
            stage_key,
            {
                b"b": good[b"b"],
                b"ms": good[b"ms"],
                b"ea": b"SEALED-ACCT-ID",
                b"ef": b"WHOSE-ACCT",
                b"c": b"SPAN-1",
            },
        )
        found = await query(flow, tenant, include_pending=True)
        assert len(found) == 2
        shown = repr(found).encode()
        for secret in (b"SEALED-ACCT-ID", b"WHOSE-ACCT", b"SPAN-1", b"acct-template"):
            assert secret not in shown
        assert found[1].event.account == KEYRING.pseudonym(tenant, "audit", "acct-template")


class TestStagedEntry:
    async def test_pending_sequenced_refused_unknown(
        self, redis: RedisClient, flow: AuditFlow, stages: RedisAuditStages, tenant: str
    ) -> None:
        (staged,) = await stage(redis, tenant, 3, "p-0")
        planted = (await redis.xadd(BucketKeys(tenant, 3).audit_stage(), {b"b": b"x", b"ms": b"1"})).decode()
        assert await flow.staged_entry(tenant, 3, staged) == StagedPosition(PositionState.PENDING)
        assert await flow.staged_entry(tenant, 3, planted) == StagedPosition(PositionState.PENDING)
        assert await flow.staged_entry(tenant, 2, staged) == StagedPosition(PositionState.UNKNOWN)
        await StageSequencer(stages, BUCKETS).sequence(tenant)
        assert await flow.staged_entry(tenant, 3, staged) == StagedPosition(PositionState.SEQUENCED, 0)
        assert await flow.staged_entry(tenant, 3, planted) == StagedPosition(PositionState.REFUSED)

    async def test_a_damaged_cursor_is_a_precondition_naming_the_damage(
        self, redis: RedisClient, flow: AuditFlow, tenant: str
    ) -> None:
        """A bucket's cursor planted as no stream id: FAILED_PRECONDITION, never INTERNAL.

        Its bucket's position cannot be told; the other buckets' can, and a query with its
        pending part still answers, the damaged bucket's records pending (as they stay until
        the cursor is repaired).
        """
        (damaged_id,) = await stage(redis, tenant, 3, "p-3")
        (other_id,) = await stage(redis, tenant, 1, "p-1")
        await redis.hset(TenantKeys(tenant).audit_stage_cursor(), "3", "0-0-0")
        with pytest.raises(StageCursorDamaged) as refused:
            await flow.staged_entry(tenant, 3, damaged_id)
        status = status_for(refused.value)
        assert status.code is grpc.StatusCode.FAILED_PRECONDITION
        assert refused.value.reason == "STAGE_CURSOR_DAMAGED"
        assert "bucket 3" in status.details
        assert await flow.staged_entry(tenant, 1, other_id) == StagedPosition(PositionState.PENDING)
        assert names(await query(flow, tenant, include_pending=True)) == [("p-1", True), ("p-3", True)]

    @pytest.mark.parametrize(("bucket", "stream_id", "field"), BAD_POSITIONS)
    async def test_bad_positions_are_named(
        self, flow: AuditFlow, tenant: str, bucket: int, stream_id: str, field: str
    ) -> None:
        with pytest.raises(InvalidArgument) as refused:
            await flow.staged_entry(tenant, bucket, stream_id)
        assert refused.value.field == field
        assert refused.value.reason == ("BAD_BUCKET" if field == "bucket" else "BAD_STREAM_ID")

    async def test_the_largest_stream_id_is_a_position(self, flow: AuditFlow, tenant: str) -> None:
        largest = f"{2**64 - 1}-{2**64 - 1}"
        assert await flow.staged_entry(tenant, 0, largest) == StagedPosition(PositionState.UNKNOWN)

    async def test_a_server_that_stages_nowhere_has_no_bucket(self, redis: RedisClient, tenant: str) -> None:
        unstaged = AuditFlow(
            RedisAuditLog(redis, Scripts(redis)), TreeHeadSigner(Ed25519PrivateKey.generate()), KEYRING
        )
        with pytest.raises(InvalidArgument) as refused:
            await unstaged.staged_entry(tenant, 0, "1-0")
        assert refused.value.field == "bucket"

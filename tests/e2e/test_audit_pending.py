"""Pending audit entries end to end: QueryEvents' include_pending and GetStagedEntry (issue 26).

A real server (one worker, staging in 4 buckets) on a redis-server of its own, whose integration
loop runs once an hour (``audit_integration_interval_seconds``): a record staged before a restart
is sequenced by the loop's first round at start, and the test waits for it, so that every record
staged afterwards stays pending until the test sequences it itself, as a second worker would
(the real ``StageSequencer`` against the same Redis). No production step stages yet, so the test
stages as a bucket's script would, through the prelude's own ``audit_stage``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from idverify.audit.sequencer import StageSequencer
from idverify.client import Client
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.connection import connect
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticStager
from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary
from idverify.v1 import admin_pb2, audit_pb2

from .conftest import LOOSE, error_metadata, person, rich_error, verify
from .test_console import browser, carrying, session_cookie, signed_in

pytestmark = pytest.mark.e2e
BUCKETS = 4
CONFIG = f"audit_stage_buckets = {BUCKETS}\naudit_integration_interval_seconds = 3600\n"
STATE = audit_pb2.StagedState
STARTED = "verification.started"


@dataclass
class Staging:
    """The server, its Redis, and the staged record its loop sequenced at start."""

    server: ServerProcess
    store: RedisProcess
    anchor: str

    def run(self, work: Any) -> Any:
        """Runs ``work(redis)`` against the server's Redis in a loop of its own."""

        async def with_client() -> Any:
            client = connect(self.store.url)
            try:
                return await work(client)
            finally:
                await client.aclose()

        return asyncio.run(with_client())

    def stage(self, bucket: int, *names: str, tenant: str = "default") -> list[str]:
        """Stages a verification start per name (its request id) in ``bucket``, as a bucket's script would."""
        events = [
            (
                {"principal": f"{tenant}/registrar/e2e", "request_id": name, "trace_id": ""},
                {"type": "verification.started", "outcome": "started", "method": "sms", "account": "p" * 32},
            )
            for name in names
        ]
        ids: list[str] = self.run(lambda r: SyntheticStager(r).stage(tenant, bucket, events))
        return ids

    def sequence(self) -> None:
        """What a second worker's loop does: sequences the tenant's buckets."""
        self.run(lambda r: StageSequencer(RedisAuditStages(r, Scripts(r)), BUCKETS).sequence("default"))


def position(
    client: Client, bucket: int, stream_id: str, tenant: str = ""
) -> audit_pb2.GetStagedEntryResponse:
    return client.audit.GetStagedEntry(
        audit_pb2.GetStagedEntryRequest(tenant=tenant, bucket=bucket, stream_id=stream_id)
    )


@contextmanager
def staging_server(directory: Path, *, console: bool = False) -> Iterator[Staging]:
    """A server staging in ``BUCKETS`` buckets whose loop has run its first round, with a signup.

    Stopped after the signup, it is started again with a record staged meanwhile (the anchor),
    which the loop's first round sequences: once that is seen, the next round is an hour away.
    """
    store = RedisProcess(
        directory / "redis", port=free_port(), binary=redis_server_binary(prefer_system=True)
    )
    store.start()
    server = ServerProcess(
        directory / "server",
        config=CONFIG + LOOSE,
        redis_url=store.url,
        extra_args=["--workers", "1"],
        console=console,
    )
    try:
        server.start()
        with server.client("registrar") as registrar:
            verify(server, registrar, person(), "pending-acct")
        server.token("auditor")
        server.stop()
        staging = Staging(server, store, "")
        (staging.anchor,) = staging.stage(0, "anchor")
        server.start()
        with server.client("auditor") as auditor:
            deadline = time.monotonic() + 120
            while position(auditor, 0, staging.anchor).state != STATE.STAGED_STATE_SEQUENCED:
                assert time.monotonic() < deadline, "the integration loop never ran"
                time.sleep(0.05)
        yield staging
    finally:
        server.stop()
        store.stop()


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Staging]:
    with staging_server(tmp_path_factory.mktemp("pending"), console=True) as running:
        running.server.token("admin")
        running.server.token("auditor", tenant="tb")
        yield running


@pytest.fixture(scope="module")
def auditor(staging: Staging) -> Iterator[Client]:
    with staging.server.client("auditor") as client:
        yield client


def query(client: Client, **fields: Any) -> list[audit_pb2.QueryEventsResponse]:
    return list(client.audit.QueryEvents(audit_pb2.QueryEventsRequest(**fields)))


def without_place(event: audit_pb2.AuditEvent) -> audit_pb2.AuditEvent:
    """An entry without its number and time: what it records."""
    copy = audit_pb2.AuditEvent()
    copy.CopyFrom(event)
    copy.ClearField("index")
    copy.ClearField("time")
    return copy


def test_a_pending_entry_is_shown_after_the_log_then_is_in_it_with_the_same_content(
    staging: Staging, auditor: Client
) -> None:
    # Started verifications only: the server appends its own entries meanwhile (reads' summaries).
    before = query(auditor, event_types=[STARTED])
    assert before
    assert all(not r.HasField("pending") for r in before)
    ids = {"e2e-p-1": staging.stage(1, "e2e-p-1")[0], "e2e-p-3": staging.stage(3, "e2e-p-3")[0]}
    assert len(query(auditor, event_types=[STARTED])) == len(before)
    found = query(auditor, event_types=[STARTED], include_pending=True)
    assert [r.event.index for r in found[: len(before)]] == [r.event.index for r in before]
    pending = found[len(before) :]
    assert [(r.pending.bucket, r.pending.stream_id) for r in pending] == [
        (1, ids["e2e-p-1"]),
        (3, ids["e2e-p-3"]),
    ]
    for shown in pending:
        assert shown.event.index == 0
        assert (shown.leaf, shown.leaf_hash) == (b"", b"")
        answer = position(auditor, shown.pending.bucket, shown.pending.stream_id)
        assert answer.state == STATE.STAGED_STATE_PENDING
        assert not answer.HasField("index")
    head = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head

    staging.sequence()
    grown = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head  # integrates
    logged = {r.event.request_id: r for r in query(auditor, event_types=[STARTED])}
    for shown in pending:
        answer = position(auditor, shown.pending.bucket, shown.pending.stream_id)
        assert answer.state == STATE.STAGED_STATE_SEQUENCED
        assert answer.index >= head.tree_size  # the head signed while it was pending did not cover it
        integrated = logged[shown.event.request_id]
        assert integrated.event.index == answer.index
        assert integrated.leaf_hash
        assert without_place(integrated.event) == without_place(shown.event)
        auditor.audit.GetInclusionProof(
            audit_pb2.GetInclusionProofRequest(index=answer.index, tree_size=grown.tree_size)
        )
    assert all(not r.HasField("pending") for r in query(auditor, include_pending=True))


def test_a_planted_record_is_never_shown_and_is_refused(staging: Staging, auditor: Client) -> None:
    """Someone with Redis write access plants a record that is not what the service stages."""
    (good,) = staging.stage(2, "e2e-template")
    stage_key = BucketKeys("default", 2).audit_stage()

    async def plant(redis: Any) -> str:
        ((_, fields),) = await redis.xrange(stage_key, good, good)
        body, ms = fields[b"b"], fields[b"ms"]
        # A copy with what a record keeps for the outbox alone (sealed account id, whose, span).
        secret = {b"ea": b"SEALED-SECRET", b"ef": b"WHOSE-SECRET", b"c": b"SPAN-SECRET"}
        await redis.xadd(stage_key, {b"b": body.replace(b"e2e-template", b"e2e-copy"), b"ms": ms, **secret})
        # Not the canonical bytes (a space): the sequencer refuses it.
        forged = body.replace(b"e2e-template", b"e2e-forged").replace(b'","', b'", "', 1)
        return (await redis.xadd(stage_key, {b"b": forged, b"ms": ms})).decode()  # type: ignore[no-any-return]

    planted = staging.run(plant)
    shown = query(auditor, include_pending=True)
    requests = [r.event.request_id for r in shown if r.HasField("pending")]
    assert requests == ["e2e-template", "e2e-copy"]
    wire = b"".join(r.SerializeToString() for r in shown)
    for secret in (b"SEALED-SECRET", b"WHOSE-SECRET", b"SPAN-SECRET", b"e2e-forged"):
        assert secret not in wire
    assert position(auditor, 2, planted).state == STATE.STAGED_STATE_PENDING
    staging.sequence()
    assert position(auditor, 2, planted).state == STATE.STAGED_STATE_REFUSED
    assert "e2e-forged" not in {r.event.request_id for r in query(auditor)}


def test_a_damaged_cursor_is_failed_precondition_and_the_other_buckets_go_on(
    staging: Staging, auditor: Client
) -> None:
    """Someone with Redis write access plants a bucket's cursor that is no stream id."""
    (damaged,) = staging.stage(3, "e2e-damaged")
    (beside,) = staging.stage(1, "e2e-beside")
    cursors = TenantKeys("default").audit_stage_cursor()
    kept = staging.run(lambda r: r.hget(cursors, "3"))
    staging.run(lambda r: r.hset(cursors, "3", "planted"))
    try:
        with pytest.raises(grpc.RpcError) as refused:
            position(auditor, 3, damaged)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert rich_error(refused.value) == ("STAGE_CURSOR_DAMAGED", "")
        staging.sequence()  # a second worker's pass: bucket 3 passed over, the others served
        assert position(auditor, 1, beside).state == STATE.STAGED_STATE_SEQUENCED
        shown = query(auditor, event_types=[STARTED], include_pending=True)
        assert [r.event.request_id for r in shown if r.HasField("pending")] == ["e2e-damaged"]
    finally:
        staging.run(lambda r: r.hset(cursors, "3", kept) if kept is not None else r.hdel(cursors, "3"))
    staging.sequence()
    assert position(auditor, 3, damaged).state == STATE.STAGED_STATE_SEQUENCED


@pytest.mark.parametrize(
    ("bucket", "stream_id", "reason", "field"),
    [
        (BUCKETS, "1-0", "BAD_BUCKET", "bucket"),
        (0, "", "BAD_STREAM_ID", "stream_id"),
        (0, "1-0-0", "BAD_STREAM_ID", "stream_id"),
        (0, "99999999999999999999-0", "BAD_STREAM_ID", "stream_id"),
        (0, "01-0", "BAD_STREAM_ID", "stream_id"),  # a leading zero: Redis writes none
    ],
)
def test_a_bad_position_is_invalid_argument_naming_its_field(
    auditor: Client, bucket: int, stream_id: str, reason: str, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        position(auditor, bucket, stream_id)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert rich_error(refused.value) == (reason, field)


def test_another_tenant_or_role_cannot_ask_where_an_entry_stands(staging: Staging) -> None:
    """A registrar is not an auditor; another tenant's auditor is refused this tenant's stage."""
    anchor = staging.anchor
    with staging.server.client("registrar") as registrar, pytest.raises(grpc.RpcError) as refused:
        position(registrar, 0, anchor)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with staging.server.client("auditor", tenant="tb") as theirs:
        with pytest.raises(grpc.RpcError) as refused:
            position(theirs, 0, anchor, tenant="default")
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        # Its own tenant's bucket holds nothing at that position.
        assert position(theirs, 0, anchor).state == STATE.STAGED_STATE_UNKNOWN
    with staging.server.client("admin") as admin:
        assert position(admin, 0, anchor).state == STATE.STAGED_STATE_SEQUENCED


def test_an_entry_damaged_in_the_log_is_named_not_internal(staging: Staging, auditor: Client) -> None:
    """An entry whose bytes are not UTF-8 in the log (planted, or sequenced before the check).

    QueryEvents gives the entries before it, then FAILED_PRECONDITION naming its number; GetEvent
    of it answers the same, and the others are read as before.
    """
    indices = [r.event.index for r in query(auditor)]
    damaged = indices[len(indices) // 2]
    log_key = TenantKeys("default").audit_log()
    kept = staging.run(lambda r: r.hget(log_key, str(damaged)))
    staging.run(lambda r: r.hset(log_key, str(damaged), kept.replace(b'"principal":"', b'"principal":"\xff')))
    try:
        given: list[int] = []
        with pytest.raises(grpc.RpcError) as refused:
            given.extend(r.event.index for r in auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest()))
        assert given == indices[: indices.index(damaged)]
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert rich_error(refused.value) == ("AUDIT_ENTRY_DAMAGED", "")
        with pytest.raises(grpc.RpcError) as refused:
            auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=damaged))
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        after = query(auditor, start_index=damaged + 1)
        assert [r.event.index for r in after] == indices[indices.index(damaged) + 1 :]
    finally:
        staging.run(lambda r: r.hset(log_key, str(damaged), kept))
    assert [r.event.index for r in query(auditor)] == indices


def test_more_staged_than_a_query_reads_is_told_and_the_next_query_goes_on(
    staging: Staging, auditor: Client
) -> None:
    """More staged than the 1,024 records a query reads: the caller is told, and where to go on.

    1,030 entries in bucket 0 and one in bucket 2: the stream ends FAILED_PRECONDITION
    PENDING_READ_LIMIT after the first 1,024, its metadata naming where the log part ended and
    the last position read; the next query from there shows the rest, each once.
    """
    many = staging.stage(0, *(f"e2e-many-{n}" for n in range(1030)))
    (last,) = staging.stage(2, "e2e-last")
    try:
        shown: list[audit_pb2.QueryEventsResponse] = []
        with pytest.raises(grpc.RpcError) as cut:
            shown.extend(auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest(include_pending=True)))
        assert cut.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert rich_error(cut.value) == ("PENDING_READ_LIMIT", "")
        where = error_metadata(cut.value)
        pending = [r for r in shown if r.HasField("pending")]
        assert [r.pending.stream_id for r in pending] == many[:1024]
        assert where == {
            "start_index": str(shown[len(shown) - len(pending) - 1].event.index + 1),
            "pending_bucket": "0",
            "pending_stream_id": many[1023],
        }
        after = audit_pb2.StagedPosition(bucket=0, stream_id=where["pending_stream_id"])
        rest = query(
            auditor, include_pending=True, start_index=int(where["start_index"]), pending_after=after
        )
        assert [(r.pending.bucket, r.pending.stream_id) for r in rest if r.HasField("pending")] == [
            *((0, stream_id) for stream_id in many[1024:]),
            (2, last),
        ]
        # The console's page says so too, and its next page goes on where the cut says.
        with signed_in(staging.server) as console:
            wanted = {"pending": "1", "outcome": "none-of-these"}
            page = console.get("/api/events", params=wanted).json()
            assert (page["events"], page["pending_cut"]) == ([], True)
            assert page["next_pending_after"] == {"bucket": 0, "stream_id": many[1023]}
            after = page["next_pending_after"]
            more = {
                "from_index": page["next_index"],
                "pending_bucket": after["bucket"],
                "pending_stream_id": after["stream_id"],
            }
            page = console.get("/api/events", params={**wanted, **more}).json()
            assert (page["events"], page["pending_cut"], page["next_index"]) == ([], False, None)
    finally:
        staging.sequence()


@pytest.mark.parametrize(
    ("after", "include", "reason", "field"),
    [
        (
            audit_pb2.StagedPosition(bucket=BUCKETS, stream_id="1-0"),
            True,
            "BAD_BUCKET",
            "pending_after.bucket",
        ),
        (
            audit_pb2.StagedPosition(bucket=0, stream_id="1-"),
            True,
            "BAD_STREAM_ID",
            "pending_after.stream_id",
        ),
        (audit_pb2.StagedPosition(bucket=0), True, "BAD_STREAM_ID", "pending_after.stream_id"),
        (
            audit_pb2.StagedPosition(bucket=0, stream_id="1-0"),
            False,
            "PENDING_AFTER_WITHOUT_PENDING",
            "pending_after",
        ),
    ],
)
def test_a_bad_place_to_go_on_from_is_invalid_argument_naming_its_field(
    auditor: Client, after: audit_pb2.StagedPosition, include: bool, reason: str, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        query(auditor, include_pending=include, pending_after=after)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert rich_error(refused.value) == (reason, field)


def test_the_consoles_pages_walk_the_log_then_the_pending_entries_each_once(staging: Staging) -> None:
    """Pages of two through the console's list: the log's entries, then the pending ones, once each."""
    # From the log's last two starts (the signup's and the anchor's at least): earlier tests may
    # have left a thousand.
    start = query_of(staging, event_types=[STARTED])[-2].event.index
    ids = staging.stage(1, *(f"e2e-console-{n}" for n in range(3))) + staging.stage(3, "e2e-console-3")
    try:
        with signed_in(staging.server) as console:
            wanted = {"pending": "1", "type": STARTED, "limit": "2"}
            shown: list[dict[str, Any]] = []
            more: dict[str, Any] = {"from_index": start}
            for _ in range(50):
                page = console.get("/api/events", params={**wanted, **more}).json()
                shown += page["events"]
                if page["next_index"] is None:
                    break
                after = page["next_pending_after"]
                more = {"from_index": page["next_index"]}
                if after:
                    more |= {"pending_bucket": after["bucket"], "pending_stream_id": after["stream_id"]}
            logged = [e["index"] for e in shown if e["pending"] is None]
            assert logged == [
                r.event.index for r in query_of(staging, event_types=[STARTED], start_index=start)
            ]
            assert len(logged) == 2
            assert [(e["index"], e["pending"]) for e in shown if e["pending"]] == [
                (None, {"bucket": 1, "stream_id": ids[0]}),
                (None, {"bucket": 1, "stream_id": ids[1]}),
                (None, {"bucket": 1, "stream_id": ids[2]}),
                (None, {"bucket": 3, "stream_id": ids[3]}),
            ]
            where = console.get("/api/staged", params={"bucket": 3, "stream_id": ids[3]}).json()
            assert (where["state"], where["index"]) == ("PENDING", None)
            staging.sequence()
            where = console.get("/api/staged", params={"bucket": 3, "stream_id": ids[3]}).json()
            assert where["state"] == "SEQUENCED"
            numbered = console.get("/api/events", params={**wanted, "from_index": start, "limit": 200}).json()
            assert where["index"] in {e["index"] for e in numbered["events"]}
            assert [e for e in numbered["events"] if e["pending"]] == []
    finally:
        staging.sequence()


@pytest.mark.parametrize(
    ("path", "params", "reason", "field"),
    [
        (
            "/api/events",
            {"pending": "1", "pending_bucket": str(BUCKETS), "pending_stream_id": "1-0"},
            "BAD_BUCKET",
            "pending_after.bucket",
        ),
        (
            "/api/events",
            {"pending": "1", "pending_bucket": "0", "pending_stream_id": "01-0"},
            "BAD_STREAM_ID",
            "pending_after.stream_id",
        ),
        ("/api/events", {"pending": "1", "pending_bucket": "0"}, "BAD_STREAM_ID", "pending_after.stream_id"),
        (
            "/api/events",
            {"pending": "1", "pending_bucket": "x", "pending_stream_id": "1-0"},
            "BAD_PARAMETER",
            "pending_bucket",
        ),
        (
            "/api/events",
            {"pending_bucket": "0", "pending_stream_id": "1-0"},
            "PENDING_AFTER_WITHOUT_PENDING",
            "pending_after",
        ),
        ("/api/staged", {"bucket": str(BUCKETS), "stream_id": "1-0"}, "BAD_BUCKET", "bucket"),
        ("/api/staged", {"bucket": "0", "stream_id": "1-0-0"}, "BAD_STREAM_ID", "stream_id"),
        ("/api/staged", {"stream_id": "1-0"}, "BAD_PARAMETER", "bucket"),
    ],
)
def test_the_console_names_a_bad_position(
    staging: Staging, path: str, params: dict[str, str], reason: str, field: str
) -> None:
    """A 400 naming the field, as QueryEvents' INVALID_ARGUMENT does, never a 500."""
    with signed_in(staging.server) as console:
        answer = console.get(path, params=params)
    assert answer.status_code == 400, answer.text
    assert (answer.json()["reason"], answer.json()["field"]) == (reason, field)


def query_of(staging: Staging, **fields: Any) -> list[audit_pb2.QueryEventsResponse]:
    with staging.server.client("auditor") as auditor:
        return query(auditor, **fields)


def test_asking_the_console_where_an_entry_stands_is_a_recorded_read(staging: Staging) -> None:
    """Console.GetStagedEntry is accounted to the signed-in client, as every read of the log is."""
    (staged,) = staging.stage(2, "e2e-recorded")
    with staging.server.client("admin") as admin:
        token = admin.admin.CreateClient(admin_pb2.CreateClientRequest(role="auditor")).token
    client_id = token.split(".")[1]
    with browser(staging.server) as anonymous:
        session = session_cookie(anonymous.post("/signin", data={"token": token}))
    with carrying(staging.server, session) as console:
        assert (
            console.get("/api/staged", params={"bucket": 2, "stream_id": staged}).json()["state"] == "PENDING"
        )
    staging.sequence()

    async def calls(redis: Any) -> int:
        keys = TenantKeys("default")
        counted = 0
        for member in (m.decode() for m in await redis.zrange(keys.reads_open(), 0, -1)):
            if member.split(":", 1)[1] == client_id:
                counted += int(
                    await redis.hget(keys.reads_minute_counts(member), "calls:Console.GetStagedEntry") or 0
                )
        return counted

    assert staging.run(calls) == 1

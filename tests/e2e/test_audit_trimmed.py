"""A trimmed audit log end to end: its older entries are in the bundles alone, and every reader finds them.

A server with ``audit_tiles_dir`` set, a verified account whose entries come first, then enough
entries (appended through the prelude's own ``audit()``) that the server trims the account's
entries from Redis. Then what reads entries over gRPC and the command line: events and proofs,
``idverify audit export/verify``, the person's data export and its offline check, an incident
report, a backup and its verification, and a restart without the tiles.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from idverify.audit import merkle
from idverify.audit.checkpoint import load_public_key, verify_signed_head
from idverify.store.connection import connect
from idverify.store.keys import TenantKeys
from idverify.store.synthetic_audit import SyntheticAppender
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, admin_pb2, audit_pb2, verification_pb2

from .conftest import embedded_redis, person, verify
from .test_account_export import as_json, independently_verified, verify_bundle_cli
from .test_audit import signed_head
from .test_backup import create_configured_backup, idverify, manifest_log

pytestmark = pytest.mark.e2e

ACCOUNT = "trimmed-acct-1"
FILLER = 6000  # past the 4,096 entries Redis keeps behind the bundles' size


@dataclass(frozen=True)
class Trimmed:
    """The server, its tiles, and how far its log was trimmed."""

    server: ServerProcess
    tiles: Path
    trimmed: int


def trim_point(server: ServerProcess, tenant: str = "default") -> int:
    return int(embedded_redis(server).hget(TenantKeys(tenant).audit_head(), "trimmed") or 0)


def trimmed_at_least(server: ServerProcess, point: int, tenant: str = "default") -> int:
    """The tenant's trim point once it reaches ``point`` (the integrator runs twice a second, then trims)."""
    deadline = time.monotonic() + 30
    while trim_point(server, tenant) < point and time.monotonic() < deadline:
        time.sleep(0.2)
    assert trim_point(server, tenant) >= point
    return trim_point(server, tenant)


async def fill(server: ServerProcess, count: int, tenant: str = "default") -> None:
    """Appends ``count`` entries to the tenant's log as a state change would, a few hundred a call."""
    redis = connect(f"unix://{server.data_dir / 'redis' / 'redis.sock'}")
    try:
        appender = SyntheticAppender(redis)
        request = {"principal": "default/registrar/filler", "request_id": "", "trace_id": ""}
        for first in range(0, count, 500):
            events = [
                (request, {"type": "client.created", "outcome": "created", "n": f"{n}"})
                for n in range(first, min(count, first + 500))
            ]
            await appender.append(tenant, events)
    finally:
        await redis.aclose(close_connection_pool=True)


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trimmed]:
    folder = tmp_path_factory.mktemp("trimmed")
    tiles = folder / "tiles"
    with ServerProcess(folder / "live", config=f'audit_tiles_dir = "{tiles}"\n') as server:
        with server.client("registrar") as registrar:
            verified = verify(server, registrar, person(), ACCOUNT)
            assert verified.status == verification_pb2.VERIFICATION_STATUS_VERIFIED
        asyncio.run(fill(server, FILLER))
        yield Trimmed(server, tiles, trimmed_at_least(server, FILLER - 4096))


def test_redis_keeps_only_the_recent_entries(trimmed: Trimmed) -> None:
    """A thief with a Redis dump finds the kept window, not the log."""
    store = embedded_redis(trimmed.server)
    size = int(store.hget(TenantKeys("default").audit_head(), "size") or 0)
    held = store.hlen(TenantKeys("default").audit_log())
    assert held == size - trimmed.trimmed
    assert store.hget(TenantKeys("default").audit_log(), "0") is None


def test_trimmed_entries_are_served_and_proven(trimmed: Trimmed) -> None:
    """GetEvent answers entries from the bundles whose inclusion proofs verify against a signed head."""
    with trimmed.server.client("auditor") as auditor:
        answer = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest())
        head = signed_head(answer.head)
        verify_signed_head(head, load_public_key(answer.public_key.encode()))
        size = head.head.size
        for index in (0, 1, 5, 255, 256, 1000, trimmed.trimmed - 1, trimmed.trimmed, size - 1):
            event = auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=index))
            proof = auditor.audit.GetInclusionProof(
                audit_pb2.GetInclusionProofRequest(index=index, tree_size=size)
            )
            assert proof.leaf_hash == merkle.leaf_hash(event.leaf)
            merkle.verify_inclusion(proof.leaf_hash, index, size, list(proof.hashes), head.head.root_hash)
        # By account (a posting in Redis, entries in the bundles) and by time (a seek below the point).
        about = list(auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest(account_id=ACCOUNT)))
        assert about
        assert all(found.event.index < trimmed.trimmed for found in about)
        assert all(found.leaf_hash == merkle.leaf_hash(found.leaf) for found in about)
        first = about[0].event
        timed = list(
            auditor.audit.QueryEvents(
                audit_pb2.QueryEventsRequest(start_time=first.time, end_time=about[-1].event.time, limit=5)
            )
        )
        assert timed
        assert timed[0].event.index <= first.index
        assert all(found.event.time.ToMilliseconds() >= first.time.ToMilliseconds() for found in timed)


def test_an_export_of_a_trimmed_log_verifies(trimmed: Trimmed, tmp_path: Path) -> None:
    """``idverify audit export`` reads every entry, from bundles and Redis; ``audit verify`` checks it."""
    server = trimmed.server
    export = tmp_path / "export.jsonl"
    exported = idverify(
        "audit", "--server", server.target, "--token", server.token("auditor"), "export", "--out", str(export)
    )
    assert exported.returncode == 0, exported.stderr
    assert len(export.read_text().splitlines()) > FILLER
    key = tmp_path / "public.pem"
    with server.client("auditor") as auditor:
        key.write_text(auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).public_key)
    audited = idverify("audit", "verify", str(export), "--public-key", str(key))
    assert audited.returncode == 0, audited.stdout + audited.stderr


def test_a_persons_data_export_over_trimmed_entries_verifies(trimmed: Trimmed, tmp_path: Path) -> None:
    """The account's entries, all trimmed, come back in its export; the bundle verifies offline."""
    server = trimmed.server
    with server.client("platform") as platform, server.client("auditor") as auditor:
        answer = platform.account.ExportAccountData(account_pb2.ExportAccountDataRequest(account_id=ACCOUNT))
        pem = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).public_key
    bundle = as_json(answer)
    entries = bundle.get("auditEntries", [])
    assert isinstance(entries, list)
    assert any(int(entry.get("index", "0")) < trimmed.trimmed for entry in entries)
    assert independently_verified(bundle, pem.encode())
    path, key = tmp_path / "bundle.json", tmp_path / "public.pem"
    path.write_text(json.dumps(bundle))
    key.write_text(pem)
    checked = verify_bundle_cli(path, key)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_incident_report_over_a_trimmed_log_names_its_signed_head(trimmed: Trimmed) -> None:
    """The report's head covers the trimmed entries, and its own entry is found where it was appended."""
    with trimmed.server.client("admin") as admin, trimmed.server.client("auditor") as auditor:
        request = admin_pb2.CreateIncidentReportRequest(store_breach=True)
        request.since.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
        request.until.FromDatetime(datetime.now(UTC))
        request.detected_at.FromDatetime(datetime.now(UTC))
        answer = admin.admin.CreateIncidentReport(request)
        report = json.loads(answer.signed_report)["report"]
        assert report["audit_log"]["tree_size"] > FILLER
        reported = list(
            auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest(event_types=["incident.reported"]))
        )
        assert len(reported) == 1


def test_a_backup_of_a_trimmed_log_verifies(trimmed: Trimmed, tmp_path: Path) -> None:
    """``backup create`` replays the trimmed entries from its copy of the bundles; ``verify`` again."""
    server = trimmed.server
    backup = tmp_path / "backup"
    create_configured_backup(server, backup)
    assert int(manifest_log(backup)["size"]) > FILLER  # type: ignore[call-overload]
    verified = idverify("backup", "verify", str(backup))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_server_without_the_tiles_refuses_the_trimmed_log(trimmed: Trimmed) -> None:
    """Restarted without audit_tiles_dir, the server stops in one line naming the tenant."""
    server = trimmed.server
    server.stop()
    try:
        bare = ServerProcess(server.directory, port=server.port)
        with pytest.raises(RuntimeError):
            bare.start()
        assert (
            "audit logs of default keep their older entries in audit tiles alone" in bare.log_path.read_text()
        )
    finally:
        server.start()

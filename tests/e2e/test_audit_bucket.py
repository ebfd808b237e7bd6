"""The audit log's tiles in an S3-compatible bucket (``audit_tiles_url``), end to end.

A real server whose tiles go to moto's S3 server on a loopback port (``tests/s3_server.py``),
credentials in the standard AWS variables; a verified account whose entries come first, then
enough entries that the server trims them from Redis. Proofs and queries are then served from
the bucket's objects, a backup copies them and verifies, an object altered in the bucket is
refused naming it, and a bucket out of reach stops start-up in one line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from idverify.audit import merkle
from idverify.audit.checkpoint import load_public_key, verify_signed_head
from idverify.store.embedded import free_port
from idverify.store.keys import TenantKeys
from idverify.testing import ServerProcess
from idverify.v1 import audit_pb2, verification_pb2
from tests.s3_server import CREDENTIALS, S3Server, s3_server

from .conftest import embedded_redis, person, rich_error, verify
from .test_audit import signed_head
from .test_audit_trimmed import fill, trim_point
from .test_backup import create_configured_backup, idverify, manifest_log

pytestmark = pytest.mark.e2e

ACCOUNT = "bucket-acct-1"
FILLER = 4700  # past the 4,096 entries Redis keeps behind the bundles' size
BUCKET = "idverify-audit"
PREFIX = "tiles/prod"


@dataclass(frozen=True)
class InBucket:
    """The server, the S3 server its tiles are in, and how far its log was trimmed."""

    server: ServerProcess
    s3: S3Server
    trimmed: int


def bucket_config(endpoint: str, bucket: str = BUCKET) -> str:
    return f'audit_tiles_url = "s3://{bucket}/{PREFIX}"\naudit_tiles_s3_endpoint = "{endpoint}"\n'


@pytest.fixture(scope="module")
def in_bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InBucket]:
    with pytest.MonkeyPatch.context() as environment, s3_server() as s3:
        for name, value in CREDENTIALS.items():
            environment.setenv(name, value)  # the server and the idverify commands find them there
        s3.make_bucket(BUCKET)
        folder = tmp_path_factory.mktemp("bucket")
        with ServerProcess(folder / "live", config=bucket_config(s3.endpoint)) as server:
            with server.client("registrar") as registrar:
                verified = verify(server, registrar, person(), ACCOUNT)
                assert verified.status == verification_pb2.VERIFICATION_STATUS_VERIFIED
            asyncio.run(fill(server, FILLER))
            yield InBucket(server, s3, trimmed_at_least(server, s3, FILLER - 4096))


def trimmed_at_least(server: ServerProcess, s3: S3Server, point: int) -> int:
    """The trim point once it reaches ``point``: rounds wait for the bucket too (slower when loaded)."""
    deadline = time.monotonic() + 90
    while trim_point(server, "default") < point and time.monotonic() < deadline:
        time.sleep(0.2)
    # Should it not get there, what the bucket holds and what the server said about its tiles.
    said = [line for line in server.log_path.read_text().splitlines() if "idverify.audit" in line]
    held = s3.get(BUCKET, f"{PREFIX}/default/tiles-size")
    assert trim_point(server, "default") >= point, (held, said[-10:])
    return trim_point(server, "default")


def test_the_tiles_are_objects_and_redis_keeps_only_the_recent_entries(in_bucket: InBucket) -> None:
    store = embedded_redis(in_bucket.server)
    size = int(store.hget(TenantKeys("default").audit_head(), "size") or 0)
    assert store.hget(TenantKeys("default").audit_log(), "0") is None
    objects = in_bucket.s3.objects(BUCKET, f"{PREFIX}/default/")
    assert int(objects[f"{PREFIX}/default/tiles-size"]) >= in_bucket.trimmed
    assert {f"{PREFIX}/default/tile/entries/000", f"{PREFIX}/default/tile/0/000"} <= set(objects)
    assert int(objects[f"{PREFIX}/default/tiles-size"]) <= size
    assert not [key for key in objects if "/.write-once-probe-" in key]  # start-up's probe was removed


def test_trimmed_entries_are_served_from_the_bucket_and_proven(in_bucket: InBucket) -> None:
    with in_bucket.server.client("auditor") as auditor:
        answer = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest())
        head = signed_head(answer.head)
        verify_signed_head(head, load_public_key(answer.public_key.encode()))
        size = head.head.size
        for index in (0, 5, 255, 256, in_bucket.trimmed - 1, size - 1):
            event = auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=index))
            proof = auditor.audit.GetInclusionProof(
                audit_pb2.GetInclusionProofRequest(index=index, tree_size=size)
            )
            assert proof.leaf_hash == merkle.leaf_hash(event.leaf)
            merkle.verify_inclusion(proof.leaf_hash, index, size, list(proof.hashes), head.head.root_hash)
        # From a size within the trimmed entries, its root computed here from their leaves.
        leaves = [
            merkle.leaf_hash(auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=index)).leaf)
            for index in range(300)
        ]
        consistency = auditor.audit.GetConsistencyProof(
            audit_pb2.GetConsistencyProofRequest(first=300, second=size)
        )
        merkle.verify_consistency(
            300, size, list(consistency.hashes), merkle.root(leaves), head.head.root_hash
        )
        about = list(auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest(account_id=ACCOUNT)))
        assert about
        assert all(found.event.index < in_bucket.trimmed for found in about)
        assert all(found.leaf_hash == merkle.leaf_hash(found.leaf) for found in about)


def test_a_backup_copies_the_objects_and_verifies(in_bucket: InBucket, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    create_configured_backup(in_bucket.server, backup)
    assert int(manifest_log(backup)["size"]) > FILLER  # type: ignore[call-overload]
    assert (backup / "audit-tiles" / "default" / "tile" / "entries" / "000").is_file()
    verified = idverify("backup", "verify", str(backup))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_set_aside_tiles_reads_the_bucket(in_bucket: InBucket) -> None:
    server = in_bucket.server
    done = idverify(
        "audit",
        "set-aside-tiles",
        "--tenant",
        "default",
        "--config",
        str(server.directory / "idverify.toml"),
        "--data-dir",
        str(server.data_dir),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hold nothing beyond its" in done.stdout  # the tiles agree with the log: nothing moved


def test_an_entry_altered_in_the_bucket_is_refused_naming_its_bundle(in_bucket: InBucket) -> None:
    key = f"{PREFIX}/default/tile/entries/000"
    original = in_bucket.s3.get(BUCKET, key)
    assert original is not None
    in_bucket.s3.put(BUCKET, key, original.replace(b"created", b"cheated", 1))
    try:
        with in_bucket.server.client("auditor") as auditor:
            auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=200))  # another entry of it still reads
            with pytest.raises(grpc.RpcError) as refused:
                auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=0))
    finally:
        in_bucket.s3.put(BUCKET, key, original)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_error(refused.value)[0] == "AUDIT_ENTRIES_UNREADABLE"
    assert f"s3://{BUCKET}/{PREFIX}/default" in (refused.value.details() or "")


def test_a_bucket_out_of_reach_or_missing_stops_start_up_in_one_line(
    in_bucket: InBucket, tmp_path: Path
) -> None:
    for name, config in (
        ("away", bucket_config(f"http://127.0.0.1:{free_port()}")),
        ("missing", bucket_config(in_bucket.s3.endpoint, bucket="no-such-bucket")),
    ):
        server = ServerProcess(tmp_path / name, config=config)
        with pytest.raises(RuntimeError, match="server exited with 2"):
            server.start()
        refusal = [line for line in server.log_path.read_text().splitlines() if "audit_tiles_url" in line]
        assert len(refusal) == 1, server.log_path.read_text()
        assert ("EndpointConnectionError" if name == "away" else "NoSuchBucket (HTTP 404)") in refusal[0]
        assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in server.log_path.read_text()

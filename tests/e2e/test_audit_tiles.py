"""The audit log written to tiles too (``audit_tiles_dir``): proofs over gRPC verify, files are private.

A real server with its tiles in a directory of the test's, signups through the API, then an
auditor's inclusion and consistency proofs, checked against signed heads as any auditor would.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from idverify.audit import merkle
from idverify.audit.checkpoint import load_public_key, verify_signed_head
from idverify.audit.tile_mirror import SIZE_FILE
from idverify.client import Client
from idverify.testing import ServerProcess
from idverify.v1 import audit_pb2

from .conftest import person, rich_error, verify
from .test_audit import signed_head

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiles") / "audit"  # made by the server, 0700


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiles: Path) -> Iterator[ServerProcess]:
    config = f'audit_tiles_dir = "{tiles}"\n'
    with ServerProcess(tmp_path_factory.mktemp("audit-tiles"), config=config) as running:
        with running.client("registrar") as registrar:
            for n in range(3):
                verify(running, registrar, person(), f"tiles-acct-{n}")
        yield running


@pytest.fixture(scope="module")
def auditor(server: ServerProcess) -> Iterator[Client]:
    with server.client("auditor") as client:
        yield client


def tiled_size(tiles: Path, at_least: int, tenant: str = "default") -> int:
    """The size the tenant's tiles hold once it reaches ``at_least`` (the integrator runs twice a second)."""
    size_file = tiles / tenant / SIZE_FILE
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if size_file.exists() and int(size_file.read_text()) >= at_least:
            return int(size_file.read_text())
        time.sleep(0.1)
    pytest.fail(f"the tiles did not reach {at_least} entries")


def test_every_entry_is_provably_in_a_head_read_from_tiles(tiles: Path, auditor: Client) -> None:
    answer = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest())
    head = signed_head(answer.head)
    verify_signed_head(head, load_public_key(answer.public_key.encode()))
    size = head.head.size
    assert tiled_size(tiles, size) >= size
    for index in range(size):
        event = auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=index))
        proof = auditor.audit.GetInclusionProof(
            audit_pb2.GetInclusionProofRequest(index=index, tree_size=size)
        )
        assert proof.leaf_hash == merkle.leaf_hash(event.leaf)
        merkle.verify_inclusion(proof.leaf_hash, index, size, list(proof.hashes), head.head.root_hash)


def test_a_later_head_is_consistent_with_every_earlier_size(
    server: ServerProcess, tiles: Path, auditor: Client
) -> None:
    old = signed_head(auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head)
    with server.client("registrar") as registrar:
        verify(server, registrar, person(), "tiles-later")
    new = signed_head(auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head)
    assert new.head.size > old.head.size
    tiled_size(tiles, new.head.size)
    proof = auditor.audit.GetConsistencyProof(
        audit_pb2.GetConsistencyProofRequest(first=old.head.size, second=new.head.size)
    )
    merkle.verify_consistency(
        old.head.size, new.head.size, list(proof.hashes), old.head.root_hash, new.head.root_hash
    )
    # Every earlier size, its root computed here from the entries themselves.
    leaves = [
        merkle.leaf_hash(auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=index)).leaf)
        for index in range(new.head.size)
    ]
    for first in range(1, new.head.size):
        proof = auditor.audit.GetConsistencyProof(
            audit_pb2.GetConsistencyProofRequest(first=first, second=new.head.size)
        )
        merkle.verify_consistency(
            first, new.head.size, list(proof.hashes), merkle.root(leaves[:first]), new.head.root_hash
        )


@pytest.mark.usefixtures("server")
def test_the_tiles_are_files_for_the_service_alone(tiles: Path) -> None:
    size = tiled_size(tiles, 1)
    log = tiles / "default"
    names = {str(p.relative_to(log)) for p in log.rglob("*") if p.is_file()}
    assert SIZE_FILE in names
    assert any(name.startswith("tile/0/") for name in names)
    assert any(name.startswith("tile/entries/") for name in names)
    assert size > 0
    for path in (tiles, *tiles.rglob("*")):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path


def test_a_server_without_the_setting_refuses_a_log_kept_in_tiles(tmp_path: Path) -> None:
    """Started without audit_tiles_dir on a tiles-kept log: a precise refusal, never a wrong proof.

    With no head published yet the server starts and refuses each read of the tree
    (FAILED_PRECONDITION, AUDIT_TILES_REQUIRED); once a head was published, its start-up finds the
    log and stops in one line.
    """
    tiles = tmp_path / "tiles"
    with ServerProcess(tmp_path / "server", config=f'audit_tiles_dir = "{tiles}"\n') as server:
        with server.client("registrar") as registrar:
            verify(server, registrar, person(), "kept-in-tiles")
        tiled_size(tiles, 1)  # the background integration wrote a round: the tree is kept in tiles
    plain = ServerProcess(tmp_path / "server")
    with plain, plain.client("auditor") as auditor:
        for call, request in (
            (auditor.audit.GetTreeHead, audit_pb2.GetTreeHeadRequest()),
            (auditor.audit.GetInclusionProof, audit_pb2.GetInclusionProofRequest(index=0, tree_size=1)),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call(request)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "audit_tiles_dir" in (refused.value.details() or "")
            assert rich_error(refused.value)[0] == "AUDIT_TILES_REQUIRED"
        with pytest.raises(grpc.RpcError) as refused:
            list(auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest()))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    again = ServerProcess(tmp_path / "server", config=f'audit_tiles_dir = "{tiles}"\n')
    with again, again.client("auditor") as auditor:
        head = signed_head(auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head)
        assert head.head.size >= 1  # published, and recorded in the heads file
    with pytest.raises(RuntimeError, match="server exited with 2") as stopped:
        ServerProcess(tmp_path / "server").start()
    assert "audit_tiles_dir" in str(stopped.value)

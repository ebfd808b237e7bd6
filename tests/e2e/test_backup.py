"""Backups: a restore drill under load, a restored log behind a published head, tampered backups.

Real servers and real redis-servers throughout; the commands run as ``python -m idverify``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import redis

from idverify.audit import merkle
from idverify.audit.merkle import verify_consistency
from idverify.audit.tile_mirror import tree_files
from idverify.client import Client
from idverify.privacy.keyring import Keyring
from idverify.testing import RedisProcess, ServerProcess, free_port
from idverify.v1 import audit_pb2, verification_pb2

from .conftest import error_metadata, person, rich_error, verify
from .test_audit_tiles import tiled_size
from .test_console import signed_in

LOAD_THREADS = 3


def idverify(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``idverify`` command, without the test run's IDVERIFY_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "idverify", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


def signups(server: ServerProcess, client: Client, count: int, prefix: str) -> list[str]:
    """``count`` verified signups; their verification ids."""
    return [verify(server, client, person(), f"{prefix}-{n}").verification_id for n in range(count)]


def head(server: ServerProcess) -> audit_pb2.SignedTreeHead:
    with server.client("auditor") as auditor:
        return auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head


def console_head(server: ServerProcess) -> httpx.Response:
    """The head as the auditor's console's head page asks for it."""
    with signed_in(server) as console:
        return console.get("/api/head")


def manifest_log(backup: Path, tenant: str = "default") -> dict[str, object]:
    logs: dict[str, dict[str, object]] = json.loads((backup / "manifest.json").read_text())["audit_logs"]
    return logs[tenant]


def test_restore_drill_under_load(tmp_path: Path) -> None:
    """Backed up while signups run, restored into a new data directory: all answered before it is there."""
    backup = tmp_path / "backup"
    answered: list[str] = []
    stop = threading.Event()
    failures: list[BaseException] = []
    with ServerProcess(tmp_path / "live") as server:

        def load(worker: int) -> None:
            try:
                with server.client("registrar") as client:
                    n = 0
                    while not stop.is_set():
                        answered.append(
                            verify(server, client, person(), f"load-{worker}-{n}").verification_id
                        )
                        n += 1
            except BaseException as error:  # noqa: BLE001 - reported by the test below
                failures.append(error)

        threads = [threading.Thread(target=load, args=(n,)) for n in range(LOAD_THREADS)]
        for thread in threads:
            thread.start()
        with server.client("registrar") as client:
            signups(server, client, 5, "before")
        before_backup = list(answered)
        created = idverify("backup", "create", str(backup), "--data-dir", str(server.data_dir))
        during = len(answered)
        with server.client("registrar") as client:
            signups(server, client, 3, "after")
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not failures, failures
    assert created.returncode == 0, created.stderr
    assert len(answered) > during, "signups went on while the backup was made"
    assert (backup / "manifest.json").exists()

    checked = idverify("backup", "verify", str(backup))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("OK: "), checked.stdout

    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    restored = idverify("backup", "restore", str(backup), "--data-dir", str(restored_dir / "data"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    with ServerProcess(restored_dir) as server, server.client("registrar") as client:
        for verification_id in before_backup:
            found = client.verification.GetVerification(
                verification_pb2.GetVerificationRequest(verification_id=verification_id)
            ).verification
            assert found.status == verification_pb2.VERIFICATION_STATUS_VERIFIED, verification_id
        # The restored server signs heads of the restored log (nothing was published after it).
        restored_head = head(server)
        assert restored_head.tree_size >= int(manifest_log(backup)["size"])  # type: ignore[call-overload]
        export = tmp_path / "export.jsonl"
        token = server.token("auditor")
        exported = idverify(
            "audit", "--server", server.target, "--token", token, "export", "--out", str(export)
        )
        assert exported.returncode == 0, exported.stderr
    key = tmp_path / "public.pem"
    key.write_text(
        idverify("audit", "public-key", "--signing-key-file", str(backup / "audit-signing-key.pem")).stdout
    )
    audited = idverify("audit", "verify", str(export), "--public-key", str(key))
    assert audited.returncode == 0, audited.stdout


def test_a_restore_behind_a_published_head_is_refused_until_acknowledged(tmp_path: Path) -> None:
    """Heads signed after the backup: the restored server names the entries lost, signs nothing until told."""
    backup = tmp_path / "backup"
    with ServerProcess(tmp_path / "live") as server:
        with server.client("registrar") as client:
            signups(server, client, 2, "early")
        head(server)
        assert idverify("backup", "create", str(backup), "--data-dir", str(server.data_dir)).returncode == 0
        with server.client("registrar") as client:
            signups(server, client, 2, "late")
        published = head(server)
        old_heads = server.data_dir / "audit-heads.json"
    backed_up = int(manifest_log(backup)["size"])  # type: ignore[call-overload]
    assert published.tree_size > backed_up
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    restored = idverify(
        "backup", "restore", str(backup), "--data-dir", str(restored_dir / "data"), "--heads", str(old_heads)
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    lost = f"{backed_up}-{published.tree_size - 1}"
    with ServerProcess(restored_dir, console=True) as server:
        with server.client("registrar") as client:
            # Reads and verifications go on; their entries go into the restored log.
            signups(server, client, 1, "meanwhile")
        with pytest.raises(grpc.RpcError) as refused:
            head(server)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert rich_error(refused.value)[0] == "AUDIT_LOG_ROLLED_BACK"
        assert error_metadata(refused.value)["lost_entries"] == lost
        assert f"entries {lost}" in (refused.value.details() or "")
        assert f"entries {lost}" in server.log_text()
        # The auditor's console says the same where its head page shows the head.
        answer = console_head(server)
        assert answer.status_code == 409, answer.text
        assert answer.json()["reason"] == "AUDIT_LOG_ROLLED_BACK"
        assert f"entries {lost}" in answer.json()["message"]

        acknowledged = idverify("audit", "--data-dir", str(server.data_dir), "acknowledge-rollback")
        assert acknowledged.returncode == 0, acknowledged.stdout + acknowledged.stderr
        assert f"entries {lost}" in acknowledged.stdout
        again = idverify("audit", "--data-dir", str(server.data_dir), "acknowledge-rollback")
        assert "nothing to acknowledge" in again.stdout

        signed = head(server)
        assert signed.tree_size > backed_up
        # Signed again (the sign-in itself may be a new entry meanwhile).
        assert console_head(server).json()["size"] >= signed.tree_size
        with server.client("auditor") as auditor:
            proof = auditor.audit.GetConsistencyProof(
                audit_pb2.GetConsistencyProofRequest(first=backed_up, second=signed.tree_size)
            ).hashes
            root = bytes.fromhex(str(manifest_log(backup)["root"]))
            verify_consistency(backed_up, signed.tree_size, list(proof), root, signed.root_hash)
            entries = [
                item.event
                for item in auditor.audit.QueryEvents(
                    audit_pb2.QueryEventsRequest(event_types=["audit.rollback_acknowledged"])
                )
            ]
        assert len(entries) == 1
        assert entries[0].attributes["lost_entries"] == lost
        assert entries[0].attributes["published_size"] == str(published.tree_size)
        assert entries[0].principal.startswith("audit-acknowledge-rollback/")
        assert "was acknowledged" in server.log_text()


def test_a_witness_refuses_a_restore_that_forgot_the_newest_heads(tmp_path: Path) -> None:
    """A restore without ``--heads`` (the old data directory lost with its machine): the witness knows."""
    witness = tmp_path / "witness"
    witness.mkdir()
    config = f'audit_witness_dirs = ["{witness}"]\n'
    backup = tmp_path / "backup"
    with ServerProcess(tmp_path / "live", config=config) as server:
        with server.client("registrar") as client:
            signups(server, client, 2, "early")
        head(server)
        assert idverify("backup", "create", str(backup), "--data-dir", str(server.data_dir)).returncode == 0
        with server.client("registrar") as client:
            signups(server, client, 2, "late")
        published = head(server)
    assert (witness / "audit-heads.json").exists()
    backed_up = int(manifest_log(backup)["size"])  # type: ignore[call-overload]
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    restored = idverify("backup", "restore", str(backup), "--data-dir", str(restored_dir / "data"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    lost = f"{backed_up}-{published.tree_size - 1}"
    with ServerProcess(restored_dir, config=config) as server:
        with pytest.raises(grpc.RpcError) as refused:
            head(server)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_metadata(refused.value)["lost_entries"] == lost
        acknowledged = idverify(
            "audit",
            "--data-dir",
            str(server.data_dir),
            "acknowledge-rollback",
            "--config",
            str(server.directory / "idverify.toml"),
        )
        assert acknowledged.returncode == 0, acknowledged.stdout + acknowledged.stderr
        assert f"entries {lost}" in acknowledged.stdout
        assert head(server).tree_size > backed_up
    # The same restore without the witness signs on over the loss: the witness alone refused it.
    unguarded_dir = tmp_path / "unguarded"
    unguarded_dir.mkdir()
    restored = idverify("backup", "restore", str(backup), "--data-dir", str(unguarded_dir / "data"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    with ServerProcess(unguarded_dir) as server:
        forked = head(server)
    assert backed_up <= forked.tree_size < published.tree_size
    assert idverify("backup", "verify", str(backup)).returncode == 0


def test_a_missing_witness_stops_the_server_at_start(tmp_path: Path) -> None:
    """A witness mount that failed is not silently replaced by an empty directory."""
    config = tmp_path / "idverify.toml"
    config.write_text(f'audit_witness_dirs = ["{tmp_path / "not-mounted"}"]\n', encoding="utf-8")
    serve = [sys.executable, "-m", "idverify", "serve", "--dev", "--data-dir", str(tmp_path / "data")]
    # A port of its own: on the default one, any server already there (another test process's,
    # a developer's) made the start fail on the port before it looked at the witness.
    serve += ["--listen", f"127.0.0.1:{free_port()}"]
    started = subprocess.run(
        [*serve, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert started.stderr.strip().splitlines()[-1].endswith("not-mounted is not a directory (is it mounted?)")
    assert "Traceback" not in started.stderr
    assert not (tmp_path / "not-mounted").exists()


def test_an_external_redis_backup_is_verified_with_its_rdb(tmp_path: Path) -> None:
    """An external Redis's RDB, taken after ``backup create``, is checked like an embedded snapshot."""
    backup = tmp_path / "backup"
    with (
        RedisProcess(tmp_path / "redis", port=free_port()) as store,
        ServerProcess(tmp_path / "live", redis_url=store.url) as server,
    ):
        direct = redis.Redis(host="127.0.0.1", port=store.port)
        with server.client("registrar") as client:
            signups(server, client, 2, "early")
        direct.save()
        before = tmp_path / "before.rdb"
        shutil.copyfile(store.directory / "idverify.rdb", before)
        with server.client("registrar") as client:
            signups(server, client, 1, "middle")
        head(server)
        created = idverify(
            "backup", "create", str(backup), "--data-dir", str(server.data_dir), "--redis-url", store.url
        )
        assert created.returncode == 0, created.stdout + created.stderr
        with server.client("registrar") as client:
            signups(server, client, 1, "late")
        direct.save()
        after = tmp_path / "after.rdb"
        shutil.copyfile(store.directory / "idverify.rdb", after)
    files_only = idverify("backup", "verify", str(backup))
    assert files_only.returncode == 0, files_only.stdout
    assert "pass its RDB with --redis-rdb" in files_only.stdout
    checked = idverify("backup", "verify", str(backup), "--redis-rdb", str(after))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "verify and extend the backup's" in checked.stdout
    # Taken before the backup: behind the head it holds, and the line says what to do.
    early = idverify("backup", "verify", str(backup), "--redis-rdb", str(before))
    assert early.returncode == 1, early.stdout
    assert "behind a published head" in early.stdout
    assert "after `idverify backup create`" in early.stdout
    # Another deployment's snapshot: its logs do not extend this backup's.
    with (
        RedisProcess(tmp_path / "other-redis", port=free_port()) as store,
        ServerProcess(tmp_path / "other", redis_url=store.url) as other,
        other.client("registrar") as client,
    ):
        signups(other, client, 5, "other")
        head(other)
        redis.Redis(host="127.0.0.1", port=store.port).save()
        foreign_rdb = store.directory / "idverify.rdb"
        foreign = idverify("backup", "verify", str(backup), "--redis-rdb", str(foreign_rdb))
    assert foreign.returncode == 1, foreign.stdout
    assert foreign.stdout.startswith("FAILED: ")


def test_an_embedded_backup_refuses_another_rdb(small_backup: Path, tmp_path: Path) -> None:
    rdb = tmp_path / "x.rdb"
    rdb.write_bytes(b"REDIS")
    refused = idverify("backup", "verify", str(small_backup), "--redis-rdb", str(rdb))
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith("its own Redis snapshot (the server used the embedded Redis)")


@pytest.fixture(scope="module")
def small_backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backup of a server with a few signups."""
    folder = tmp_path_factory.mktemp("small")
    with ServerProcess(folder / "live") as server, server.client("registrar") as client:
        signups(server, client, 2, "small")
        head(server)
        assert (
            idverify(
                "backup", "create", str(folder / "backup"), "--data-dir", str(server.data_dir)
            ).returncode
            == 0
        )
    return folder / "backup"


def tampered(original: Path, into: Path) -> Path:
    subprocess.run(["cp", "-a", str(original), str(into)], check=True)
    return into


def rewrite_manifest_entry(backup: Path, name: str) -> None:
    """Makes the manifest agree with a file changed on purpose (so that a deeper check must find it)."""
    import hashlib  # noqa: PLC0415

    manifest = json.loads((backup / "manifest.json").read_text())
    data = (backup / name).read_bytes()
    manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (backup / "manifest.json").write_text(json.dumps(manifest))


def failed_line(backup: Path) -> str:
    checked = idverify("backup", "verify", str(backup))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    lines = checked.stdout.strip().splitlines()
    assert len(lines) == 1, checked.stdout
    assert lines[0].startswith("FAILED: "), checked.stdout
    return lines[0]


def test_a_changed_byte_is_found(small_backup: Path, tmp_path: Path) -> None:
    backup = tampered(small_backup, tmp_path / "b")
    rdb = backup / "redis" / "idverify.rdb"
    data = bytearray(rdb.read_bytes())
    data[len(data) // 2] ^= 0x01
    rdb.write_bytes(bytes(data))
    assert "redis/idverify.rdb is not the file backed up" in failed_line(backup)


def test_a_missing_file_is_found(small_backup: Path, tmp_path: Path) -> None:
    backup = tampered(small_backup, tmp_path / "b")
    (backup / "keyring.json").unlink()
    assert "keyring.json is missing" in failed_line(backup)


def test_a_keyring_that_cannot_open_the_data_is_found(small_backup: Path, tmp_path: Path) -> None:
    backup = tampered(small_backup, tmp_path / "b")
    (backup / "keyring.json").write_text(Keyring.generate().to_json())
    rewrite_manifest_entry(backup, "keyring.json")
    assert "cannot open the data" in failed_line(backup)


def test_a_log_changed_with_its_manifest_is_found(small_backup: Path, tmp_path: Path) -> None:
    backup = tampered(small_backup, tmp_path / "b")
    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["audit_logs"]["default"]["root"] = "00" * 32
    (backup / "manifest.json").write_text(json.dumps(manifest))
    assert "the manifest" in failed_line(backup)


def test_verify_usage(tmp_path: Path) -> None:
    assert idverify("backup", "verify", str(tmp_path / "nothing")).returncode == 2
    assert idverify("backup", "verify", str(tmp_path)).returncode == 1


@dataclass(frozen=True)
class TiledBackup:
    """A server that keeps its audit tiles in ``tiles``, and a backup of it with its tiles."""

    server: ServerProcess
    tiles: Path
    backup: Path
    size: int  # the log's size when the backup was made


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TiledBackup]:
    folder = tmp_path_factory.mktemp("tiled")
    tiles = folder / "tiles"
    with ServerProcess(folder / "live", config=f'audit_tiles_dir = "{tiles}"\n') as server:
        with server.client("registrar") as client:
            signups(server, client, 3, "tiled")
        size = head(server).tree_size
        tiled_size(tiles, size)
        backup = folder / "backup"
        create_configured_backup(server, backup)
        yield TiledBackup(server, tiles, backup, int(manifest_log(backup)["size"]))  # type: ignore[call-overload]


def create_configured_backup(server: ServerProcess, backup: Path) -> None:
    """``idverify backup create`` of a server started with a config file (its audit_tiles_dir)."""
    created = idverify(
        "backup",
        "create",
        str(backup),
        "--config",
        str(server.directory / "idverify.toml"),
        "--data-dir",
        str(server.data_dir),
    )
    assert created.returncode == 0, created.stdout + created.stderr


def tile_names(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder``, by its path there."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_backup_holds_the_tiles_and_verifies(tiled: TiledBackup) -> None:
    files = json.loads((tiled.backup / "manifest.json").read_text())["files"]
    copied = tile_names(tiled.backup / "audit-tiles")
    assert {f"audit-tiles/{name}" for name in copied} == {
        name for name in files if name.startswith("audit-tiles/")
    }
    # Copied after the snapshot, the files of its tree head alone: never more entries than its log.
    size = int(copied["default/tiles-size"])
    assert 0 < size <= tiled.size
    assert set(copied) == {"default/tiles-size", *(f"default/{name}" for name in tree_files(size))}
    for path in (tiled.backup / "audit-tiles", *(tiled.backup / "audit-tiles").rglob("*")):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    checked = idverify("backup", "verify", str(tiled.backup))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_changed_tile_is_found(tiled: TiledBackup, tmp_path: Path) -> None:
    backup = tampered(tiled.backup, tmp_path / "b")
    tile = max(
        path for path in (backup / "audit-tiles" / "default" / "tile" / "0").rglob("*") if path.is_file()
    )
    data = bytearray(tile.read_bytes())
    data[0] ^= 0x01
    tile.write_bytes(bytes(data))
    assert f"{tile.relative_to(backup).as_posix()} is not the file backed up" in failed_line(backup)


def test_tiles_of_a_later_log_than_the_snapshot_are_found(tiled: TiledBackup, tmp_path: Path) -> None:
    """The live tiles, grown past the backup, put in its place (the manifest made to agree)."""
    with tiled.server.client("registrar") as client:
        signups(tiled.server, client, 1, "later")
    later = tiled_size(tiled.tiles, head(tiled.server).tree_size)
    backup = tampered(tiled.backup, tmp_path / "b")
    shutil.rmtree(backup / "audit-tiles" / "default")
    shutil.copytree(
        tiled.tiles / "default", backup / "audit-tiles" / "default", ignore=shutil.ignore_patterns(".*")
    )
    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["files"] = {
        name: entry for name, entry in manifest["files"].items() if not name.startswith("audit-tiles/")
    }
    (backup / "manifest.json").write_text(json.dumps(manifest))
    for name in tile_names(backup / "audit-tiles"):
        rewrite_manifest_entry(backup, f"audit-tiles/{name}")
    assert f"the tiles of default hold {later} entries, more than the log's {tiled.size}" in failed_line(
        backup
    )


def test_a_restore_brings_the_tiles_and_the_restored_server_proves_from_them(
    tiled: TiledBackup, tmp_path: Path
) -> None:
    restored_dir, tiles = tmp_path / "restored", tmp_path / "restored-tiles"
    restored_dir.mkdir()
    restored = idverify(
        "backup",
        "restore",
        str(tiled.backup),
        "--data-dir",
        str(restored_dir / "data"),
        "--audit-tiles-dir",
        str(tiles),
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"audit_tiles_dir {tiles}" in restored.stdout
    assert tile_names(tiles) == tile_names(tiled.backup / "audit-tiles")
    for path in (tiles, *tiles.rglob("*")):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    with ServerProcess(restored_dir, config=f'audit_tiles_dir = "{tiles}"\n') as server:
        with server.client("auditor") as auditor:
            signed = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head
            assert signed.tree_size >= tiled.size
            leaves = [
                merkle.leaf_hash(auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=index)).leaf)
                for index in range(signed.tree_size)
            ]
            for index in range(signed.tree_size):
                proof = auditor.audit.GetInclusionProof(
                    audit_pb2.GetInclusionProofRequest(index=index, tree_size=signed.tree_size)
                )
                merkle.verify_inclusion(
                    leaves[index], index, signed.tree_size, list(proof.hashes), signed.root_hash
                )
            proof = auditor.audit.GetConsistencyProof(
                audit_pb2.GetConsistencyProofRequest(first=tiled.size, second=signed.tree_size)
            )
            root = bytes.fromhex(str(manifest_log(tiled.backup)["root"]))
            verify_consistency(tiled.size, signed.tree_size, list(proof.hashes), root, signed.root_hash)
        # Taken, not refused: the restored server goes on writing them.
        with server.client("registrar") as client:
            signups(server, client, 1, "restored")
        tiled_size(tiles, head(server).tree_size)
        assert "audit tiles of" not in server.log_text()


def test_a_restore_refuses_a_tiles_directory_in_use(tiled: TiledBackup, tmp_path: Path) -> None:
    data_dir, tiles = tmp_path / "data", tmp_path / "tiles"
    missing = idverify("backup", "restore", str(tiled.backup), "--data-dir", str(data_dir))
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "give --audit-tiles-dir" in missing.stderr
    (tiles / "default").mkdir(parents=True)
    (tiles / "default" / "tiles-size").write_text("9\n")
    refused = idverify(
        "backup", "restore", str(tiled.backup), "--data-dir", str(data_dir), "--audit-tiles-dir", str(tiles)
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip() == (
        f"idverify: {tiles} is not empty: move the old tiles aside (they may hold entries the restore lost)"
    )
    assert not data_dir.exists()
    assert (tiles / "default" / "tiles-size").read_text() == "9\n"


def test_an_older_log_restored_beside_newer_tiles_proves_its_own_tree_until_they_are_set_aside(
    tiled: TiledBackup, tmp_path: Path
) -> None:
    """The tiled backup restored, behind a published head, beside the live (newer) tiles volume.

    No proof mixes the two logs: the restored tree is proven from the tiles it agrees with;
    `acknowledge-rollback` sets the tiles beyond the restored tree aside, and the log goes on.
    """
    with tiled.server.client("registrar") as client:
        signups(tiled.server, client, 2, "newer")
    newer = head(tiled.server)
    tiled_size(tiled.tiles, newer.tree_size)
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    restored = idverify(
        "backup",
        "restore",
        str(tiled.backup),
        "--data-dir",
        str(restored_dir / "data"),
        "--audit-tiles-dir",
        str(tmp_path / "unused"),
        "--heads",
        str(tiled.server.data_dir / "audit-heads.json"),
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    tiles = tmp_path / "tiles"  # the operator kept the live volume instead of the backup's tiles
    shutil.copytree(tiled.tiles, tiles, ignore=shutil.ignore_patterns(".*"))
    config = f'audit_tiles_dir = "{tiles}"\n'
    root = bytes.fromhex(str(manifest_log(tiled.backup)["root"]))
    with ServerProcess(restored_dir, config=config) as server:
        with pytest.raises(grpc.RpcError) as refused:
            head(server)
        assert rich_error(refused.value)[0] == "AUDIT_LOG_ROLLED_BACK"
        with server.client("auditor") as auditor:
            leaves = [
                merkle.leaf_hash(auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=index)).leaf)
                for index in range(tiled.size)
            ]
            assert merkle.root(leaves) == root
            for index in range(tiled.size):
                proof = auditor.audit.GetInclusionProof(
                    audit_pb2.GetInclusionProofRequest(index=index, tree_size=tiled.size)
                )
                merkle.verify_inclusion(leaves[index], index, tiled.size, list(proof.hashes), root)
        host = ("--data-dir", str(server.data_dir))
        on_host = ("--config", str(restored_dir / "idverify.toml"))
        acknowledged = idverify("audit", *host, "acknowledge-rollback", *on_host)
        assert acknowledged.returncode == 0, acknowledged.stdout + acknowledged.stderr
        assert "the audit tiles of tenant default beyond its" in acknowledged.stdout
        aside = [path for path in tmp_path.iterdir() if path.name.startswith("tiles")]
        assert aside == [tiles]
        [moved] = [path for path in tiles.iterdir() if path.name.startswith("default.beyond-")]
        assert any(path.is_file() for path in moved.rglob("*"))
    with ServerProcess(restored_dir, config=config) as server:  # restarted, as the command says
        with server.client("registrar") as client:
            signups(server, client, 1, "after")
        signed = head(server)
        assert signed.tree_size > tiled.size
        with server.client("auditor") as auditor:
            proof = auditor.audit.GetConsistencyProof(
                audit_pb2.GetConsistencyProofRequest(first=tiled.size, second=signed.tree_size)
            )
        verify_consistency(tiled.size, signed.tree_size, list(proof.hashes), root, signed.root_hash)
        tiled_size(tiles, signed.tree_size)
        assert "nothing overwritten" not in server.log_text()  # no conflict, before or after
        again = idverify("audit", *host, "--tenant", "default", "set-aside-tiles", *on_host)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "hold nothing beyond" in again.stdout

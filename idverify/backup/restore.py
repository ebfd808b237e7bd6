"""``idverify backup restore DIR --data-dir NEW``: a verified backup into a fresh data directory.

The backup is verified first. The snapshot becomes the embedded Redis's data: a redis-server
loads the RDB with the append-only file off, turns it on (which writes the AOF from the data
loaded) and stops, so the server started on ``NEW`` finds its usual AOF. The published heads
put in ``NEW`` are the newest of the backup's and of ``--heads`` (the old data directory's
file, or any later copy): a restore behind a head published after the backup must be found
(``idverify.audit.rollback``), not forgotten.

A backup's audit tiles go into ``--audit-tiles-dir`` (the restored server's ``audit_tiles_dir``),
which must then be empty or absent, as the data directory must: tiles left from the old log may
hold entries the restore lost, and the restored server would refuse them. A backup made without
tiles restores without them; given a directory all the same, the same rule keeps old tiles out
of it, and the restored server fills it from Redis.
"""

from __future__ import annotations

from pathlib import Path

from idverify.audit.published_heads import HEADS_FILE, merge_heads_files, read_heads_file, write_heads_file
from idverify.audit.signing_key import DEFAULT_KEY_FILE
from idverify.backup.check import VerifiedBackup, verify_backup
from idverify.backup.manifest import RDB, copy_private
from idverify.backup.snapshot import BOOTSTRAP_TOKEN_FILE, KEYRING_FILE, TILES_DIR
from idverify.data_dir import DataDirLock, prepare_data_dir
from idverify.security.durable_files import make_private_dirs
from idverify.store.embedded import RedisProcess
from idverify.store.persistence import rdb_to_aof

__all__ = ["RestoreRefused", "restore_backup"]


class RestoreRefused(Exception):
    """A restore that would overwrite data or cannot be done by this command (a usage error)."""


def restore_backup(
    folder: Path, data_dir: Path, heads_from: Path | None = None, tiles_dir: Path | None = None
) -> VerifiedBackup:
    """Restores the backup in ``folder`` into the new data directory ``data_dir`` (and ``tiles_dir``).

    Raises:
        BackupInconsistent: when the backup does not verify (nothing is written).
        RestoreRefused: when ``data_dir`` or ``tiles_dir`` is not empty, the backup holds no Redis
            snapshot, or it holds tiles and ``tiles_dir`` is not given.
        ConfigError: when ``data_dir`` cannot be created.
        HeadsFileError, OSError: when ``heads_from`` cannot be read.
        RuntimeError: when the redis-server cannot convert the snapshot.
    """
    extra = read_heads_file(heads_from) if heads_from is not None else {}
    verified = verify_backup(folder)
    if verified.manifest.redis != "embedded":
        raise RestoreRefused(
            "the backup holds no Redis snapshot (the server used an external Redis): restore Redis "
            f"from its own backup, and copy {KEYRING_FILE}, {DEFAULT_KEY_FILE} and {HEADS_FILE}"
        )
    if data_dir.exists() and any(data_dir.iterdir()):
        raise RestoreRefused(f"{data_dir} is not empty: restore into a new data directory")
    tiles = sorted(name for name in verified.manifest.files if name.startswith(f"{TILES_DIR}/"))
    if tiles and tiles_dir is None:
        raise RestoreRefused(
            "the backup holds audit tiles: give --audit-tiles-dir, the restored server's audit_tiles_dir"
        )
    if tiles_dir is not None and tiles_dir.exists() and any(tiles_dir.iterdir()):
        raise RestoreRefused(
            f"{tiles_dir} is not empty: move the old tiles aside (they may hold entries the restore lost)"
        )
    prepare_data_dir(data_dir)
    with DataDirLock.acquire(data_dir):
        for name in (KEYRING_FILE, DEFAULT_KEY_FILE, BOOTSTRAP_TOKEN_FILE):
            if name in verified.manifest.files:
                copy_private(folder / name, data_dir / name)
        embedded = RedisProcess.of_data_dir(data_dir)
        copy_private(folder / RDB, embedded.directory / "idverify.rdb")
        rdb_to_aof(embedded)
        backed_up = read_heads_file(folder / HEADS_FILE) if HEADS_FILE in verified.manifest.files else {}
        heads = merge_heads_files(backed_up, extra)
        if heads:
            write_heads_file(data_dir / HEADS_FILE, heads)
        if tiles_dir is not None:
            make_private_dirs(tiles_dir)
            for name in tiles:
                copy_private(folder / name, tiles_dir / Path(name).relative_to(TILES_DIR))
    return verified

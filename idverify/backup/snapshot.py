"""``idverify backup create DIR``: a consistent copy of a data directory, with its manifest.

The embedded Redis writes an RDB snapshot (``BGSAVE``: a fork, so serving goes on), which is
copied (Redis renames a finished snapshot into place, so the copy is whole). The published
heads file is copied *before* the snapshot, so every head it names is in the snapshot's log.
The keyring and signing key files are copied unless they come from the environment, and the
bootstrap token file while it exists. With ``audit_tiles_dir`` set, the tiles are copied
into ``audit-tiles/``, each tenant's size file before its tiles and all of them before the
snapshot (``_copy_tiles``). The logs' sizes and roots are then computed from the copy itself, in
a throwaway redis-server.

With an external Redis, the operator backs Redis up (its own RDB or AOF); the backup holds the
rest, and the logs' sizes and roots as read live.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from idverify.audit.checkpoint import key_id_for
from idverify.audit.published_heads import HEADS_FILE
from idverify.audit.signing_key import DEFAULT_KEY_FILE, SIGNING_KEY_ENV, load_signing_key
from idverify.audit.tile_mirror import SIZE_FILE
from idverify.audit.tiles import is_tile_path
from idverify.backup.logs import audit_tenants, replay
from idverify.backup.manifest import RDB, LogSummary, Manifest, copy_private, describe_file
from idverify.backup.throwaway import opened_snapshot
from idverify.config import Settings
from idverify.flows.keyring_watcher import keyring_path
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.embedded import RedisProcess
from idverify.store.persistence import snapshot_rdb
from idverify.store.scripts import Scripts

__all__ = ["BOOTSTRAP_TOKEN_FILE", "KEYRING_FILE", "TILES_DIR", "create_backup"]

KEYRING_FILE = "keyring.json"
TILES_DIR = "audit-tiles"
"""The backup's copy of ``audit_tiles_dir``: ``audit-tiles/<tenant directory>/...``."""
BOOTSTRAP_TOKEN_FILE = "bootstrap-token"  # noqa: S105 - a file name (idverify.server's)


def create_backup(settings: Settings, folder: Path) -> Manifest:
    """Writes a backup of the settings' data directory into the new folder ``folder``.

    Raises:
        FileExistsError: when ``folder`` exists and is not empty.
        ConfigError: when the data directory holds no data, or a key cannot be read.
        RuntimeError: when Redis cannot snapshot, or the embedded one cannot be reached.
        StoreUnavailable: when Redis cannot be reached.
    """
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty: a backup goes into a new folder")
    folder.mkdir(mode=0o700, exist_ok=True)
    heads = settings.data_dir / HEADS_FILE
    if heads.exists():
        copy_private(heads, folder / HEADS_FILE)
    keyring_file = keyring_path(settings)
    if keyring_file is not None:
        copy_private(keyring_file, folder / KEYRING_FILE)
    # Until an operator exists, the bootstrap token is the way in; the store keeps only its hash.
    if (settings.data_dir / BOOTSTRAP_TOKEN_FILE).exists():
        copy_private(settings.data_dir / BOOTSTRAP_TOKEN_FILE, folder / BOOTSTRAP_TOKEN_FILE)
    signing_key = load_signing_key(settings.data_dir, settings.audit_signing_key_file)
    from_environment = bool(os.environ.get(SIGNING_KEY_ENV))
    if not from_environment:
        key_file = Path(settings.audit_signing_key_file or settings.data_dir / DEFAULT_KEY_FILE)
        copy_private(key_file, folder / DEFAULT_KEY_FILE)
    # The tiles before the Redis snapshot (``_copy_store``): what they count is then in its log.
    if settings.audit_tiles_dir:
        _copy_tiles(Path(settings.audit_tiles_dir), folder / TILES_DIR)
    manifest = Manifest(
        created_ms=time.time_ns() // 1_000_000,
        redis="external" if settings.redis_url else "embedded",
        keyring="file" if keyring_file is not None else "environment",
        signing_key="environment" if from_environment else "file",
        signing_key_id=key_id_for(signing_key.public_key()),
    )
    manifest.audit_logs = asyncio.run(_copy_store(settings, folder))
    manifest.files = {
        str(path.relative_to(folder)): describe_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
    manifest.write(folder)
    return manifest


def _copy_tiles(tiles_dir: Path, target: Path) -> None:
    """Copies every tenant's tiles, its size file first.

    Redis takes a round before the tiles are written, and a tiles' size file is replaced after
    the tiles it counts; so a size file read now counts tiles already written, and a log that
    Redis snapshots later holds at least that many entries. The backup's tiles are then never
    ahead of its log (which a restored server would refuse). A tile written after the size file
    was read may be copied or not: the size file does not count it, and it is the same bytes a
    later round writes. Only tile and bundle names are copied (no writer's temporary file);
    a directory without a size file holds nothing counted yet.
    """
    if not tiles_dir.is_dir():
        return
    for tenant in sorted(path for path in tiles_dir.iterdir() if (path / SIZE_FILE).is_file()):
        copy_private(tenant / SIZE_FILE, target / tenant.name / SIZE_FILE)
        for path in sorted(tenant.rglob("*")):
            name = path.relative_to(tenant).as_posix()
            if path.is_file() and is_tile_path(name):
                copy_private(path, target / tenant.name / name)


async def _copy_store(settings: Settings, folder: Path) -> dict[str, LogSummary]:
    """Snapshots the embedded Redis into the backup; returns the logs of the copy (or the live ones)."""
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415 - it imports the CLI's modules

    async with open_store(settings) as redis:
        if settings.redis_url:
            return await summarize(redis, folder / TILES_DIR)
        await snapshot_rdb(redis)
        copy_private(RedisProcess.of_data_dir(settings.data_dir).directory / "idverify.rdb", folder / RDB)
    async with opened_snapshot(folder / RDB) as snapshot:
        return await summarize(snapshot, folder / TILES_DIR)


async def summarize(redis: RedisClient, tiles: Path) -> dict[str, LogSummary]:
    """Every tenant's log size and root, replayed from its entries (a trimmed log's from ``tiles`` too)."""
    store = AuditStore(redis, Scripts(redis))
    return {tenant: (await replay(store, tenant, tiles=tiles))[0] for tenant in await audit_tenants(redis)}

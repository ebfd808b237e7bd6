"""``idverify backup create DIR``: a consistent copy of a data directory, with its manifest.

The embedded Redis writes an RDB snapshot (``BGSAVE``: a fork, so serving goes on), which is
copied (Redis renames a finished snapshot into place, so the copy is whole). The published
heads file is copied *before* the snapshot, so every head it names is in the snapshot's log.
The keyring and signing key files are copied unless they come from the environment, and the
bootstrap token file while it exists. The logs' sizes and roots are then computed from the copy
itself, in a throwaway redis-server. With ``audit_tiles_dir`` (or ``audit_tiles_url``: the objects
are read from the bucket) set, each tenant's tiles are copied into ``audit-tiles/`` *after* the
snapshot, only the files of the tree of the snapshot's tree head
(``_copy_tiles``): a round writes its tiles before the head moves, so they are there, and a
restore never holds tiles ahead of its log, of entries it lacks.

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
from idverify.audit.tile_store import TileStore
from idverify.audit.tile_volume import SIZE_FILE, TileVolume, tenant_directory, tree_files
from idverify.audit.tiles import cut_to_width
from idverify.audit.tree_state import TreeState
from idverify.backup.logs import audit_tenants, replay
from idverify.backup.manifest import RDB, LogSummary, Manifest, copy_private, describe_file
from idverify.backup.throwaway import opened_snapshot
from idverify.config import Settings
from idverify.flows.keyring_watcher import keyring_path
from idverify.security.durable_files import make_private_dirs, write_durable_file
from idverify.store.audit_logs import opened_tiles
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


async def _copy_tiles(tiles: TileVolume, target: Path, trees: dict[str, TreeState]) -> None:
    """Copies the files of each tenant's tree as the snapshot holds it, and a size file saying so.

    Taken after the snapshot: every tree head there was moved after its tiles were written
    (``audit.tile_mirror``), so they are in the volume (a directory or a bucket), at the head's
    widths (or in a full file that starts with the same bytes). Files of rounds after the
    snapshot are left out, so the backup's tiles are never ahead of its log. A log whose nodes
    Redis still keeps may have tiles behind its head: those are copied as far as they reach (the
    restored server catches them up from the nodes). Only canonical tile and bundle names are
    read, never a writer's temporary.

    Raises:
        RuntimeError: the tiles of a tree kept in tiles lack a file of the snapshot's head.
        OSError: a file cannot be read (a bucket not reached: ``BucketUnavailable``) or written.
    """
    for tenant, state in sorted(trees.items()):
        source = tiles.tiles(tenant)
        size = state.size
        files = await _held_files(source, size)
        if files is None and not state.tiled:
            size = min(size, await tiles.read_size(tenant))
            files = await _held_files(source, size)
        if files is None:
            if state.tiled:
                raise RuntimeError(
                    f"audit tiles: {tiles.where(tenant)} lacks files of the tree of {state.size} entries "
                    f"{tenant}'s log holds (let a server catch them up, then back up again)"
                )
            continue
        if not size:
            continue
        folder = target / tenant_directory(tenant)
        files[SIZE_FILE] = b"%d\n" % size
        await asyncio.to_thread(_write_copies, folder, files)


def _write_copies(folder: Path, files: dict[str, bytes]) -> None:
    """Writes each file below ``folder`` (readable by its owner only, parents 0700)."""
    for name, data in files.items():
        make_private_dirs((folder / name).parent)
        write_durable_file(folder / name, data, overwrite=False)


async def _held_files(source: TileStore, size: int) -> dict[str, bytes] | None:
    """The bytes of the files of the tree of ``size`` by name, or None when one is missing.

    A partial file that is missing is cut from the full one (which starts with the same bytes;
    a tree restored at a size no round ended at has only that), so the backup holds nothing
    beyond ``size``.
    """
    found: dict[str, bytes] = {}
    for name in tree_files(size):
        data = await source.read(name)
        if data is None:
            full = await source.read(name.split(".p/", 1)[0])
            if full is None:
                return None
            data = cut_to_width(name, full)
        found[name] = data
    return found


async def _copy_store(settings: Settings, folder: Path) -> dict[str, LogSummary]:
    """Snapshots the embedded Redis into the backup; returns the logs of the copy (or the live ones)."""
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415 - it imports the CLI's modules

    async with open_store(settings) as redis:
        if settings.redis_url:
            return await _summarize_copying_tiles(settings, redis, folder)
        await snapshot_rdb(redis)
        copy_private(RedisProcess.of_data_dir(settings.data_dir).directory / "idverify.rdb", folder / RDB)
    async with opened_snapshot(folder / RDB) as snapshot:
        return await _summarize_copying_tiles(settings, snapshot, folder)


async def _summarize_copying_tiles(
    settings: Settings, redis: RedisClient, folder: Path
) -> dict[str, LogSummary]:
    """The tiles of the trees ``redis`` holds copied into the backup, then ``summarize`` over them.

    A trimmed log's older entries are replayed from the copy: it holds the tree of the head,
    and a trim never passes the head.
    """
    async with opened_tiles(settings) as tiles:
        if tiles is not None:
            store = AuditStore(redis, Scripts(redis))
            trees = {tenant: await store.tree_state(tenant) for tenant in await audit_tenants(redis)}
            await _copy_tiles(tiles, folder / TILES_DIR, trees)
    return await summarize(redis, folder / TILES_DIR)


async def summarize(redis: RedisClient, tiles: Path) -> dict[str, LogSummary]:
    """Every tenant's log size and root, replayed from its entries (a trimmed log's from ``tiles`` too)."""
    store = AuditStore(redis, Scripts(redis))
    return {tenant: (await replay(store, tenant, tiles=tiles))[0] for tenant in await audit_tenants(redis)}

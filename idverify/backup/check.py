"""``idverify backup verify DIR``: a backup is complete and consistent, or the first reason not.

In order: the manifest; every file it names, present with its size and SHA-256; the signing
key being the one the manifest recorded; then, in a throwaway redis-server over the snapshot,
the keyring opening the data (its key-check values), the snapshot's recorded signing key, and
every tenant's log replayed from its entries to the manifest's size and root, agreeing with the
stored tree, the stored signed head and the published head the backup holds; and each tenant's
audit tiles, if the backup holds them: their tree at the size their size file says is the tree
of the snapshot's entries at that size (replayed from the entries: Redis holds no node of a tree
kept in tiles), no larger than the log, and for the embedded Redis's snapshot the very size of
its tree head when the tree is kept in tiles, so a restored server proves from them at once.

Keys that came from the environment when the backup was made are taken from it again.

A server on an external Redis backs up everything but Redis; the operator takes Redis's RDB
(``redis-cli --rdb FILE``, or a copy of its ``dump.rdb``) *after* ``backup create``. Given that
file (``--redis-rdb``), the same checks run over it, except that its logs may have grown since
the manifest was written: each must extend the manifest's size and root rather than equal them,
and a snapshot taken before the backup, behind a head the backup holds, fails.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from idverify.audit.checkpoint import KeyFormatError, key_id_for, load_private_key, read_private_key_file
from idverify.audit.published_heads import HEADS_FILE, HeadsFileError, PublishedHead, read_heads_file
from idverify.audit.signing_key import DEFAULT_KEY_FILE, SIGNING_KEY_ENV
from idverify.audit.tile_mirror import TileMirror, tenant_directory
from idverify.audit.tile_store import DirectoryTiles, TiledLog, TileMissing
from idverify.backup.logs import LogProblem, audit_tenants, check_log, replay
from idverify.backup.manifest import RDB, Manifest, ManifestError, describe_file
from idverify.backup.snapshot import KEYRING_FILE, TILES_DIR
from idverify.backup.throwaway import opened_snapshot
from idverify.domain.errors import ConfigError, StoreUnavailable
from idverify.flows.key_check import KEYRING_ENV, record_key_versions, recorded_signing_key
from idverify.privacy.keyring import Keyring, load_keyring
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.key_checks import RedisKeyChecks
from idverify.store.scripts import Scripts

__all__ = ["BackupInconsistent", "VerifiedBackup", "verify_backup"]


class BackupInconsistent(Exception):
    """The first thing found wrong with a backup, as one line."""


@dataclass(frozen=True, slots=True)
class VerifiedBackup:
    """A backup that verifies: its manifest, and the audit entries replayed."""

    manifest: Manifest
    entries: int


def verify_backup(folder: Path, redis_rdb: Path | None = None) -> VerifiedBackup:
    """Checks the backup in ``folder`` (with ``redis_rdb``, the external Redis's snapshot).

    Raises:
        BackupInconsistent: naming the first problem found.
        ConfigError: when ``redis_rdb`` is given for a backup that holds its own snapshot.
    """
    if redis_rdb is not None and (folder / RDB).exists():
        raise ConfigError(
            "--redis-rdb: this backup holds its own Redis snapshot (the server used the embedded Redis)"
        )
    try:
        manifest = Manifest.read(folder)
        for name, expected in sorted(manifest.files.items()):
            path = folder / name
            if not path.is_file():
                raise BackupInconsistent(f"{name} is missing")
            if describe_file(path) != expected:
                raise BackupInconsistent(f"{name} is not the file backed up (its size or SHA-256 differs)")
        embedded = manifest.redis == "embedded"
        rdb = folder / RDB if embedded else _external_rdb(redis_rdb)
        public_key = _public_key(folder, manifest)
        if rdb is None:
            return VerifiedBackup(manifest, 0)
        keyring = _keyring(folder, manifest)
        published = read_heads_file(folder / HEADS_FILE) if HEADS_FILE in manifest.files else {}
        entries = asyncio.run(
            _check_snapshot(
                rdb, manifest, keyring, public_key, published, tiles=folder / TILES_DIR, exact=embedded
            )
        )
    except (ManifestError, KeyFormatError, HeadsFileError, ConfigError, LogProblem) as error:
        raise BackupInconsistent(str(error)) from None
    except (OSError, RuntimeError, StoreUnavailable) as error:
        raise BackupInconsistent(f"cannot be read: {error}") from None
    return VerifiedBackup(manifest, entries)


def _external_rdb(redis_rdb: Path | None) -> Path | None:
    if redis_rdb is not None and not redis_rdb.is_file():
        raise BackupInconsistent(f"--redis-rdb: {redis_rdb} is not a file")
    return redis_rdb


def _public_key(folder: Path, manifest: Manifest) -> Ed25519PublicKey:
    if manifest.signing_key == "file":
        source = DEFAULT_KEY_FILE
        key = read_private_key_file(folder / DEFAULT_KEY_FILE).public_key()
    elif os.environ.get(SIGNING_KEY_ENV):
        source = SIGNING_KEY_ENV
        key = load_private_key(os.environ[SIGNING_KEY_ENV].encode()).public_key()
    else:
        raise BackupInconsistent(f"the signing key came from {SIGNING_KEY_ENV}: set it to check the logs")
    if key_id_for(key) != manifest.signing_key_id:
        raise BackupInconsistent(f"{source} is key {key_id_for(key)}, not {manifest.signing_key_id}")
    return key


def _keyring(folder: Path, manifest: Manifest) -> Keyring:
    if manifest.keyring == "file":
        return load_keyring(path=folder / KEYRING_FILE)
    if not os.environ.get(KEYRING_ENV):
        raise BackupInconsistent(
            f"the keyring came from {KEYRING_ENV}: set it to check that it opens the data"
        )
    return load_keyring(text=os.environ[KEYRING_ENV])


async def _check_snapshot(
    rdb: Path,
    manifest: Manifest,
    keyring: Keyring,
    public_key: Ed25519PublicKey,
    published: dict[str, PublishedHead],
    *,
    tiles: Path,
    exact: bool,
) -> int:
    async with opened_snapshot(rdb) as redis:
        source = KEYRING_FILE if manifest.keyring == "file" else KEYRING_ENV
        # Raises ConfigError naming the versions it cannot open (it records nothing that counts:
        # the throwaway server is gone afterwards).
        checks = RedisKeyChecks(redis)
        await record_key_versions(checks, keyring, source)
        recorded = await recorded_signing_key(checks)
        if recorded is not None and recorded != manifest.signing_key_id:
            raise BackupInconsistent(
                f"the snapshot's logs are signed by key {recorded}, not {manifest.signing_key_id}"
            )
        if exact:
            entries = await _check_logs(redis, manifest, public_key, published, tiles)
        else:
            entries = await _check_later_logs(redis, manifest, public_key, published, tiles)
        await _check_tiles(redis, tiles, manifest, exact=exact)
        return entries


async def _check_tiles(redis: RedisClient, tiles: Path, manifest: Manifest, *, exact: bool) -> None:
    """Each tenant's tiles in the backup hold its log's tree in the snapshot (their files were checked)."""
    directories = sorted({name.split("/")[1] for name in manifest.files if name.startswith(f"{TILES_DIR}/")})
    if not directories:
        return
    store = AuditStore(redis, Scripts(redis))
    tenants = {tenant_directory(tenant): tenant for tenant in await audit_tenants(redis)}
    for directory in directories:
        if directory not in tenants:
            raise BackupInconsistent(f"{TILES_DIR}/{directory}: tiles of no audit log in the snapshot")
        tenant = tenants[directory]
        size = await TileMirror(tiles, store).size(tenant)
        summary, roots = await replay(store, tenant, {size}, tiles=tiles)
        if size > summary.size:
            raise BackupInconsistent(
                f"the tiles of {tenant} hold {size} entries, more than the log's {summary.size}"
            )
        state = await store.tree_state(tenant)
        if exact and state.tiled and size != state.size:
            raise BackupInconsistent(
                f"the tiles of {tenant} hold {size} entries, not the {state.size} of its tree head"
            )
        try:
            root = await TiledLog(DirectoryTiles(tiles / directory)).root(size)
        except (TileMissing, ValueError) as error:
            raise BackupInconsistent(f"the tiles of {tenant}: {error}") from None
        if root != roots[size]:
            raise BackupInconsistent(f"the tiles of {tenant} and the log differ at {size} entries")


async def _check_later_logs(
    redis: RedisClient,
    manifest: Manifest,
    public_key: Ed25519PublicKey,
    published: dict[str, PublishedHead],
    tiles: Path,
) -> int:
    """An external Redis's snapshot taken after the backup: every log extends the manifest's."""
    store = AuditStore(redis, Scripts(redis))
    tenants = await audit_tenants(redis)
    missing = sorted(set(manifest.audit_logs) - set(tenants))
    if missing:
        raise BackupInconsistent(f"the Redis snapshot holds no audit log of {', '.join(missing)}")
    total = 0
    for tenant in tenants:
        must_reach: dict[int, bytes] = {}
        if tenant in manifest.audit_logs:
            summary = manifest.audit_logs[tenant]
            must_reach[summary.size] = bytes.fromhex(summary.root)
        record = published.get(tenant)
        if record is not None:
            must_reach[record.signed.head.size] = record.signed.head.root_hash
        try:
            checked = await check_log(store, tenant, public_key, must_reach, tiles=tiles)
        except LogProblem as problem:
            raise BackupInconsistent(
                f"{problem} (take Redis's snapshot after `idverify backup create`, not before)"
            ) from None
        total += checked.summary.size
    return total


async def _check_logs(
    redis: RedisClient,
    manifest: Manifest,
    public_key: Ed25519PublicKey,
    published: dict[str, PublishedHead],
    tiles: Path,
) -> int:
    store = AuditStore(redis, Scripts(redis))
    tenants = await audit_tenants(redis)
    if tenants != sorted(manifest.audit_logs):
        raise BackupInconsistent(
            f"the snapshot holds the logs of {', '.join(tenants) or 'no tenant'}, the manifest of "
            f"{', '.join(sorted(manifest.audit_logs)) or 'no tenant'}"
        )
    total = 0
    for tenant in tenants:
        record = published.get(tenant)
        extra = {record.signed.head.size: record.signed.head.root_hash} if record is not None else {}
        checked = await check_log(store, tenant, public_key, extra, tiles=tiles)
        if checked.summary != manifest.audit_logs[tenant]:
            expected = manifest.audit_logs[tenant]
            raise BackupInconsistent(
                f"tenant {tenant}: the snapshot's log has {checked.summary.size} entries of root "
                f"{checked.summary.root[:16]}..., the manifest {expected.size} of {expected.root[:16]}..."
            )
        total += checked.summary.size
    return total

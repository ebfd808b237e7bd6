"""``idverify backup create | verify | restore``: one-line results, exit codes 0 ok, 1 inconsistent, 2 usage.

``create`` reads the same settings as ``idverify serve`` (``--config``, ``--data-dir``,
``--redis-url``) and runs while the server serves (or not); ``verify`` needs only the backup;
``restore`` writes a new data directory, to start a stopped server on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from idverify.domain.errors import ConfigError, StoreUnavailable

__all__ = ["add_backup_commands"]


def add_backup_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Registers ``backup`` on the ``idverify`` parser."""
    backup = commands.add_parser("backup", help="back up, verify and restore a data directory")
    sub = backup.add_subparsers(dest="backup_command", required=True)
    create = sub.add_parser("create", help="write a consistent backup of the data directory into DIR")
    create.add_argument("dir", help="a new (or empty) folder")
    create.add_argument("--config", default=None, help="TOML file (IDVERIFY_CONFIG)")
    create.add_argument("--data-dir", default=None, help="IDVERIFY_DATA_DIR")
    create.add_argument("--redis-url", default=None, help="IDVERIFY_REDIS_URL; empty for embedded")
    verify = sub.add_parser("verify", help="check that a backup is complete and consistent")
    verify.add_argument("dir", help="a folder written by `idverify backup create`")
    verify.add_argument(
        "--redis-rdb",
        default=None,
        help="for a server on an external Redis: that Redis's RDB, taken after `backup create` "
        "(redis-cli --rdb FILE); its logs must extend the backup's",
    )
    restore = sub.add_parser("restore", help="restore a verified backup into a new data directory")
    restore.add_argument("dir", help="a backup folder that `idverify backup verify` accepts")
    restore.add_argument("--data-dir", required=True, help="the new data directory (must be empty)")
    restore.add_argument(
        "--heads",
        default=None,
        help="the newest audit-heads.json you have (the old data directory's): a log restored "
        "behind a head published after the backup is then refused, not forked silently",
    )
    restore.add_argument(
        "--audit-tiles-dir",
        default=None,
        help="the restored server's audit_tiles_dir (empty or new): the backup's audit tiles go "
        "there (required when the backup holds tiles)",
    )
    backup.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from idverify.audit.published_heads import HeadsFileError  # noqa: PLC0415 - keeps `idverify --help` fast
    from idverify.backup.check import BackupInconsistent  # noqa: PLC0415
    from idverify.backup.restore import RestoreRefused  # noqa: PLC0415

    folder = Path(args.dir)
    try:
        return _COMMANDS[args.backup_command](args, folder)
    except BackupInconsistent as error:
        _out(f"FAILED: {folder}: {error}")
    except (ConfigError, RestoreRefused, FileExistsError, HeadsFileError) as error:
        _err(str(error))
        return 2
    except StoreUnavailable as error:
        _err(f"redis: {error.message}")
    except (OSError, RuntimeError) as error:
        _err(str(error))
    return 1


def _create(args: argparse.Namespace, folder: Path) -> int:
    from idverify.backup.snapshot import create_backup  # noqa: PLC0415
    from idverify.cli.lifecycle import require_embedded_data  # noqa: PLC0415
    from idverify.config import load_settings  # noqa: PLC0415

    settings = load_settings(
        Path(args.config) if args.config else None,
        overrides={"data_dir": args.data_dir, "redis_url": args.redis_url},
    )
    require_embedded_data(settings)
    manifest = create_backup(settings, folder)
    logs = ", ".join(f"{t} {s.size}" for t, s in sorted(manifest.audit_logs.items())) or "none"
    _out(f"backed up into {folder}: {len(manifest.files)} files; audit log entries: {logs}")
    if manifest.redis == "external":
        _out("the server uses an external Redis: back it up too (its RDB or AOF), at about this time")
    for what, source in (("keyring", manifest.keyring), ("audit signing key", manifest.signing_key)):
        if source == "environment":
            _out(f"the {what} comes from the environment: keep that secret with the backup")
    return 0


def _verify(args: argparse.Namespace, folder: Path) -> int:
    _require_folder(folder)
    from idverify.backup.check import verify_backup  # noqa: PLC0415

    rdb = Path(args.redis_rdb) if args.redis_rdb else None
    verified = verify_backup(folder, rdb)
    manifest = verified.manifest
    when = datetime.fromtimestamp(manifest.created_ms / 1000, UTC).isoformat(timespec="seconds")
    if manifest.redis == "embedded":
        snapshot = (
            f"the keyring opens the data; {len(manifest.audit_logs)} audit logs ({verified.entries} "
            "entries) verify against their roots"
        )
    elif rdb is not None:
        snapshot = (
            f"the keyring opens {rdb}; its audit logs ({verified.entries} entries) verify and extend "
            "the backup's"
        )
    else:
        snapshot = "no Redis snapshot (external Redis: pass its RDB with --redis-rdb): files and keys only"
    _out(
        f"OK: backup of {when}: {len(manifest.files)} files match the manifest; signing key "
        f"{manifest.signing_key_id}; {snapshot}"
    )
    return 0


def _restore(args: argparse.Namespace, folder: Path) -> int:
    from idverify.backup.restore import restore_backup  # noqa: PLC0415

    _require_folder(folder)
    data_dir = Path(args.data_dir)
    tiles_dir = Path(args.audit_tiles_dir) if args.audit_tiles_dir else None
    verified = restore_backup(folder, data_dir, Path(args.heads) if args.heads else None, tiles_dir)
    heads = (
        "" if args.heads else "; without --heads, only the heads the backup holds guard against a rollback"
    )
    tiles = f" and audit_tiles_dir {tiles_dir}" if tiles_dir is not None else ""
    _out(
        f"restored {folder} ({verified.entries} audit entries) into {data_dir}: start the server "
        f"with --data-dir {data_dir}{tiles}{heads}"
    )
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, Path], int]] = {
    "create": _create,
    "verify": _verify,
    "restore": _restore,
}


def _require_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(f"idverify: {text}\n")

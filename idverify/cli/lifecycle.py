"""The ``idverify keys`` and ``idverify erasure`` commands: key rotation and the erasure queue.

They act on the keyring file and on Redis directly, not through a running server, and read the
same settings as ``idverify serve`` (``--config``, ``--data-dir``, ``--redis-url``). With the
embedded default they use the Redis socket of the server that holds the data directory, or, when
none does, lock the directory and start the embedded Redis for the time of the command: never a
second Redis on the same files. A directory where no server kept data is refused, not read as
empty. Rotating the wrapping key online::

    idverify keys add        # w2, readable by every server once they reload (a few seconds)
    idverify keys rotate     # w2 becomes the write version
    idverify keys reindex    # re-seals every record under w2; stop and run again to resume
    idverify keys retire w1  # refused while anything is still sealed under w1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from idverify.config import Settings, load_settings
from idverify.data_dir import DataDirInUse, DataDirLock
from idverify.domain.errors import ConfigError, StoreUnavailable
from idverify.flows.schema_version import refuse_newer_schema
from idverify.privacy.keyring import (
    KEYRING_ENV_VAR,
    Keyring,
    UnknownKeyVersion,
    load_keyring,
    save_keyring_file,
)
from idverify.store.connection import RedisClient, close_client, connect
from idverify.store.schema_versions import RedisSchemaStore

if TYPE_CHECKING:
    from idverify.flows.reindex import KeyUsage

_PROGRESS_WIDTH = 30
# How long a running server's Redis gets to answer PING before the command gives up on it.
_PROBE_SECONDS = 2.0


def add_lifecycle_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Registers ``keys`` and ``erasure`` on the ``idverify`` parser."""
    keys = commands.add_parser("keys", help="rotate wrapping keys and peppers; re-seal stored records")
    _store_options(keys)
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    add = key_commands.add_parser(
        "add", help="add a wrapping-key version (readable at once, not yet written under)"
    )
    add.add_argument("--pepper", action="store_true", help="add a pepper version instead")
    rotate = key_commands.add_parser("rotate", help="make a version the write version")
    rotate.add_argument("version", nargs="?", default="", help="w<n> or p<n> (default: the newest)")
    rotate.add_argument("--pepper", action="store_true", help="the newest pepper, not wrapping key")
    key_commands.add_parser("status", help="how many records remain under each version")
    reindex = key_commands.add_parser("reindex", help="re-seal every record under the write version")
    reindex.add_argument("--limit", type=int, default=0, help="stop after about this many (resume later)")
    reindex.add_argument("--batch", type=int, default=200, help="keys per SCAN page (and checkpoint)")
    reindex.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for running servers to load the keyring"
    )
    reindex.add_argument("--no-progress", action="store_true", help="no progress bar")
    retire = key_commands.add_parser("retire", help="remove a version nothing is stored under any more")
    retire.add_argument("version", help="w<n> or p<n>, as `keys status` lists them")
    keys.set_defaults(handler=_keys)

    erasure = commands.add_parser("erasure", help="the erasure queue of cancelled accounts")
    _store_options(erasure)
    erasure_commands = erasure.add_subparsers(dest="erasure_command", required=True)
    erasure_commands.add_parser("status", help="list pending and overdue erasures")
    erasure.set_defaults(handler=_erasure)


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="TOML file (IDVERIFY_CONFIG)")
    parser.add_argument("--data-dir", default=None, help="IDVERIFY_DATA_DIR")
    parser.add_argument("--redis-url", default=None, help="IDVERIFY_REDIS_URL; empty for embedded")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        Path(args.config) if args.config else None,
        overrides={"data_dir": args.data_dir, "redis_url": args.redis_url},
    )


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(f"idverify: {text}\n")


def _exit_code(
    command: Callable[[], int], *, usage_errors: tuple[type[Exception], ...] = (ConfigError,)
) -> int:
    """The command's exit code; its failure said on stderr: 2 for ``usage_errors``, 1 for the store's."""
    try:
        return command()
    except usage_errors as exc:
        _err(str(exc))
        return 2
    except StoreUnavailable as exc:
        _err(f"redis: {exc.message}")
        return 1
    except RuntimeError as exc:  # the data directory is in use, or the embedded Redis failed
        _err(str(exc))
        return 1


def _keys(args: argparse.Namespace) -> int:
    def command() -> int:
        settings = _settings(args)
        if args.keys_command in {"add", "rotate"}:
            return _edit_keyring(settings, args)
        return asyncio.run(_keys_with_store(settings, args))

    return _exit_code(command, usage_errors=(ConfigError, UnknownKeyVersion, OSError))


def _erasure(args: argparse.Namespace) -> int:
    return _exit_code(lambda: asyncio.run(_erasure_status(_settings(args))))


def _keyring_file(settings: Settings) -> Path:
    from idverify.flows.keyring_watcher import keyring_path  # noqa: PLC0415 - keeps `idverify --help` fast

    path = keyring_path(settings)
    if path is None:
        raise ConfigError(f"the keyring comes from {KEYRING_ENV_VAR}: change that secret, then restart")
    return path


def _load(settings: Settings) -> Keyring:
    if os.environ.get(KEYRING_ENV_VAR):
        return load_keyring(text=os.environ[KEYRING_ENV_VAR])
    return load_keyring(path=_keyring_file(settings))


def _edit_keyring(settings: Settings, args: argparse.Namespace) -> int:
    path = _keyring_file(settings)
    keyring = load_keyring(path=path)
    if args.keys_command == "add":
        updated = (
            keyring.with_new_pepper(make_current=False)
            if args.pepper
            else keyring.with_new_wrapping_key(make_current=False)
        )
        versions = updated.pepper_versions if args.pepper else updated.wrapping_versions
        added = max(versions, key=lambda v: int(v[1:]))
        save_keyring_file(updated, path)
        _out(
            f"added {added}; running servers read it within keyring_reload_seconds; "
            "next: idverify keys rotate"
        )
        return 0
    version = args.version or max(
        keyring.pepper_versions if args.pepper else keyring.wrapping_versions, key=lambda v: int(v[1:])
    )
    pepper = version.startswith("p")
    updated = keyring.with_current(pepper=version) if pepper else keyring.with_current(wrapping=version)
    save_keyring_file(updated, path)
    if pepper:
        _out(f"{version} is the pepper of new identity indexes; existing ones move when next presented")
    else:
        _out(f"{version} is the write version; next: idverify keys reindex")
    return 0


def _require_embedded_data(settings: Settings) -> None:
    """Refuses a data directory where no server kept data with its embedded Redis.

    Run from another working directory, the default ``./idverify-data`` names nothing: an empty
    Redis started there would answer "no pending erasures" or "no records", which is false.

    Raises:
        ConfigError: naming ``data_dir``.
    """
    from idverify.store.embedded import RedisProcess  # noqa: PLC0415 - keeps `idverify --help` fast

    if not settings.redis_url and not RedisProcess.of_data_dir(settings.data_dir).directory.is_dir():
        hint = "pass the server's --data-dir, or --redis-url"
        raise ConfigError(f"data_dir: no idverify data in {settings.data_dir} ({hint})")


async def _answers(url: str) -> bool:
    probe = connect(url, pool_size=1)
    try:
        async with asyncio.timeout(_PROBE_SECONDS):
            await probe.ping()
    except Exception:  # noqa: BLE001 - any failure to answer is "does not answer"
        return False
    else:
        return True
    finally:
        await close_client(probe)


@contextlib.asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[RedisClient]:
    """A Redis client for the settings: the configured URL, or the embedded server's socket.

    Raises:
        ConfigError: the data directory holds no embedded Redis data.
        RuntimeError: a server holds the data directory and its Redis does not answer, or the
            embedded Redis does not start.
    """
    from idverify.store.embedded import RedisProcess  # noqa: PLC0415

    _require_embedded_data(settings)
    url, started, lock = settings.redis_url, None, None
    if not url:
        process = RedisProcess.of_data_dir(settings.data_dir)
        url = process.url
        try:
            lock = DataDirLock.acquire(settings.data_dir)
        except DataDirInUse as in_use:
            # A server holds the directory: its Redis is the only one that may open these files.
            if not await _answers(url):
                msg = f"{in_use}, whose Redis does not answer; try again when it serves"
                raise RuntimeError(msg) from None
        else:
            started = process
            try:
                await asyncio.to_thread(started.start)
            except BaseException:
                lock.release()
                raise
    client = connect(url, pool_size=4)
    try:
        await refuse_newer_schema(RedisSchemaStore(client))
        yield client
    finally:
        await close_client(client)
        if started is not None:
            await asyncio.to_thread(started.stop)
        if lock is not None:
            lock.release()


open_store = _store
"""A Redis client for the settings, for other commands (``idverify audit rotate-key``)."""

require_embedded_data = _require_embedded_data
"""Refuses a data directory without data, for other commands (``idverify backup create``)."""


async def _keys_with_store(settings: Settings, args: argparse.Namespace) -> int:
    _require_embedded_data(settings)
    keyring = _load(settings)
    async with _store(settings) as redis:
        if args.keys_command == "status":
            return await _status(redis, keyring)
        if args.keys_command == "reindex":
            return await _reindex(redis, keyring, args)
        return await _retire(redis, settings, keyring, args.version)


async def _status(redis: RedisClient, keyring: Keyring) -> int:
    from idverify.flows.keyring_watcher import UNREPORTED_SCHEMA  # noqa: PLC0415
    from idverify.flows.reindex import count_key_usage  # noqa: PLC0415
    from idverify.flows.schema_version import SCHEMA_VERSION  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415
    from idverify.store.sealed_records import RedisSealedRecords  # noqa: PLC0415
    from idverify.store.server_reports import RedisServerReports  # noqa: PLC0415

    _out(f"wrapping keys: {', '.join(keyring.wrapping_versions)} (write: {keyring.wrapping_current})")
    _out(
        f"peppers: {', '.join(keyring.pepper_versions)} (index: {keyring.pepper_current}, "
        f"pseudonyms: {keyring.pseudonym_pepper})"
    )
    older = 0
    for server in await RedisServerReports(redis).running():
        reads = ", ".join(server.wrapping)
        release = f"schema {server.schema}"
        if server.schema == UNREPORTED_SCHEMA:
            release += " (0.1.0: it reports none)"
        older += server.schema < SCHEMA_VERSION
        _out(
            f"server {server.instance}: {release}, writes {server.wrapping_current} (reads {reads}), "
            f"index pepper {server.pepper_current}"
        )
    if older:
        # A rolling upgrade is under way or was left half done: those servers serve requests by
        # their own release's rules (README, "Upgrading"), which the operator must know.
        _out(
            f"{older} server(s) of an older release (schema below {SCHEMA_VERSION}) still serve "
            "this Redis: their requests follow that release's rules until they are replaced"
        )
    usage = await count_key_usage(RedisSealedRecords(redis, Scripts(redis)))
    if not usage:
        _out("no records")
    for tenant, counts in sorted(usage.items()):
        _out(f"tenant {tenant}:")
        for version in sorted(_wrapping_versions(counts)):
            _out(
                f"  {version}: {counts.identities[version]} identities, "
                f"{counts.verifications[version]} verifications, {counts.forwarding[version]} forwarding, "
                f"{counts.accounts[version]} accounts, {counts.event_accounts[version]} event accounts, "
                f"{counts.webhook_secrets[version]} webhook secrets"
            )
        for version, count in sorted(counts.peppers.items()):
            _out(f"  {version}: {count} identity indexes")
    return 0


def _wrapping_versions(counts: KeyUsage) -> set[str]:
    """The wrapping-key versions some record of the tenant is sealed under."""
    return set().union(
        counts.identities,
        counts.verifications,
        counts.forwarding,
        counts.accounts,
        counts.event_accounts,
        counts.webhook_secrets,
    )


async def _wait_for_servers(redis: RedisClient, target: str, seconds: float) -> list[str]:
    """Instances that still do not write under ``target`` when the wait is over."""
    from idverify.store.server_reports import RedisServerReports  # noqa: PLC0415

    reports = RedisServerReports(redis)
    deadline = time.monotonic() + seconds
    while True:
        behind = [s.instance for s in await reports.running() if s.wrapping_current != target]
        if not behind or time.monotonic() >= deadline:
            return behind
        await asyncio.sleep(0.5)


async def _reindex(redis: RedisClient, keyring: Keyring, args: argparse.Namespace) -> int:
    from idverify.flows.identity_mover import IdentityMover  # noqa: PLC0415
    from idverify.flows.reindex import Reindexer, count_key_usage  # noqa: PLC0415
    from idverify.privacy.sealing import Sealer  # noqa: PLC0415
    from idverify.store.identity_records import RedisIdentityRecords  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415
    from idverify.store.sealed_records import RedisSealedRecords  # noqa: PLC0415

    target = keyring.wrapping_current
    behind = await _wait_for_servers(redis, target, args.wait)
    if behind:
        # A server that cannot read the target version would lose the records moved to it.
        _err(f"servers {', '.join(behind)} do not write under {target} yet; try again once they reload")
        return 1
    scripts = Scripts(redis)
    records = RedisSealedRecords(redis, scripts)
    usage = await count_key_usage(records)
    total = sum(
        counts.wrapping_total(v)
        for counts in usage.values()
        for v in _wrapping_versions(counts)
        if v != target
    )
    bar = _Progress(total, enabled=not args.no_progress)
    mover = IdentityMover(RedisIdentityRecords(redis, scripts), Sealer(keyring))
    report = await Reindexer(records, keyring, mover, page_size=max(args.batch, 1)).run(
        limit=max(args.limit, 0), progress=bar.advance
    )
    bar.close()
    state = "done" if report.finished else "stopped; run it again to resume"
    _out(f"re-sealed {report.resealed} record(s) under {target}: {state}")
    if report.unreadable:
        _err(f"{report.unreadable} record(s) sealed under a version this keyring lacks were left")
    return 0


async def _retire(redis: RedisClient, settings: Settings, keyring: Keyring, version: str) -> int:
    from idverify.flows.key_check import forget_key_version  # noqa: PLC0415
    from idverify.flows.reindex import count_key_usage  # noqa: PLC0415
    from idverify.store.key_checks import RedisKeyChecks  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415
    from idverify.store.sealed_records import RedisSealedRecords  # noqa: PLC0415
    from idverify.store.server_reports import RedisServerReports  # noqa: PLC0415

    usage = await count_key_usage(RedisSealedRecords(redis, Scripts(redis)))
    if version.startswith("p"):
        remaining = sum(counts.peppers[version] for counts in usage.values())
        what = "identity indexes"
    else:
        remaining = sum(counts.wrapping_total(version) for counts in usage.values())
        what = "records (identities, verifications, accounts, forwarding records that expire)"
    if remaining:
        _err(f"{remaining} {what} remain under {version}; not retired")
        return 1
    users = [s.instance for s in await RedisServerReports(redis).running() if s.wrapping_current == version]
    if users:
        _err(f"servers {', '.join(users)} still write under {version}; not retired")
        return 1
    updated = keyring.without(version)
    # First the key-check value, then the file: a crash between them leaves a version that the
    # next start records again, never a recorded version that no keyring holds.
    await forget_key_version(RedisKeyChecks(redis), version)
    save_keyring_file(updated, _keyring_file(settings))
    _out(f"retired {version}")
    return 0


async def _erasure_status(settings: Settings) -> int:
    from idverify.flows.erasure import pending_erasures  # noqa: PLC0415
    from idverify.store.erasures import RedisErasureStore  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415

    zone = ZoneInfo(settings.erasure.timezone)
    async with _store(settings) as redis:
        pending = await pending_erasures(
            RedisErasureStore(redis, Scripts(redis)), settings.erasure.overdue_after_seconds
        )
    if not pending:
        _out("no pending erasures")
        return 0
    _out("tenant\tkind\tsubject\tdue\tstate")
    for item in pending:
        due = datetime.fromtimestamp(item.due_ms / 1000, UTC).astimezone(zone)
        state = "OVERDUE" if item.overdue else "pending"
        _out(f"{item.tenant}\t{item.kind}\t{item.subject[:16]}\t{due:%Y-%m-%d %H:%M %z}\t{state}")
    overdue = sum(item.overdue for item in pending)
    _out(f"{len(pending)} pending, {overdue} overdue")
    return 0


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self._total = max(total, 1)
        self._done = 0
        self._enabled = enabled and sys.stderr.isatty()
        self._shown = -1.0

    def advance(self, count: int) -> None:
        self._done += count
        now = time.monotonic()
        if self._enabled and now - self._shown >= 0.1:  # noqa: PLR2004 - ten redraws a second at most
            self._shown = now
            self._draw()

    def _draw(self) -> None:
        share = min(self._done / self._total, 1.0)
        filled = int(share * _PROGRESS_WIDTH)
        bar = "#" * filled + "." * (_PROGRESS_WIDTH - filled)
        sys.stderr.write(f"\rreindex [{bar}] {self._done}/{self._total} ({share:.0%})")
        sys.stderr.flush()

    def close(self) -> None:
        if self._enabled:
            self._draw()
            sys.stderr.write("\n")


__all__ = ["add_lifecycle_commands"]

"""``idverify migrate audit-tiles``: an existing deployment's audit logs moved into tiles, online.

Run on a server's host with its configuration (``--config``, ``audit_tiles_dir`` set there or
given as ``--audit-tiles-dir``), while the servers serve. The operator's sequence (README,
"Moving audit logs into tiles"):

1. ``idverify migrate audit-tiles``: copies every tenant's log into the tiles (or ``--tenant``'s),
   with servers still running without the setting; Redis is not written. Killed, run it again.
2. Restart the servers with ``audit_tiles_dir`` set to that directory. Their first rounds catch
   up only what was integrated since, then keep the tree in tiles.
3. ``idverify migrate audit-tiles --finish``: switches the logs no round switched yet (a quiet
   tenant), trims Redis's entries the bundles hold, and verifies each move.

``--verify`` checks finished (or copied) moves again, writing nothing. The flow is
``audit.tiles_move``; this module opens the store, picks the tenants, refuses bad input in one
line (exit 2, before anything is written) and shows progress: a bar per tenant on a terminal,
a line every few seconds otherwise, and with ``--json`` a report of every tenant on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

from tqdm import tqdm

from idverify.cli.migrate_legacy import add_legacy_command
from idverify.domain.errors import ConfigError, IdverifyError, StoreUnavailable

if TYPE_CHECKING:
    from idverify.audit.tiles_move import MoveReport, TilesMove
    from idverify.config import Settings
    from idverify.store.connection import RedisClient

__all__ = ["Progress", "add_migrate_commands"]

_LINE_SECONDS = 5.0
"""How often a run without a terminal prints where it is."""

_REFUSED = 2
_FAILED = 1


def add_migrate_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``migrate`` and its subcommands to the ``idverify`` parser."""
    migrate = commands.add_parser(
        "migrate",
        help="move an existing deployment's audit logs into tiles, or older servers' leftovers into "
        "this release's form, online (on the server's host)",
    )
    sub = migrate.add_subparsers(dest="migrate_command", required=True)
    tiles = sub.add_parser(
        "audit-tiles",
        help="copy every tenant's audit log into audit_tiles_dir while servers serve; "
        "--finish once they run with the setting; --verify to check",
    )
    tiles.add_argument("--config", default=None, help="TOML file (IDVERIFY_CONFIG)")
    tiles.add_argument("--redis-url", default=None, help="IDVERIFY_REDIS_URL; empty for embedded")
    tiles.add_argument("--data-dir", default=None, help="the server's data directory")
    tiles.add_argument(
        "--audit-tiles-dir",
        default=None,
        help="the tiles' directory (default: audit_tiles_dir of the config)",
    )
    tiles.add_argument("--tenant", default="", help="move this tenant's log alone (default: every tenant's)")
    step = tiles.add_mutually_exclusive_group()
    step.add_argument(
        "--finish",
        action="store_true",
        help="switch the copied logs to tiles and trim Redis's entries (every server runs with the setting)",
    )
    step.add_argument("--verify", action="store_true", help="check the moves again; writes nothing")
    tiles.add_argument("--json", action="store_true", help="print a report of every tenant as JSON")
    tiles.set_defaults(handler=_run)
    add_legacy_command(sub)


def _run(args: argparse.Namespace) -> int:
    from idverify.audit.tiles_move import MoveRefused  # noqa: PLC0415 - keeps `idverify --help` fast

    logging.basicConfig(level=logging.WARNING, format="idverify: %(message)s", stream=sys.stderr)
    try:
        return asyncio.run(_move(args))
    except (ConfigError, MoveRefused, RuntimeError) as error:  # RuntimeError: a server's Redis not answering
        print(f"idverify: {error}", file=sys.stderr)
        return _REFUSED
    except OSError as error:  # the tiles' folder cannot be read or written midway
        print(f"idverify: {error}; run the command again once it can", file=sys.stderr)
        return _FAILED
    except StoreUnavailable as error:
        print(f"idverify: {error.message}; nothing was moved (run the command again)", file=sys.stderr)
        return _REFUSED
    except IdverifyError as error:  # the tiles stopped (the log above names the file)
        print(f"idverify: {error.reason}: {error.message}", file=sys.stderr)
        return _FAILED


async def _move(args: argparse.Namespace) -> int:
    from idverify.audit.tiles_move import MoveRefused, TilesMove  # noqa: PLC0415
    from idverify.backup.logs import audit_tenants  # noqa: PLC0415
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415
    from idverify.store.audit_moves import RedisMovedLog  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415

    settings = _settings(args)
    root = _tiles_dir(settings, writing=not args.verify)
    async with open_store(settings) as redis:
        move = TilesMove(root, RedisMovedLog(redis, Scripts(redis)))
        tenants = await audit_tenants(redis)
        if args.tenant:
            if args.tenant not in tenants:
                raise MoveRefused(f"--tenant: tenant {args.tenant} has no audit log")
            tenants = [args.tenant]
        if not args.verify:
            tenants = await _to_move(move, redis, tenants, finishing=args.finish)
        reports: list[MoveReport] = []
        for tenant in tenants:
            if args.verify:
                reports.append(await _shown(move, tenant, "verify"))
                continue
            with Progress(tenant, "finish" if args.finish else "copy") as progress:
                state = await (move.finish if args.finish else move.copy)(tenant, progress.update)
            if args.finish:
                reports.append(await _shown(move, tenant, "verify"))
            else:
                print(f"tenant {tenant}: its tiles hold its tree of {state.size} entries", file=sys.stderr)
    return _reported(reports, args)


async def _to_move(move: TilesMove, redis: RedisClient, tenants: list[str], *, finishing: bool) -> list[str]:
    """The tenants to copy or finish, once none is refused (nothing is written before).

    Raises:
        MoveRefused: a tenant's folder holds another log's tiles, or (copying) every log is
            already kept in tiles.
    """
    from idverify.audit.tiles_move import MoveRefused  # noqa: PLC0415
    from idverify.store.audit_store import AuditStore  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415

    store = AuditStore(redis, Scripts(redis))
    for tenant in tenants:
        refusal = await move.refusal(tenant)
        if refusal is not None:
            raise MoveRefused(refusal)
    if finishing:
        return tenants
    moved = [tenant for tenant in tenants if (await store.tree_state(tenant)).tiled]
    if tenants and len(moved) == len(tenants):
        raise MoveRefused(
            f"the audit logs of {', '.join(tenants)} are kept in tiles already; "
            "`idverify migrate audit-tiles --verify` checks them"
        )
    for tenant in moved:
        print(f"tenant {tenant}: its log is kept in tiles already; not copied", file=sys.stderr)
    return [tenant for tenant in tenants if tenant not in moved]


def _reported(reports: list[MoveReport], args: argparse.Namespace) -> int:
    """Prints each tenant's report (JSON on stdout with ``--json``); 1 if any check failed."""
    if args.json:
        print(json.dumps({"tenants": [report.as_json() for report in reports]}, indent=2))
    for report in reports:
        counts = report.counts
        if report.ok and counts is not None:
            started = report.moved_from.size if report.moved_from is not None else 0
            print(
                f"tenant {report.tenant}: OK: tree of {report.tree_size} entries"
                f"{' kept in tiles' if report.kept_in_tiles else ' (its nodes still in Redis)'}, consistent "
                f"with the {started} entries the move started from; "
                f"{counts.in_redis} entries in Redis above the trim point {counts.trimmed}, "
                f"{report.entries_in_bundles} in bundles, log size {counts.size}",
                file=sys.stderr,
            )
        for problem in report.problems:
            print(f"tenant {report.tenant}: FAILED: {problem}", file=sys.stderr)
    return 0 if all(report.ok for report in reports) else _FAILED


async def _shown(move: TilesMove, tenant: str, what: str) -> MoveReport:
    """A tenant's move checked, with its progress shown."""
    with Progress(tenant, what) as progress:
        return await move.verify(tenant, progress.update)


class Progress:
    """A tenant's progress: a bar with entries/s on a terminal, else a line every few seconds.

    tqdm draws the bar (already a dependency, for ``audit export``); without a terminal it
    draws nothing, and a log file gets a line at most every ``_LINE_SECONDS``.
    """

    def __init__(self, tenant: str, what: str, unit: tuple[str, str] = ("entry", "entries")) -> None:
        self._label = f"tenant {tenant}: {what}"
        self._units = unit[1]
        self._terminal = sys.stderr.isatty()
        self._bar = tqdm(
            desc=self._label, unit=unit[0], unit_scale=True, file=sys.stderr, disable=not self._terminal
        )
        self._began = time.monotonic()
        self._said = self._began
        self._done = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._bar.close()

    def update(self, done: int) -> None:
        """The tenant's entries (or other units) done so far."""
        if done <= self._done:
            return
        self._bar.update(done - self._done)
        self._done = done
        now = time.monotonic()
        if not self._terminal and now - self._said >= _LINE_SECONDS:
            rate = done / max(now - self._began, 1e-9)
            said = f"idverify: {self._label}: {done:,} {self._units} ({rate:,.0f}/s)"
            print(said, file=sys.stderr, flush=True)
            self._said = now


def _settings(args: argparse.Namespace) -> Settings:
    from idverify.config import load_settings  # noqa: PLC0415

    return load_settings(
        Path(args.config) if args.config else None,
        overrides={
            "data_dir": args.data_dir,
            "redis_url": args.redis_url,
            "audit_tiles_dir": args.audit_tiles_dir,
        },
    )


def _tiles_dir(settings: Settings, *, writing: bool) -> Path:
    """The tiles' directory, checked (made if missing, when writing).

    Raises:
        ConfigError: none is set, it is not a directory, or it cannot be written.
    """
    from idverify.data_dir import prepare_tiles_dir  # noqa: PLC0415

    if settings.audit_tiles_url:
        # The copy, its record and its check are files of a directory; a bucket gets each log
        # from the servers' own first rounds (the same catch-up, checked against Redis's nodes).
        raise ConfigError(
            "audit_tiles_url: migrate audit-tiles copies into a directory only; with a bucket, restart "
            "the servers with audit_tiles_url set and their first rounds copy each log into it"
        )
    if not settings.audit_tiles_dir:
        raise ConfigError("audit_tiles_dir: not set; give --audit-tiles-dir or set it in the config")
    if writing:
        prepare_tiles_dir(settings.audit_tiles_dir)
    elif not Path(settings.audit_tiles_dir).is_dir():
        raise ConfigError(f"audit_tiles_dir: {settings.audit_tiles_dir} is not a directory")
    return Path(settings.audit_tiles_dir)

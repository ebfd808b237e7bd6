"""``idverify migrate legacy``: what older servers left that makes a step cross a family, moved once.

Run on a server's host with its configuration, while the servers serve, once no server of an
older release serves (README, "Upgrading"): every identity member 0.1.0 bound gets its ``m:`` field,
the legacy ``events:acct`` map's ids go into their accounts and the map goes, and the log's head
is marked so that the tenant's steps stop reading it (``store.legacy_moves``). Killed, run it
again: it goes on from its checkpoint. A second run finds nothing to change and says so.
``--verify`` checks, writing nothing. Bad input is refused in one line (exit 2) before anything
is written; with ``--json`` a report of every tenant goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from idverify.domain.errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from idverify.config import Settings
    from idverify.store.connection import RedisClient
    from idverify.store.legacy_moves import LegacyCheck, LegacyCounts

__all__ = ["add_legacy_command"]

_REFUSED = 2
_FAILED = 1
_UNITS = ("record", "records")


def add_legacy_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``migrate legacy`` to ``migrate``'s subcommands."""
    legacy = sub.add_parser(
        "legacy",
        help="give 0.1.0's identity members their claim tags and move the legacy events:acct map into "
        "the accounts, while servers serve; --verify to check",
    )
    legacy.add_argument("--config", default=None, help="TOML file (IDVERIFY_CONFIG)")
    legacy.add_argument("--redis-url", default=None, help="IDVERIFY_REDIS_URL; empty for embedded")
    legacy.add_argument("--data-dir", default=None, help="the server's data directory")
    legacy.add_argument("--tenant", default="", help="this tenant alone (default: every one with a log)")
    legacy.add_argument("--verify", action="store_true", help="check every tenant; writes nothing")
    legacy.add_argument("--json", action="store_true", help="print a report of every tenant as JSON")
    legacy.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="idverify: %(message)s", stream=sys.stderr)
    try:
        return asyncio.run(_migrate(args))
    except (ConfigError, RuntimeError) as error:  # RuntimeError: a server's Redis not answering
        print(f"idverify: {error}", file=sys.stderr)
        return _REFUSED
    except StoreUnavailable as error:
        print(f"idverify: {error.message}; run the command again (it goes on from there)", file=sys.stderr)
        return _FAILED


async def _migrate(args: argparse.Namespace) -> int:
    from idverify.backup.logs import audit_tenants  # noqa: PLC0415 - keeps `idverify --help` fast
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415
    from idverify.cli.migrate import Progress  # noqa: PLC0415
    from idverify.domain.tenants import valid_tenant  # noqa: PLC0415
    from idverify.store.legacy_moves import RedisLegacyMove  # noqa: PLC0415
    from idverify.store.schema_versions import RedisSchemaStore  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415

    if args.tenant and not valid_tenant(args.tenant):
        raise ConfigError(f"--tenant: {args.tenant!r} is not a tenant name")
    settings = _settings(args)
    async with open_store(settings) as redis:
        tenants = await audit_tenants(redis)
        if args.tenant:
            if args.tenant not in tenants:
                raise ConfigError(f"--tenant: tenant {args.tenant} has no audit log, so no data to move")
            tenants = [args.tenant]
        move = RedisLegacyMove(redis, Scripts(redis))
        if args.verify:
            checks: dict[str, LegacyCheck] = {}
            for tenant in tenants:
                with Progress(tenant, "verify", _UNITS) as progress:
                    checks[tenant] = await move.check(tenant, progress.update)
            return _checked(checks, as_json=args.json)
        await _refuse_older_servers(redis)
        # No older server serves (refused above): the logs servers create from their next start
        # on are born walked (flows.born_walked), as after a start that found none.
        await RedisSchemaStore(redis).mark_logs_born_walked()
        counts: dict[str, LegacyCounts] = {}
        for tenant in tenants:
            with Progress(tenant, "move", _UNITS) as progress:
                counts[tenant] = await move.run(tenant, progress.update)
    return _moved(counts, as_json=args.json)


async def _refuse_older_servers(redis: RedisClient) -> None:
    """Refuses while a server of an older release reports in: it would write what this run moves.

    0.1.0 binds members without their ``m:`` field, so a run beside it would never be done.

    Raises:
        ConfigError: naming the servers.
    """
    from idverify.flows.schema_version import older_servers  # noqa: PLC0415
    from idverify.store.server_reports import RedisServerReports  # noqa: PLC0415

    older = await older_servers(RedisServerReports(redis))
    if older:
        named = ", ".join(f"{server.instance} (schema {server.schema})" for server in older)
        raise ConfigError(
            f"servers of an older release still serve this Redis: {named}; they bind members without "
            "their claim tags again: finish the rollout (`idverify keys status` lists them), then run this"
        )


def _moved(counts: dict[str, LegacyCounts], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"tenants": {tenant: c.as_json() for tenant, c in counts.items()}}, indent=2))
    for tenant, c in counts.items():
        resumed = " (went on from a killed run)" if c.resumed else ""
        if not c.changed and not c.in_motion:
            said = f"tenant {tenant}: nothing to change: {c.records} identity records read{resumed}"
            print(said, file=sys.stderr)
            continue
        print(
            f"tenant {tenant}: {c.fields_written} member fields written over {c.records} identity records, "
            f"{c.ids_moved} event ids moved into their accounts, {c.ids_dropped} dropped{resumed}",
            file=sys.stderr,
        )
        if c.in_motion:
            print(
                f"tenant {tenant}: {c.in_motion} identity records were being re-indexed and were left to "
                "their moves: run the command again",
                file=sys.stderr,
            )
    return 0


def _checked(checks: dict[str, LegacyCheck], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"tenants": {tenant: c.as_json() for tenant, c in checks.items()}}, indent=2))
    for tenant, c in checks.items():
        if c.ok:
            born = " (its log born walked: no older server reported in when it was created)" if c.born else ""
            print(
                f"tenant {tenant}: OK: {c.records} identity records, {c.members} members, each with its "
                f"claim tag; no events:acct map{born}",
                file=sys.stderr,
            )
            continue
        problems = []
        if c.members_without_field:
            problems.append(f"{c.members_without_field} of {c.members} members without their claim tag")
        if c.map_fields:
            problems.append(f"{c.map_fields} fields left in events:acct")
        if not c.head_marked:
            problems.append("the log's head is not marked (steps still read events:acct)")
        print(f"tenant {tenant}: FAILED: {'; '.join(problems)}", file=sys.stderr)
    return 0 if all(c.ok for c in checks.values()) else _FAILED


def _settings(args: argparse.Namespace) -> Settings:
    from idverify.config import load_settings  # noqa: PLC0415

    return load_settings(
        Path(args.config) if args.config else None,
        overrides={"data_dir": args.data_dir, "redis_url": args.redis_url},
    )

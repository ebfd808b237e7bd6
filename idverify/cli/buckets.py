"""``idverify buckets status``: a tenant's bucket layout, and how its buckets spread over a Cluster.

Run with the server's configuration (``--config``, ``--redis-url`` or ``--data-dir``)::

    idverify buckets status --tenant acme          # its layout's state, buckets per primary
    idverify buckets status --tenant acme --json   # the same as one JSON object

A tenant without a stored layout is shown with the layout its first planning would store (the
label search is the same for everyone), so an operator sees the spread before anything moves.
Whether the tenant is walked for older servers' data, which the buckets' move requires, comes
from its log's head: marked by ``idverify migrate legacy``, or born walked (``flows.born_walked``).
It reads and writes nothing but the layout record, that mark and the Cluster's slot map
(``store.buckets``, ``store.legacy_moves``; docs/ARCHITECTURE.md, "Buckets: the plan").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idverify.domain.errors import ConfigError, IdverifyError, StoreUnavailable
from idverify.domain.tenants import valid_tenant

if TYPE_CHECKING:
    from idverify.config import Settings

__all__ = ["add_bucket_commands"]

_REFUSED = 2
_FAILED = 1
_NOT_PLANNED = "not planned"
_LEGACY_LINES = {
    "no log": "no audit log yet: its first entry decides whether it is born walked",
    "not walked": "older servers' data not walked: run `idverify migrate legacy` before the buckets move",
    "walked": "walked by `idverify migrate legacy`",
    "born walked": "born walked: no server of an older release reported in when its log was created",
}


def add_bucket_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``buckets`` and its subcommands to the ``idverify`` parser."""
    buckets = commands.add_parser("buckets", help="a tenant's bucket layout and its spread over a Cluster")
    buckets.add_argument("--config", default=None, help="TOML file (IDVERIFY_CONFIG)")
    buckets.add_argument("--redis-url", default=None, help="IDVERIFY_REDIS_URL; empty for embedded")
    buckets.add_argument("--data-dir", default=None, help="the server's data directory")
    sub = buckets.add_subparsers(dest="buckets_command", required=True)
    status = sub.add_parser("status", help="the layout's state and how many buckets each primary holds")
    status.add_argument("--tenant", required=True, help="the tenant's name")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    buckets.set_defaults(handler=_run)


def _err(text: str) -> None:
    sys.stderr.write(f"idverify: {text}\n")


def _run(args: argparse.Namespace) -> int:
    from idverify.store.buckets import BucketLayoutRefused  # noqa: PLC0415 - keeps `idverify --help` fast

    try:
        return asyncio.run(_status(_settings(args), args))
    except ConfigError as error:
        _err(str(error))
        return _REFUSED
    # RuntimeError: a server holds the data directory and its Redis does not answer; ValueError:
    # a Cluster with slots no node serves.
    except (RuntimeError, ValueError) as error:
        _err(str(error))
        return _FAILED
    except StoreUnavailable as error:
        _err(f"redis: {error.message}")
        return _FAILED
    except BucketLayoutRefused as error:
        _err(f"{error}; refused, not used")
        return _FAILED
    except IdverifyError as error:
        _err(f"{error.reason}: {error.message}")
        return _FAILED


def _settings(args: argparse.Namespace) -> Settings:
    """The settings to reach the store with, once the arguments are good.

    Raises:
        ConfigError: the tenant is not a tenant's name, or the configuration is bad.
    """
    from idverify.config import load_settings  # noqa: PLC0415

    if not valid_tenant(args.tenant):
        msg = f"--tenant: {args.tenant!r} is not a tenant name"
        raise ConfigError(msg)
    try:
        return load_settings(
            Path(args.config) if args.config else None,
            overrides={"data_dir": args.data_dir, "redis_url": args.redis_url},
        )
    except ConfigError as error:
        msg = f"configuration error: {error}"
        raise ConfigError(msg) from error


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415
    from idverify.store.buckets import RedisBucketLayouts, node_shares, search_layout, worst_deviation  # noqa: PLC0415
    from idverify.store.legacy_moves import RedisLegacyMove  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415

    async with open_store(settings) as redis:
        layouts = RedisBucketLayouts(redis)
        stored = await layouts.read(args.tenant)
        owners = await layouts.slot_owners()
        legacy = await RedisLegacyMove(redis, Scripts(redis)).state(args.tenant)
    layout = stored if stored is not None else search_layout(args.tenant)
    state = stored.state if stored is not None else _NOT_PLANNED
    shares = node_shares(layout, owners) if owners is not None else []
    report: dict[str, Any] = {
        "tenant": args.tenant,
        "state": state,
        "count": layout.count,
        "cluster": owners is not None,
        "primaries": [{"node": share.node, "buckets": share.buckets} for share in shares],
        "worst_deviation": round(worst_deviation(shares), 6),
        "legacy": legacy.value,
    }
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
        return 0
    lines = [
        f"tenant {args.tenant}: {layout.count} buckets, layout {state}",
        f"legacy data: {_LEGACY_LINES[legacy.value]}",
    ]
    if owners is None:
        lines.append(f"a single node: all {layout.count} buckets are on the one node")
    else:
        lines += [f"{share.node}\t{share.buckets}" for share in shares]
        deviation = report["worst_deviation"]
        lines.append(f"worst deviation from even: {deviation:.2%} over {len(shares)} primaries")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0

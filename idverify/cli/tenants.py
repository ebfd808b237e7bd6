"""``idverify tenants remove | status``: a tenant leaves (``idverify.flows.tenant_removal``).

Run on the server's host like ``idverify keys`` and break-glass: whoever holds the data directory
(or the configuration, keyring and audit signing key of an external Redis) is the operator here,
and the audit entries name them as ``tenants-remove/<user>@<host>``. No token could do it: the
erasure outlives any call, and it needs the signing key to close the log::

    idverify tenants remove acme --grace 30        # revokes acme's clients now, erases in 30 days
    idverify tenants remove acme --cancel          # during the grace period
    idverify tenants remove acme --export-dir out  # once due: close, export, erase (resumable)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from idverify.config import Settings, load_settings
from idverify.domain.errors import ConfigError, IdverifyError, StoreUnavailable
from idverify.domain.tenants import valid_tenant

if TYPE_CHECKING:
    from idverify.audit.checkpoint import SignedHead
    from idverify.flows.tenant_removal import Removal, TenantRemoval

__all__ = ["add_tenant_commands"]

DEFAULT_GRACE_DAYS = 30


def add_tenant_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Registers ``tenants`` on the ``idverify`` parser."""
    tenants = commands.add_parser("tenants", help="remove a tenant that leaves (on the server's host)")
    tenants.add_argument("--config", default=None, help="TOML file (IDVERIFY_CONFIG)")
    tenants.add_argument("--data-dir", default=None, help="IDVERIFY_DATA_DIR")
    tenants.add_argument("--redis-url", default=None, help="IDVERIFY_REDIS_URL; empty for embedded")
    sub = tenants.add_subparsers(dest="tenants_command", required=True)
    remove = sub.add_parser(
        "remove",
        help="first run: revoke the tenant's clients and schedule the erasure; once due: close and "
        "export its audit log, then erase everything else of it (run again to resume)",
    )
    remove.add_argument("tenant", help="the tenant's name")
    remove.add_argument(
        "--grace",
        type=int,
        default=DEFAULT_GRACE_DAYS,
        help=f"days before the erasure (default {DEFAULT_GRACE_DAYS})",
    )
    remove.add_argument("--cancel", action="store_true", help="cancel a removal during its grace period")
    remove.add_argument("--export-dir", default="", help="where the closed audit log and its public key go")
    remove.add_argument("--yes", action="store_true", help="do not ask for the tenant's name as confirmation")
    remove.add_argument("--limit", type=int, default=0, help="stop after about this many keys (resume later)")
    remove.add_argument("--batch", type=int, default=500, help="keys per SCAN page (and checkpoint)")
    remove.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("status", help="removals scheduled or under way")
    tenants.set_defaults(handler=_run)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(f"idverify: {text}\n")


def _bad_arguments(args: argparse.Namespace) -> str:
    if args.tenants_command != "remove":
        return ""
    if not valid_tenant(args.tenant):
        return f"tenant: {args.tenant!r} is not a tenant name"
    if args.grace < 0 or args.limit < 0 or args.batch < 1:
        return "--grace and --limit take 0 or more, --batch 1 or more"
    return ""


def _run(args: argparse.Namespace) -> int:
    bad = _bad_arguments(args)
    if bad:
        _err(bad)
        return 2
    try:
        settings = load_settings(
            Path(args.config) if args.config else None,
            overrides={"data_dir": args.data_dir, "redis_url": args.redis_url},
        )
        return asyncio.run(_with_store(settings, args))
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        return 2
    except StoreUnavailable as exc:
        _err(f"redis: {exc.message}")
        return 1
    except IdverifyError as exc:
        _err(f"{exc.reason}: {exc.message}")
        return 1
    except (RuntimeError, OSError) as exc:  # the data directory is in use, an export not written
        _err(str(exc))
        return 1


async def _with_store(settings: Settings, args: argparse.Namespace) -> int:
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415
    from idverify.flows.audit_setup import build_audit_flow  # noqa: PLC0415 - keeps `idverify --help` fast
    from idverify.flows.key_check import check_signing_key, open_keyring  # noqa: PLC0415
    from idverify.flows.tenant_removal import TenantRemoval  # noqa: PLC0415
    from idverify.store.audit_logs import configured_audit_log, opened_tiles, refuse_trimmed_logs  # noqa: PLC0415
    from idverify.store.audit_stages import stage_sequencer  # noqa: PLC0415
    from idverify.store.key_checks import RedisKeyChecks  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415
    from idverify.store.tenant_removals import RedisRemovalStore  # noqa: PLC0415

    async with open_store(settings) as redis, opened_tiles(settings) as tiles:
        checks = RedisKeyChecks(redis)
        keyring = await open_keyring(settings, checks)
        # The log's own key signs its final head: never one generated here by mistake.
        await check_signing_key(settings, checks)
        scripts = Scripts(redis)
        audit_log = configured_audit_log(redis, scripts, tiles)
        audit = build_audit_flow(settings, audit_log, keyring)
        await refuse_trimmed_logs(redis, tiles)
        sequencer = stage_sequencer(redis, scripts, settings.audit_stage_buckets)
        removal = TenantRemoval(RedisRemovalStore(redis, scripts, log=audit_log), audit, sequencer=sequencer)
        if args.tenants_command == "status":
            return await _status(removal)
        return await _remove(removal, settings, args)


def _when(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M UTC}"


async def _status(removal: TenantRemoval) -> int:
    pending = await removal.pending()
    if not pending:
        _out("no tenant removals")
        return 0
    _out("tenant\tstate\tdue\tscheduled by")
    for item in pending:
        _out(f"{item.tenant}\t{item.state}\t{_when(item.due_ms)}\t{item.scheduled_by}")
    return 0


def _confirmed(args: argparse.Namespace, what: str) -> bool:
    """The operator typed the tenant's name (or passed --yes)."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        _err(f"{what}: confirm with --yes (no terminal to ask on)")
        return False
    answer = input(f"{what}. Type the tenant's name to confirm: ")
    if answer.strip() != args.tenant:
        _err("not confirmed; nothing changed")
        return False
    return True


def _request() -> dict[str, str]:
    from idverify.security.break_glass import host_principal  # noqa: PLC0415

    return {"principal": host_principal("tenants-remove"), "request_id": "", "trace_id": ""}


def _configured_for(settings: Settings, tenant: str) -> list[str]:
    """Where the configuration still names the tenant (a certificate acts without any client)."""
    found = [f"[tenants.{tenant}]"] if tenant in settings.tenants and tenant != "default" else []
    found += [
        f"tls.client_principals {name!r}"
        for name, target in settings.tls.client_principals.items()
        if target.split("/")[0] == tenant
    ]
    return found


async def _remove(removal: TenantRemoval, settings: Settings, args: argparse.Namespace) -> int:
    from idverify.flows.tenant_removal import CLOSED, REMOVED, SCHEDULED  # noqa: PLC0415

    tenant = args.tenant
    if args.cancel:
        await removal.cancel(tenant, _request())
        _out(f"the removal of tenant {tenant} is cancelled; its clients stay revoked (create new ones)")
        return 0
    leftovers = _configured_for(settings, tenant)
    if leftovers:
        _err(f"warning: the configuration still names tenant {tenant}: {', '.join(leftovers)}; remove it")
    record = await removal.get(tenant)
    if record is None:
        return await _schedule(removal, args)
    if record.state == REMOVED:
        if args.export_dir and record.final_head is not None:
            await _export(removal, tenant, record.final_head, args)
        _out(f"tenant {tenant} was removed; its audit log stays ({_size(record)} entries); nothing to do")
        return 0
    if record.state in {SCHEDULED, CLOSED}:
        if not args.export_dir:
            _err("--export-dir: the closed audit log is exported there before anything is erased")
            return 2
        if record.state == SCHEDULED and not _confirmed(
            args, f"Close the audit log of tenant {tenant} and erase everything else of it for good"
        ):
            return 2
        head = await removal.close(tenant, _request())
        await _export(removal, tenant, head, args)
        await removal.start_erasing(tenant)
    elif args.export_dir and record.final_head is not None:  # erasing: a second copy, if asked
        await _export(removal, tenant, record.final_head, args)
    return await _erase(removal, args)


async def _schedule(removal: TenantRemoval, args: argparse.Namespace) -> int:
    tenant = args.tenant
    what = f"Revoke every client of tenant {tenant} now and erase its data in {args.grace} day(s)"
    if not _confirmed(args, what):
        return 2
    due_ms, revoked = await removal.schedule(tenant, args.grace, _request())
    _out(
        f"tenant {tenant}: {revoked} client(s) revoked; removal due {_when(due_ms)}; "
        "cancel with --cancel until then, then run this again with --export-dir"
    )
    return 0


async def _erase(removal: TenantRemoval, args: argparse.Namespace) -> int:
    total = await removal.count_remaining(args.tenant)
    with tqdm(
        total=total, unit="key", desc="erase", file=sys.stderr, disable=True if args.no_progress else None
    ) as bar:
        report = await removal.erase(args.tenant, page_size=args.batch, limit=args.limit, progress=bar.update)
    state = "removed" if report.finished else "stopped; run it again to resume"
    _out(f"erased {report.erased} key(s) of tenant {args.tenant}: {state}")
    return 0


def _size(record: Removal) -> int:
    return int(record.final_head.head.size) if record.final_head is not None else 0


async def _export(removal: TenantRemoval, tenant: str, head: SignedHead, args: argparse.Namespace) -> None:
    from idverify.flows.audit import origin_of  # noqa: PLC0415
    from idverify.flows.tenant_removal import export_paths  # noqa: PLC0415

    directory = Path(args.export_dir)
    with tqdm(
        total=head.head.size,
        unit="entry",
        desc="export",
        file=sys.stderr,
        disable=True if args.no_progress else None,
    ) as bar:
        path = await removal.export(tenant, head, directory, bar.update)
    _, key_path = export_paths(directory, tenant)
    _out(
        f"exported {head.head.size} audit entries of tenant {tenant} to {path} (verified); the tenant "
        f"checks it with: idverify audit verify {path.name} --public-key {key_path.name} "
        f"--origin {origin_of(tenant)}"
    )

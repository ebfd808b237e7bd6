"""``idverify audit ...``: the log on the command line (export, verify, public-key, rotate-key...).

``export`` and ``public-key`` talk to a running server with an auditor's (or admin's) token:
``--token``, else ``IDVERIFY_TOKEN``. (Not the bootstrap token: it may create operators and
admins only, and reads no log.)
``verify`` and ``verify-bundle`` (a person's account data export) are offline: they need only
the file and the log's public key.
``rotate-key``, ``acknowledge-rollback`` and ``set-aside-tiles`` run on the server's host, on its
data directory and store. With ``audit_tiles_dir`` set, an acknowledged rollback also sets the
tenant's tiles beyond its log aside (``TileMirror.set_aside``): they hold the lost entries, and a
later round would meet them as conflicts; ``set-aside-tiles`` does that alone (after a restore or
failover that lost entries without a published head behind it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import grpc
from tqdm import tqdm

from idverify.audit.bundle import BundleFormatError, verify_bundle
from idverify.audit.checkpoint import (
    KeyFormatError,
    SignedHead,
    TreeHead,
    key_id_for,
    public_key_pem,
    read_private_key_file,
    read_public_key_file,
)
from idverify.audit.export import ExportFormatError, entry_line, head_line, verify_export
from idverify.audit.published_heads import HeadsFileError
from idverify.audit.signing_key import load_signing_key
from idverify.cli.client_options import add_client_options, open_client
from idverify.client import Client
from idverify.domain.errors import ConfigError, IdverifyError, StoreUnavailable
from idverify.v1 import audit_pb2

if TYPE_CHECKING:
    from idverify.audit.tile_volume import TileVolume
    from idverify.config import Settings
    from idverify.store.connection import RedisClient

__all__ = ["EXPORT_PAGE", "add_audit_commands"]

EXPORT_PAGE = 50_000
"""Events per QueryEvents stream: a dropped stream costs at most this much, and resumes after it."""

_STREAM_TIMEOUT_SECONDS = 600.0
_NANOS_PER_MS = 1_000_000


def add_audit_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``audit`` and its subcommands to the ``idverify`` parser."""
    audit = commands.add_parser("audit", help="export, verify and check the tamper-evident audit log")
    add_client_options(audit)
    audit.add_argument("--token", default="", help="an auditor's or admin's token (IDVERIFY_TOKEN)")
    audit.add_argument("--data-dir", default=None, help="the server's data directory (rotate-key)")
    audit.add_argument(
        "--tenant", default="", help="the tenant's log (admins only; default: the token's own)"
    )
    sub = audit.add_subparsers(dest="audit_command", required=True)
    export = sub.add_parser("export", help="write the log and its latest signed head as JSON lines")
    export.add_argument("--out", required=True, help="the file to write ('-' for standard output)")
    verify = sub.add_parser("verify", help="check an export offline: signature, tree, every entry")
    verify.add_argument("file", help="an export written by `idverify audit export`")
    verify.add_argument("--public-key", required=True, help="the log's Ed25519 public key (PEM file)")
    verify.add_argument(
        "--origin",
        default=None,
        help="the log the export must be of, e.g. idverify/default (one key may sign every tenant's log)",
    )
    bundle = sub.add_parser(
        "verify-bundle", help="check a person's account data export offline: signature, every proof"
    )
    bundle.add_argument("file", help="an ExportAccountData reply as protobuf JSON")
    bundle.add_argument("--public-key", required=True, help="the log's Ed25519 public key (PEM file)")
    bundle.add_argument("--origin", default=None, help="the log the bundle must be of, e.g. idverify/default")
    public_key = sub.add_parser("public-key", help="print the log's public key (PEM)")
    public_key.add_argument(
        "--signing-key-file",
        default="",
        help="print the public half of this private key file instead of asking the server",
    )
    rotate = sub.add_parser(
        "rotate-key",
        help="make the configured (or a newly generated) signing key the log's; run on the server's host",
    )
    _store_options(rotate)
    acknowledge = sub.add_parser(
        "acknowledge-rollback",
        help="accept the entries lost by a restore behind a published head (audited); "
        "run on the server's host",
    )
    _store_options(acknowledge)
    set_aside = sub.add_parser(
        "set-aside-tiles",
        help="move the tenant's audit tiles beyond its log's tree head aside (audit_tiles_dir, or "
        "a prefix beside the tenant's in audit_tiles_url); "
        "run on the server's host, then restart the servers",
    )
    _store_options(set_aside)
    audit.set_defaults(handler=_run)


def _store_options(parser: argparse.ArgumentParser) -> None:
    """The options of a command run on the server's host, over its configuration and store."""
    parser.add_argument("--config", default=None, help="TOML file (IDVERIFY_CONFIG)")
    parser.add_argument("--redis-url", default=None, help="IDVERIFY_REDIS_URL; empty for embedded")


def _run(args: argparse.Namespace) -> int:
    try:
        if args.audit_command in {"verify", "verify-bundle"}:
            check = _verify if args.audit_command == "verify" else _verify_bundle
            return check(Path(args.file), Path(args.public_key), args.origin)
        if args.audit_command == "public-key":
            return _public_key(args)
        if args.audit_command in _ON_HOST:
            return asyncio.run(_ON_HOST[args.audit_command](args))
        return _export(args)
    except grpc.RpcError as error:
        print(f"idverify: {error.code().name}: {error.details()}", file=sys.stderr)
    except (
        OSError,
        KeyFormatError,
        ExportFormatError,
        BundleFormatError,
        HeadsFileError,
        RuntimeError,
        StoreUnavailable,
    ) as error:
        print(f"idverify: {error}", file=sys.stderr)
    except IdverifyError as error:  # the tiles stopped, a log kept in tiles without the setting
        print(f"idverify: {error.reason}: {error.message}", file=sys.stderr)
    except ConfigError as error:
        print(f"idverify: configuration error: {error}", file=sys.stderr)
        return 2
    return 1


async def _rotate_key(args: argparse.Namespace) -> int:
    """Records the signing key a server would load (generating the default one when it is gone).

    Servers refuse a key other than the recorded one, so a new key is never an accident; heads
    signed from now on use the new key, earlier ones stay verifiable with the old public key.
    Every tenant's log gets an ``audit.key_rotated`` entry (key ids only, which are public)
    *before* the key is recorded, so no rotation takes effect unaudited; a run that fails
    part-way is run again, and tenants that have their entry are skipped.
    """
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415
    from idverify.config import load_settings  # noqa: PLC0415 - keeps `idverify --help` fast
    from idverify.flows.key_check import record_signing_key, recorded_signing_key  # noqa: PLC0415
    from idverify.store.key_checks import RedisKeyChecks  # noqa: PLC0415

    settings = load_settings(
        Path(args.config) if args.config else None,
        overrides={"data_dir": args.data_dir, "redis_url": args.redis_url},
    )
    key_id = key_id_for(load_signing_key(settings.data_dir, settings.audit_signing_key_file).public_key())
    async with open_store(settings) as redis:
        checks = RedisKeyChecks(redis)
        previous = await recorded_signing_key(checks)
        if previous == key_id:
            print(f"key {key_id} already signs the log; nothing rotated")
            return 0
        tenants = await _audit_rotation(redis, key_id, previous or "")
        await record_signing_key(checks, key_id)
    print(
        f"the audit log's signing key is now {key_id} (was {previous or 'not recorded'}; recorded in "
        f"the audit log of {tenants} tenant(s)); restart the servers and give auditors the new public "
        "key (`idverify audit public-key`); heads signed before stay verifiable with the old one"
    )
    return 0


async def _audit_rotation(redis: RedisClient, key_id: str, previous: str) -> int:
    """Writes the rotation to every tenant's log (once per key); returns how many tenants have logs."""
    from idverify.security.break_glass import host_principal  # noqa: PLC0415
    from idverify.store.connection import as_text, translate_errors  # noqa: PLC0415
    from idverify.store.keys import GlobalKeys, TenantKeys  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415

    scripts = Scripts(redis)
    request = json.dumps({"principal": host_principal("audit-rotate-key"), "request_id": "", "trace_id": ""})
    # Every tenant that has (or had) a client: every tenant with an audit log.
    async with translate_errors():
        tenants = {as_text(tenant) for tenant in await redis.hvals(GlobalKeys.CLIENT_TENANTS)}
    for tenant in sorted(tenants):
        keys = TenantKeys(tenant)
        await scripts.run(
            "audit_key", [keys.audit_signing_key(), keys.audit_log()], [key_id, previous, request]
        )
    return len(tenants)


async def _acknowledge_rollback(args: argparse.Namespace) -> int:
    """Audits and clears every rollback found (``idverify.audit.acknowledge``); prints each."""
    from idverify.audit.acknowledge import acknowledge_rollbacks  # noqa: PLC0415
    from idverify.audit.published_heads import PublishedHeads  # noqa: PLC0415
    from idverify.audit.rollback import RollbackGuard  # noqa: PLC0415
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415
    from idverify.store.audit_logs import configured_audit_log, opened_tiles  # noqa: PLC0415
    from idverify.store.audit_rollbacks import RedisRollbackAcknowledgements  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415

    settings = _host_settings(args)
    heads = PublishedHeads(settings.data_dir, settings.audit_witness_dirs)
    async with open_store(settings) as redis, opened_tiles(settings) as tiles:
        # Built as the server builds it: the guard's consistency proofs read the tiles, if any.
        log = configured_audit_log(redis, Scripts(redis), tiles)
        guard = RollbackGuard(log, log, heads)
        done = await acknowledge_rollbacks(guard, RedisRollbackAcknowledgements(redis), heads, args.tenant)
        if not done:
            print("no audit log is behind its published head; nothing to acknowledge")
        for item in done:
            how = "recorded as" if item.written else "already recorded as"
            print(
                f"acknowledged: {item.rollback.describe()}; {how} entry {item.entry} of the log "
                f"(audit.rollback_acknowledged); servers sign heads of tenant {item.rollback.tenant} again"
            )
            await _set_tiles_aside(tiles, redis, item.rollback.tenant)
    return 0


async def _set_aside_tiles(args: argparse.Namespace) -> int:
    """Sets the tiles of ``--tenant`` beyond its log's tree head aside."""
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415
    from idverify.store.audit_logs import opened_tiles  # noqa: PLC0415

    settings = _host_settings(args)
    if not settings.audit_tiles_dir and not settings.audit_tiles_url:
        raise ConfigError(
            "audit_tiles_dir: not set (nor audit_tiles_url), so there are no tiles to set aside"
        )
    if not args.tenant:
        raise ConfigError("--tenant: name the tenant whose tiles to set aside")
    async with open_store(settings) as redis, opened_tiles(settings) as tiles:
        await _set_tiles_aside(tiles, redis, args.tenant)
    return 0


async def _set_tiles_aside(tiles: TileVolume | None, redis: RedisClient, tenant: str) -> None:
    """Moves the tenant's tiles beyond its stored tree aside (``TileMirror.set_aside``); prints where."""
    from idverify.audit.tile_mirror import TileMirror  # noqa: PLC0415
    from idverify.store.audit_store import AuditStore  # noqa: PLC0415
    from idverify.store.scripts import Scripts  # noqa: PLC0415

    if tiles is None:
        return
    store = AuditStore(redis, Scripts(redis))
    keep = (await store.tree_state(tenant)).size
    moved = await TileMirror(tiles, store).set_aside(tenant, keep)
    if moved is None:
        print(f"the audit tiles of tenant {tenant} hold nothing beyond its {keep} entries")
    else:
        print(
            f"the audit tiles of tenant {tenant} beyond its {keep} entries were moved to {moved}; "
            "restart the servers"
        )


def _host_settings(args: argparse.Namespace) -> Settings:
    from idverify.config import load_settings  # noqa: PLC0415 - keeps `idverify --help` fast

    return load_settings(
        Path(args.config) if args.config else None,
        overrides={"data_dir": args.data_dir, "redis_url": args.redis_url},
    )


_ON_HOST = {
    "rotate-key": _rotate_key,
    "acknowledge-rollback": _acknowledge_rollback,
    "set-aside-tiles": _set_aside_tiles,
}


def _client(args: argparse.Namespace) -> Client:
    """A client with the auditor's or admin's token.

    Raises:
        ConfigError: without a token (a one-line message, exit 2).
    """
    token = args.token or os.environ.get("IDVERIFY_TOKEN", "")
    if not token:
        raise ConfigError("token: an auditor's or admin's token is needed (--token or IDVERIFY_TOKEN)")
    return open_client(args, token)


def _export(args: argparse.Namespace) -> int:
    client = _client(args)
    stub = client.audit
    try:
        answer = stub.GetTreeHead(audit_pb2.GetTreeHeadRequest(tenant=args.tenant))
        signed = _signed_head(answer.head)
        size = signed.head.size
        with (
            contextlib.ExitStack() as files,
            tqdm(total=size, unit="entry", file=sys.stderr, disable=None) as bar,
        ):
            out = sys.stdout.buffer if args.out == "-" else files.enter_context(Path(args.out).open("wb"))
            out.write(head_line(signed))
            written = 0
            while written < size:
                request = audit_pb2.QueryEventsRequest(
                    tenant=args.tenant, start_index=written, limit=min(EXPORT_PAGE, size - written)
                )
                before = written
                for item in stub.QueryEvents(request, timeout=_STREAM_TIMEOUT_SECONDS):
                    if item.event.index != written:
                        print(
                            f"idverify: the server skipped from entry {written} to {item.event.index}",
                            file=sys.stderr,
                        )
                        return 1
                    out.write(entry_line(written, item.leaf, item.leaf_hash))
                    written += 1
                    bar.update(1)
                if written == before:
                    print(f"idverify: the server sent no entry from {written} on", file=sys.stderr)
                    return 1
    finally:
        client.close()
    print(f"exported {size} entries of {signed.head.origin} (key {signed.key_id})", file=sys.stderr)
    return 0


def _verify(path: Path, public_key_file: Path, expected_origin: str | None) -> int:
    public_key = read_public_key_file(public_key_file)
    with path.open("rb") as handle:
        report = verify_export(_lines(handle), public_key, expected_origin=expected_origin)
    # The origin says whose log this is: the key alone does not, when it signs every tenant's.
    log_name = f"{report.origin}: " if report.origin else ""
    if report.ok:
        print(
            f"OK: {log_name}{report.entries} entries, tree size {report.tree_size}, signature and root verify"
        )
        return 0
    where = f"first bad entry: {report.first_bad}: " if report.first_bad is not None else ""
    print(f"FAILED: {log_name}{where}{report.problem}")
    return 1


def _verify_bundle(path: Path, public_key_file: Path, expected_origin: str | None) -> int:
    report = verify_bundle(
        path.read_bytes(), read_public_key_file(public_key_file), expected_origin=expected_origin
    )
    if report.ok:
        print(
            f"OK: {report.origin}: {report.entries} entries proven in tree size {report.tree_size}, "
            "signature verifies"
        )
        return 0
    where = f"first bad entry: {report.first_bad}: " if report.first_bad is not None else ""
    print(f"FAILED: {report.origin}: {where}{report.problem}")
    return 1


def _public_key(args: argparse.Namespace) -> int:
    if args.signing_key_file:
        pem = public_key_pem(read_private_key_file(args.signing_key_file).public_key()).decode("ascii")
    else:
        with _client(args) as client:
            pem = client.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest(tenant=args.tenant)).public_key
    print(pem, end="")
    return 0


def _signed_head(message: audit_pb2.SignedTreeHead) -> SignedHead:
    """A signed head from its proto, with the timestamp in whole milliseconds as signed."""
    stamp = message.timestamp
    return SignedHead(
        head=TreeHead(
            origin=message.origin,
            size=message.tree_size,
            root_hash=message.root_hash,
            timestamp_ms=stamp.seconds * 1000 + stamp.nanos // _NANOS_PER_MS,
        ),
        key_id=message.key_id,
        signature=message.signature,
    )


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    yield from tqdm(handle, unit="line", file=sys.stderr, disable=None)

"""The ``idverify`` command: ``serve``, ``clients``, ``geo``, ``audit``, ``keys``, ``backup``...

``serve`` flags fall back to ``IDVERIFY_*`` environment variables and then to the config file.
Admin commands talk to a running server over gRPC with an admin token: ``--token``, else
``IDVERIFY_TOKEN``, else the bootstrap token file in the data directory. The one exception,
``clients create --role operator --break-glass``, writes to the store directly on the server's
host (``idverify.security.break_glass``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc

from idverify.config import DEFAULT_DATA_DIR, DEFAULT_LISTEN, development_mode_refusals, load_settings
from idverify.domain.errors import ConfigError
from idverify.logs import configure_logging


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(
            Path(args.config) if args.config else None,
            overrides={
                "mode": "development" if args.dev else None,
                "listen": args.listen,
                "console.listen": args.console_listen,
                "data_dir": args.data_dir,
                "redis_url": args.redis_url,
                "workers": args.workers,
                "allow_readable_key_files": True if args.allow_readable_key_files else None,
            },
        )
    except ConfigError as exc:
        print(f"idverify: configuration error: {exc}", file=sys.stderr)
        return 2
    refusals = development_mode_refusals(settings)
    if refusals:
        print(
            f"idverify: configuration error: {'; '.join(refusals)}; production mode refuses this"
            " (set a real sms.sender, or --dev / IDVERIFY_MODE=development on a developer's machine)",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from idverify.supervisor import supervise  # noqa: PLC0415 - keep `idverify --help` fast

    return supervise(settings)


def _add_listen_flags(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--listen", default=None, help=f"HOST:PORT (IDVERIFY_LISTEN; default {DEFAULT_LISTEN})"
    )
    serve.add_argument(
        "--console-listen",
        default=None,
        help="HOST:PORT of the auditor's console (IDVERIFY_CONSOLE__LISTEN; default: the gRPC host, "
        "port 50052; on in --dev, else with console.enabled = on)",
    )


def _admin_client(args: argparse.Namespace) -> object:
    from idverify.client import Client  # noqa: PLC0415

    token = args.token or os.environ.get("IDVERIFY_TOKEN", "")
    if not token:
        path = (
            Path(args.data_dir or os.environ.get("IDVERIFY_DATA_DIR", str(DEFAULT_DATA_DIR)))
            / "bootstrap-token"
        )
        if path.exists():
            token = path.read_text(encoding="utf-8").strip()
    return Client(args.server, token)


def _break_glass(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from idverify.domain.errors import IdverifyError  # noqa: PLC0415
    from idverify.security.break_glass import create_operator  # noqa: PLC0415

    if args.role != "operator":
        print("idverify: --break-glass creates operators only (--role operator)", file=sys.stderr)
        return 2
    try:
        settings = load_settings(
            Path(args.config) if args.config else None,
            overrides={"data_dir": args.data_dir, "redis_url": args.redis_url},
        )
        record, token = asyncio.run(create_operator(settings, args.tenant, args.description))
    except ConfigError as exc:
        print(f"idverify: configuration error: {exc}", file=sys.stderr)
        return 2
    except (IdverifyError, RuntimeError, OSError) as exc:
        print(f"idverify: {exc}", file=sys.stderr)
        return 1
    print(f"client {record.client_id} ({record.tenant}/{record.role.value}), created by break-glass")
    print(f"token (shown once): {token}")
    return 0


def _clients(args: argparse.Namespace) -> int:
    from idverify.v1 import admin_pb2  # noqa: PLC0415

    if args.clients_command == "create" and args.break_glass:
        return _break_glass(args)
    client = _admin_client(args)
    try:
        if args.clients_command == "create":
            created = client.admin.CreateClient(  # type: ignore[attr-defined]
                admin_pb2.CreateClientRequest(
                    tenant=args.tenant, role=args.role, description=args.description
                )
            )
            print(f"client {created.client.client_id} ({created.client.tenant}/{created.client.role})")
            print(f"token (shown once): {created.token}")
        elif args.clients_command == "list":
            listed = client.admin.ListClients(admin_pb2.ListClientsRequest(tenant=args.tenant))  # type: ignore[attr-defined]
            for item in listed.clients:
                state = "revoked" if item.revoked else "active"
                print(f"{item.client_id}\t{item.tenant}\t{item.role}\t{state}\t{item.description}")
        else:
            revoked = client.admin.RevokeClient(admin_pb2.RevokeClientRequest(client_id=args.client_id))  # type: ignore[attr-defined]
            print(f"revoked {revoked.client.client_id}")
    except grpc.RpcError as exc:
        print(f"idverify: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


def _health(args: argparse.Namespace) -> int:
    from idverify.health_probe import ProbeTarget, check  # noqa: PLC0415

    try:
        status = check(
            ProbeTarget(
                server=args.server,
                service=args.service,
                tls_ca=args.tls_ca,
                tls_server_name=args.tls_server_name,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                timeout=args.timeout,
            )
        )
    except OSError as exc:
        print(f"idverify: {exc}", file=sys.stderr)
        return 1
    print(status)
    return 0 if status == "SERVING" else 1


def _add_health_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = commands.add_parser("health", help="exit 0 when a server's gRPC health is SERVING (probes)")
    health.add_argument("--server", default=os.environ.get("IDVERIFY_SERVER", DEFAULT_LISTEN))
    health.add_argument("--service", default="", help="a service name; empty for the whole server")
    health.add_argument("--tls-ca", default="", help="CA bundle: connect with TLS and verify with it")
    health.add_argument("--tls-server-name", default="", help="name the server certificate must carry")
    health.add_argument("--tls-cert", default="", help="client certificate (mutual TLS)")
    health.add_argument("--tls-key", default="", help="client certificate's key")
    health.add_argument("--timeout", type=float, default=2.0)
    health.set_defaults(handler=_health)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``idverify`` command."""
    parser = argparse.ArgumentParser(prog="idverify", description="Real-name identity verification service")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC server")
    _add_listen_flags(serve)
    serve.add_argument("--data-dir", default=None, help=f"IDVERIFY_DATA_DIR (default ./{DEFAULT_DATA_DIR})")
    serve.add_argument("--config", default=None, help="TOML file (IDVERIFY_CONFIG)")
    serve.add_argument(
        "--redis-url",
        default=None,
        help="redis://, rediss://, redis+cluster://h:p,... or redis+sentinel://h:p,.../service; "
        "empty for embedded (IDVERIFY_REDIS_URL)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing the port (IDVERIFY_WORKERS; default: one per available core)",
    )
    serve.add_argument(
        "--allow-readable-key-files",
        action="store_true",
        help="start although the keyring or audit signing key file is readable by other users "
        "(with a warning; IDVERIFY_ALLOW_READABLE_KEY_FILES)",
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development mode: allows the console SMS sender (codes in the log) and plain HTTP "
        "to gateways; never in production (IDVERIFY_MODE=development)",
    )
    serve.set_defaults(handler=_serve)

    clients = commands.add_parser("clients", help="manage API clients (tokens) of a running server")
    clients.add_argument("--server", default=os.environ.get("IDVERIFY_SERVER", DEFAULT_LISTEN))
    clients.add_argument("--token", default="", help="admin token (IDVERIFY_TOKEN, else the bootstrap file)")
    clients.add_argument("--data-dir", default=None, help="where the bootstrap token file is")
    client_commands = clients.add_subparsers(dest="clients_command", required=True)
    create = client_commands.add_parser("create", help="create a client and print its token once")
    create.add_argument("--tenant", default="default")
    create.add_argument(
        "--role", required=True, choices=["registrar", "platform", "auditor", "admin", "operator"]
    )
    create.add_argument("--description", default="")
    create.add_argument(
        "--break-glass",
        action="store_true",
        help="create an operator in the store directly, on the server's host, without a token "
        "(uses --data-dir, --config, --redis-url like `idverify serve`; audited)",
    )
    create.add_argument("--config", default=None, help="with --break-glass: TOML file (IDVERIFY_CONFIG)")
    create.add_argument("--redis-url", default=None, help="with --break-glass: IDVERIFY_REDIS_URL")
    listing = client_commands.add_parser("list", help="list clients")
    listing.add_argument("--tenant", default="")
    revoke = client_commands.add_parser("revoke", help="revoke a client's token")
    revoke.add_argument("client_id")
    clients.set_defaults(handler=_clients)

    _add_health_command(commands)

    from idverify.geo.commands import add_geo_commands  # noqa: PLC0415

    add_geo_commands(commands)
    from idverify.vendors.cli import add_vendor_commands  # noqa: PLC0415 - keep `idverify --help` fast

    add_vendor_commands(commands)
    from idverify.audit.commands import add_audit_commands  # noqa: PLC0415

    add_audit_commands(commands)
    from idverify.lifecycle_commands import add_lifecycle_commands  # noqa: PLC0415

    add_lifecycle_commands(commands)
    from idverify.tenant_commands import add_tenant_commands  # noqa: PLC0415

    add_tenant_commands(commands)
    from idverify.backup.commands import add_backup_commands  # noqa: PLC0415

    add_backup_commands(commands)
    from idverify.incident_commands import add_incident_commands  # noqa: PLC0415

    add_incident_commands(commands)
    from idverify.display_name_commands import add_display_name_commands  # noqa: PLC0415

    add_display_name_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``idverify`` command."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())

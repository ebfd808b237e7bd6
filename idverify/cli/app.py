"""The ``idverify`` command: ``serve``, ``clients``, ``geo``, ``audit``, ``keys``, ``backup``...

``serve`` flags fall back to ``IDVERIFY_*`` environment variables and then to the config file.
Admin commands talk to a running server over gRPC (``idverify.cli.client_options``: address, TLS)
with an admin token: ``--token``, else ``IDVERIFY_TOKEN``, else the bootstrap token file in the
data directory. The one exception, ``clients create --role operator --break-glass``, writes to
the store directly on the server's host (``idverify.security.break_glass``).

A command's options are accepted before or after its subcommand (``clients --server X list`` and
``clients list --server X``): ``build_parser`` hands every group's options down to its
subcommands. The modules of the other commands are imported only when their command runs, so
``idverify --version`` and ``idverify geo lookup`` do not pay for Redis, gRPC and the audit code.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import sys
from collections.abc import Callable, Sequence
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from idverify.domain.errors import ConfigError

if TYPE_CHECKING:
    from idverify.config import Settings
    from idverify.security.clients import ClientRecord

#: Every command: name -> (module, function that adds it, its help). Only the module of the
#: command that runs is imported; ``idverify --help`` shows the others' help from here (a test
#: keeps it the one they register).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("idverify.cli.app", "add_serve", "run the gRPC server"),
    "clients": ("idverify.cli.app", "add_clients", "manage API clients (tokens) of a running server"),
    "health": (
        "idverify.cli.app",
        "add_health",
        "exit 0 when a server's gRPC health is SERVING (probes)",
    ),
    "geo": (
        "idverify.cli.geo",
        "add_geo_commands",
        "look up IP locations and inspect the IP database",
    ),
    "vendors": (
        "idverify.cli.vendors",
        "add_vendor_commands",
        "identity vendors (Tencent Cloud, Alibaba Cloud, HTTP gateways)",
    ),
    "audit": (
        "idverify.cli.audit",
        "add_audit_commands",
        "export, verify and check the tamper-evident audit log",
    ),
    "keys": (
        "idverify.cli.lifecycle",
        "add_lifecycle_commands",
        "rotate wrapping keys and peppers; re-seal stored records",
    ),
    "erasure": (
        "idverify.cli.lifecycle",
        "add_lifecycle_commands",
        "the erasure queue of cancelled accounts",
    ),
    "tenants": (
        "idverify.cli.tenants",
        "add_tenant_commands",
        "remove a tenant that leaves (on the server's host)",
    ),
    "migrate": (
        "idverify.cli.migrate",
        "add_migrate_commands",
        (
            "move an existing deployment's audit logs into tiles, or older servers' leftovers into "
            "this release's form, online (on the server's host)"
        ),
    ),
    "buckets": (
        "idverify.cli.buckets",
        "add_bucket_commands",
        "a tenant's bucket layout and its spread over a Cluster",
    ),
    "backup": (
        "idverify.cli.backup",
        "add_backup_commands",
        "back up, verify and restore a data directory",
    ),
    "incident": (
        "idverify.cli.incidents",
        "add_incident_commands",
        "data-security incident reports: make one, check one",
    ),
    "display-names": (
        "idverify.cli.display_names",
        "add_display_name_commands",
        "approved short names and brands of organization accounts (admin token)",
    ),
    "webhooks": (
        "idverify.cli.webhooks",
        "add_webhook_commands",
        "webhook subscriptions of a tenant (admin token)",
    ),
    "events": (
        "idverify.cli.webhooks",
        "add_event_commands",
        "events for platforms: replay a webhook subscription",
    ),
}


class _Parser(argparse.ArgumentParser):
    """Says what is wrong in one line, naming where the help is, instead of usage and error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """``--version``: the installed package's version, looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **_: Any) -> None:
        super().__init__(
            option_strings, dest, default=argparse.SUPPRESS, nargs=0, help="print the version and exit"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        try:
            print(f"idverify {version('idverify')}")
        except PackageNotFoundError:
            parser.exit(1, "idverify: not installed (no package metadata), so no version to print\n")
        parser.exit()


def _serve(args: argparse.Namespace) -> int:
    from idverify.config import development_mode_refusals, load_settings  # noqa: PLC0415
    from idverify.observability.logs import configure_logging  # noqa: PLC0415

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


async def _create_operator(settings: Settings, tenant: str, description: str) -> tuple[ClientRecord, str]:
    """A break-glass operator, created over the store the server's keyring is checked against.

    Raises:
        ConfigError: no idverify data in the data directory, or a keyring that does not open it.
        RuntimeError: a server holds the data directory and its Redis does not answer.
        InvalidArgument: a bad tenant name or description.
        StoreUnavailable: Redis cannot be reached.
    """
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415 - keeps `idverify --help` fast
    from idverify.flows.key_check import open_keyring  # noqa: PLC0415
    from idverify.security.break_glass import create_operator  # noqa: PLC0415
    from idverify.security.clients import ClientRegistry  # noqa: PLC0415
    from idverify.store.clients import RedisClientStore  # noqa: PLC0415
    from idverify.store.key_checks import RedisKeyChecks  # noqa: PLC0415

    async with open_store(settings) as redis:
        keyring = await open_keyring(settings, RedisKeyChecks(redis))
        return await create_operator(ClientRegistry(RedisClientStore(redis), keyring), tenant, description)


def _break_glass(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from idverify.config import load_settings  # noqa: PLC0415
    from idverify.domain.errors import IdverifyError  # noqa: PLC0415

    if args.role != "operator":
        print("idverify: --break-glass creates operators only (--role operator)", file=sys.stderr)
        return 2
    try:
        settings = load_settings(
            Path(args.config) if args.config else None,
            overrides={"data_dir": args.data_dir, "redis_url": args.redis_url},
        )
        record, token = asyncio.run(_create_operator(settings, args.tenant, args.description))
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
    import grpc  # noqa: PLC0415 - keeps `idverify --help` fast

    from idverify.cli.client_options import admin_token, open_client  # noqa: PLC0415
    from idverify.v1 import admin_pb2  # noqa: PLC0415

    if args.clients_command == "create" and args.break_glass:
        return _break_glass(args)
    try:
        client = open_client(args, admin_token(args))
    except ConfigError as exc:
        print(f"idverify: {exc}", file=sys.stderr)
        return 2
    try:
        with client:
            if args.clients_command == "create":
                created = client.admin.CreateClient(
                    admin_pb2.CreateClientRequest(
                        tenant=args.tenant, role=args.role, description=args.description
                    )
                )
                print(f"client {created.client.client_id} ({created.client.tenant}/{created.client.role})")
                print(f"token (shown once): {created.token}")
            elif args.clients_command == "list":
                listed = client.admin.ListClients(admin_pb2.ListClientsRequest(tenant=args.tenant))
                print(_client_table(listed.clients))
            else:
                revoked = client.admin.RevokeClient(admin_pb2.RevokeClientRequest(client_id=args.client_id))
                print(f"revoked {revoked.client.client_id}")
    except grpc.RpcError as exc:
        print(f"idverify: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


_CLIENT_COLUMNS = ("CLIENT ID", "TENANT", "ROLE", "STATE", "CREATED (UTC)", "DESCRIPTION")


def _client_table(clients: Sequence[Any]) -> str:
    """``clients list``: a header, then one aligned row per client, oldest first."""
    rows: list[tuple[str, ...]] = [_CLIENT_COLUMNS]
    for item in sorted(clients, key=lambda item: (item.created_at.seconds, item.created_at.nanos)):
        created = (
            item.created_at.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")
            if item.HasField("created_at")
            else "-"
        )
        state = "revoked" if item.revoked else "active"
        cells = (item.client_id, item.tenant, item.role, state, created, item.description)
        rows.append(tuple(_printable(cell) for cell in cells))
    widths = [max(len(row[column]) for row in rows) for column in range(len(_CLIENT_COLUMNS) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    )


def _printable(text: str) -> str:
    """Text as one line a terminal shows as it is: what a server sent is not trusted to be."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _health(args: argparse.Namespace) -> int:
    from idverify.cli.health_probe import ProbeTarget, check  # noqa: PLC0415

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``idverify`` command.

    Args:
        command: the command about to run: only its module is imported, the other commands
            of ``COMMANDS`` are listed by name and help. None: every command, complete.
    """
    parser = _Parser(prog="idverify", description="Real-name identity verification service")
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str) -> None:
        module, function, _ = COMMANDS[name]
        adder: Callable[[Any], None] = getattr(importlib.import_module(module), function)
        adder(commands)

    if command in COMMANDS:
        add(command)  # first: it may add other commands of its module too (keys and erasure)
    for name, (_, _, help_text) in COMMANDS.items():
        if name in commands.choices:
            continue  # added with another command of its module
        if command is None:
            add(name)
        else:
            commands.add_parser(name, help=help_text, add_help=False)
    _hand_options_down(parser)
    return parser


def add_serve(commands: argparse._SubParsersAction[Any]) -> None:
    """Adds ``serve``."""
    from idverify.config import DEFAULT_DATA_DIR, DEFAULT_LISTEN  # noqa: PLC0415

    serve = commands.add_parser("serve", help="run the gRPC server")
    serve.add_argument(
        "--listen", default=None, help=f"HOST:PORT (IDVERIFY_LISTEN; default {DEFAULT_LISTEN})"
    )
    serve.add_argument(
        "--console-listen",
        default=None,
        help="HOST:PORT of the auditor's console (IDVERIFY_CONSOLE__LISTEN; default: the gRPC host, "
        "port 50052; on in --dev, else with console.enabled = on)",
    )
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
        help="worker processes sharing the port (IDVERIFY_WORKERS); 0 or unset: one per available "
        "core (a CPU quota counted)",
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


def add_clients(commands: argparse._SubParsersAction[Any]) -> None:
    """Adds ``clients`` and its subcommands."""
    from idverify.cli.client_options import add_client_options  # noqa: PLC0415
    from idverify.config import DEFAULT_DATA_DIR  # noqa: PLC0415

    clients = commands.add_parser("clients", help="manage API clients (tokens) of a running server")
    add_client_options(clients)
    clients.add_argument(
        "--token",
        default="",
        help="admin token (IDVERIFY_TOKEN; default: the bootstrap token file in the data directory)",
    )
    clients.add_argument(
        "--data-dir",
        default=None,
        help=f"the server's data directory, where the bootstrap token file is "
        f"(IDVERIFY_DATA_DIR; default ./{DEFAULT_DATA_DIR})",
    )
    client_commands = clients.add_subparsers(dest="clients_command", required=True, metavar="COMMAND")
    create = client_commands.add_parser("create", help="create a client and print its token once")
    create.add_argument("--tenant", default="default", help="the client's tenant (default: default)")
    create.add_argument(
        "--role",
        required=True,
        choices=["registrar", "platform", "auditor", "admin", "operator"],
        help="what the client may do (docs: README, roles)",
    )
    create.add_argument("--description", default="", help="a note for people: who holds the token")
    create.add_argument(
        "--break-glass",
        action="store_true",
        help="create an operator in the store directly, on the server's host, without a token "
        "(uses --data-dir, --config, --redis-url like `idverify serve`; audited)",
    )
    create.add_argument("--config", default=None, help="with --break-glass: TOML file (IDVERIFY_CONFIG)")
    create.add_argument("--redis-url", default=None, help="with --break-glass: IDVERIFY_REDIS_URL")
    listing = client_commands.add_parser("list", help="list clients, with a header and creation times")
    listing.add_argument("--tenant", default="", help="only this tenant's clients (default: every one)")
    revoke = client_commands.add_parser("revoke", help="revoke a client's token")
    revoke.add_argument("client_id", help="the client's id, as `clients list` shows it")
    clients.set_defaults(handler=_clients)


def add_health(commands: argparse._SubParsersAction[Any]) -> None:
    """Adds ``health``."""
    from idverify.cli.client_options import add_client_options  # noqa: PLC0415

    health = commands.add_parser("health", help="exit 0 when a server's gRPC health is SERVING (probes)")
    add_client_options(health)
    health.add_argument("--service", default="", help="a service name; empty for the whole server")
    health.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for the answer (default 2)"
    )
    health.set_defaults(handler=_health)


def _hand_options_down(parser: argparse.ArgumentParser) -> None:
    """Accepts a group's options after its subcommands too (``clients list --server X``).

    Each subcommand gets a copy of every option of its group that it does not define itself,
    with no default: given after the subcommand it wins, left out the group's value stays.
    """
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]  # noqa: SLF001
    if not groups:
        return
    options = [
        action
        for action in parser._actions  # noqa: SLF001
        if action.option_strings and not isinstance(action, argparse._HelpAction | _Version)  # noqa: SLF001
    ]
    for group in groups:
        for child in dict.fromkeys(group.choices.values()):
            own = child._option_string_actions  # noqa: SLF001
            for option in options:
                if any(string in own for string in option.option_strings):
                    continue
                inherited = copy.copy(option)
                inherited.default = argparse.SUPPRESS
                inherited.required = False
                child._add_action(inherited)  # noqa: SLF001
            _hand_options_down(child)


def _command_in(arguments: Sequence[str]) -> str | None:
    """The command named in ``arguments``: the first word that is not an option."""
    return next((word for word in arguments if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``idverify`` command."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(arguments)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(arguments)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())

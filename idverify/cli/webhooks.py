"""``idverify webhooks ...`` and ``idverify events replay``: a tenant's webhook subscriptions.

They ask a running server (``AdminService``'s webhook calls, an admin's token: ``--token``, else
``IDVERIFY_TOKEN``). A secret is printed once, when made or rotated; nothing stores it here.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc

from idverify.cli.client_options import add_client_options, open_client
from idverify.domain.errors import ConfigError

__all__ = ["add_event_commands", "add_webhook_commands"]

_CURSOR = re.compile(r"\d{1,20}-\d{1,20}")


def _common(parser: argparse.ArgumentParser) -> None:
    add_client_options(parser)
    parser.add_argument("--token", default="", help="an admin's token (IDVERIFY_TOKEN)")
    parser.add_argument("--tenant", default="", help="the admin's own tenant (the default)")


def add_webhook_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``webhooks`` and its subcommands to the ``idverify`` parser."""
    webhooks = commands.add_parser("webhooks", help="webhook subscriptions of a tenant (admin token)")
    sub = webhooks.add_subparsers(dest="webhooks_command", required=True)
    create = sub.add_parser("create", help="subscribe a URL; prints its secret once")
    create.add_argument("url", help="https:// URL of the receiver")
    create.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        metavar="TYPE",
        help="an event type (repeat; none: all)",
    )
    create.add_argument(
        "--timeout", type=int, default=0, metavar="SECONDS", help="wait for an answer (max 30)"
    )
    create.add_argument(
        "--concurrency",
        type=int,
        default=0,
        metavar="N",
        help="deliveries in flight at once (max 16; one account's events stay in order)",
    )
    create.add_argument(
        "--from-oldest", action="store_true", help="deliver the events still kept too, not only new ones"
    )
    _common(create)
    listing = sub.add_parser("list", help="the subscriptions and their state (never secrets)")
    _common(listing)
    for action, text in (
        ("enable", "deliver again (a failing subscription retries from its cursor)"),
        ("disable", "stop delivering; events wait while the outbox keeps them"),
        ("rotate-secret", "a new secret, printed once; the old one stops signing at once"),
        ("delete", "delete the subscription"),
    ):
        command = sub.add_parser(action, help=text)
        command.add_argument("webhook_id", help="the subscription's id (webhooks list)")
        _common(command)
    webhooks.set_defaults(handler=_run_webhooks)


def add_event_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``events replay`` to the ``idverify`` parser."""
    events = commands.add_parser("events", help="events for platforms: replay a webhook subscription")
    sub = events.add_subparsers(dest="events_command", required=True)
    replay = sub.add_parser("replay", help="deliver a subscription's events again from a cursor or a time")
    replay.add_argument("--subscription", required=True, metavar="ID", help="the webhook subscription's id")
    replay.add_argument(
        "--since",
        required=True,
        metavar="CURSOR|TIME",
        help="an event cursor (its successors are delivered) or an ISO 8601 time (events from then on)",
    )
    _common(replay)
    events.set_defaults(handler=_run_replay)


def _token(args: argparse.Namespace) -> str:
    return str(args.token or os.environ.get("IDVERIFY_TOKEN", ""))


def _call(args: argparse.Namespace, call: Callable[[Any], Any]) -> int:
    token = _token(args)
    if not token:
        sys.stderr.write("idverify: --token: an admin's token is needed (--token or IDVERIFY_TOKEN)\n")
        return 2
    try:
        client = open_client(args, token)
    except ConfigError as error:
        sys.stderr.write(f"idverify: {error}\n")
        return 2
    try:
        with client:
            call(client)
    except grpc.RpcError as error:
        sys.stderr.write(f"idverify: {error.code().name}: {error.details()}\n")
        return 1
    return 0


def _row(webhook: Any) -> str:
    types = ",".join(webhook.event_types) or "all"
    error = f" ({webhook.last_error})" if webhook.last_error else ""
    return f"{webhook.webhook_id}\t{webhook.state}{error}\t{types}\t{webhook.cursor or '-'}\t{webhook.url}"


def _out(text: str) -> None:
    # A URL is the tenant's own text: no terminal control characters from it reach the screen.
    sys.stdout.write("".join(c if c.isprintable() or c == "\t" else "?" for c in text) + "\n")


def _run_webhooks(args: argparse.Namespace) -> int:
    from idverify.v1 import admin_pb2  # noqa: PLC0415 - keeps `idverify --help` fast

    command = args.webhooks_command

    def run(client: Any) -> None:
        if command == "create":
            request = admin_pb2.CreateWebhookRequest(
                tenant=args.tenant,
                url=args.url,
                event_types=args.types,
                timeout_seconds=max(args.timeout, 0),
                from_oldest=args.from_oldest,
                concurrency=max(args.concurrency, 0),
            )
            created = client.admin.CreateWebhook(request)
            _out(f"webhook {created.webhook.webhook_id} created for {created.webhook.url}")
            _out(f"secret (shown once; the receiver verifies with it): {created.secret}")
        elif command == "list":
            answer = client.admin.ListWebhooks(admin_pb2.ListWebhooksRequest(tenant=args.tenant))
            _out("id\tstate\ttypes\tcursor\turl")
            for webhook in answer.webhooks:
                _out(_row(webhook))
        elif command == "delete":
            client.admin.DeleteWebhook(
                admin_pb2.DeleteWebhookRequest(tenant=args.tenant, webhook_id=args.webhook_id)
            )
            _out(f"webhook {args.webhook_id} deleted")
        else:
            action = command.replace("-", "_")
            update = admin_pb2.UpdateWebhookRequest(
                tenant=args.tenant, webhook_id=args.webhook_id, action=action
            )
            updated = client.admin.UpdateWebhook(update)
            _out(_row(updated.webhook))
            if updated.secret:
                _out(f"new secret (shown once): {updated.secret}")

    return _call(args, run)


def _run_replay(args: argparse.Namespace) -> int:
    from google.protobuf.timestamp_pb2 import Timestamp  # noqa: PLC0415

    from idverify.v1 import admin_pb2  # noqa: PLC0415

    request = admin_pb2.ReplayWebhookRequest(tenant=args.tenant, webhook_id=args.subscription)
    if _CURSOR.fullmatch(args.since):
        request.after = args.since
    else:
        try:
            when = datetime.fromisoformat(args.since)
        except ValueError:
            sys.stderr.write(
                f"idverify: --since: {args.since[:64]!r} is neither a cursor nor an ISO 8601 time\n"
            )
            return 2
        stamp = Timestamp()
        stamp.FromDatetime(when if when.tzinfo else when.replace(tzinfo=UTC))
        request.since.CopyFrom(stamp)

    def run(client: Any) -> None:
        replayed = client.admin.ReplayWebhook(request)
        _out(f"webhook {args.subscription}: delivering again after cursor {replayed.webhook.cursor}")

    return _call(args, run)

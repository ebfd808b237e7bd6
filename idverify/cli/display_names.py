"""``idverify display-names approve``: the short names and brands a tenant approves for an organization.

It asks a running server (``AdminService.SetApprovedNames``, an admin's token: ``--token``, else
``IDVERIFY_TOKEN``); the names given replace those approved before, and none clears them.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc

from idverify.cli.client_options import add_client_options, open_client
from idverify.domain.errors import ConfigError

__all__ = ["add_display_name_commands"]


def add_display_name_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``display-names`` and its subcommand to the ``idverify`` parser."""
    display_names = commands.add_parser(
        "display-names", help="approved short names and brands of organization accounts (admin token)"
    )
    sub = display_names.add_subparsers(dest="display_names_command", required=True)
    approve = sub.add_parser(
        "approve", help="set the names approved for an organization account (replaces; none clears)"
    )
    approve.add_argument("account_id", help="the organization's account id")
    approve.add_argument("names", nargs="*", metavar="NAME", help="a short name or brand (up to 16)")
    add_client_options(approve)
    approve.add_argument("--token", default="", help="an admin's token (IDVERIFY_TOKEN)")
    approve.add_argument(
        "--tenant", default="", help="the admin's own tenant (the default; another is refused)"
    )
    display_names.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from idverify.v1 import admin_pb2  # noqa: PLC0415 - keeps `idverify --help` fast

    token = args.token or os.environ.get("IDVERIFY_TOKEN", "")
    if not token:
        sys.stderr.write("idverify: --token: an admin's token is needed (--token or IDVERIFY_TOKEN)\n")
        return 2
    request = admin_pb2.SetApprovedNamesRequest(
        tenant=args.tenant, account_id=args.account_id, names=args.names
    )
    try:
        client = open_client(args, token)
    except ConfigError as error:
        sys.stderr.write(f"idverify: {error}\n")
        return 2
    try:
        with client:
            answer = client.admin.SetApprovedNames(request)
    except grpc.RpcError as error:
        sys.stderr.write(f"idverify: {error.code().name}: {error.details()}\n")
        return 1
    sys.stdout.write(f"{answer.approved_count} name(s) approved for {args.account_id}\n")
    return 0

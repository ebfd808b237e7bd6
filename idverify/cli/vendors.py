# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""``idverify vendors check``: confirm each configured vendor's credentials and reachability.

Each vendor gets one harmless authenticated call (a result query for a flow that never existed:
not billed, and any answer but an authentication error proves the keys), or with ``--dry-run``
a signed request that is printed instead of sent. Exit status 0 when every vendor checked is
fine, 1 otherwise, 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from idverify.config import load_settings
from idverify.domain.errors import ConfigError
from idverify.vendors.registry import VendorRegistry

__all__ = ["add_vendor_commands", "run_check"]


def add_vendor_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``vendors check`` under the ``idverify`` command's subcommands."""
    vendors = commands.add_parser(
        "vendors", help="identity vendors (Tencent Cloud, Alibaba Cloud, HTTP gateways)"
    )
    actions = vendors.add_subparsers(dest="vendors_command", required=True)
    check = actions.add_parser("check", help="one harmless authenticated call per configured vendor")
    check.add_argument("--config", default=None, help="TOML file (IDVERIFY_CONFIG)")
    check.add_argument("--vendor", action="append", default=[], help="check only this vendor (repeatable)")
    check.add_argument(
        "--dry-run", action="store_true", help="sign a request and print it instead of sending it"
    )
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Run ``vendors check`` and print one line per vendor (no secrets, no personal data)."""
    try:
        settings = load_settings(Path(args.config) if args.config else None)
        registry = VendorRegistry(settings.vendors)
        names = list(args.vendor) or registry.names
        if not names:
            print("idverify: no [vendors.*] table is configured", file=sys.stderr)
            return 2
        return asyncio.run(_check(registry, names, dry_run=bool(args.dry_run)))
    except ConfigError as exc:
        print(f"idverify: configuration error: {exc}", file=sys.stderr)
        return 2


async def _check(registry: VendorRegistry, names: list[str], *, dry_run: bool) -> int:
    failed = 0
    try:
        for name in names:
            vendor = registry.get(name)
            if dry_run:
                print(f"{name}: signed, not sent:\n{vendor.dry_run()}")
                continue
            started = time.monotonic()
            report = await vendor.probe()
            elapsed_ms = (time.monotonic() - started) * 1000
            code = f", vendor code {report.vendor_code}" if report.vendor_code else ""
            state = "ok" if report.ok else "FAILED"
            print(f"{name}: {state}: {report.detail} ({elapsed_ms:.0f} ms{code})")
            failed += not report.ok
    finally:
        await registry.aclose()
    return 1 if failed else 0

"""``idverify incident report`` and ``idverify incident verify``: a data-security incident report.

``report`` asks a running server (``AdminService.CreateIncidentReport``, an admin's token:
``--token``, else ``IDVERIFY_TOKEN``) and writes the signed JSON report and its Markdown into
``--out`` (with ``--html``, a self-contained HTML page too, rendered here from the signed
report). ``verify`` is offline: the report file and the audit log's public key, no server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from idverify.audit.checkpoint import KeyFormatError, read_public_key_file
from idverify.audit.incident_report import ReportFormatError, verify_report
from idverify.cli.client_options import add_client_options, open_client
from idverify.domain.errors import ConfigError

__all__ = ["add_incident_commands", "parse_time"]


def add_incident_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``incident`` and its subcommands to the ``idverify`` parser."""
    incident = commands.add_parser("incident", help="data-security incident reports: make one, check one")
    sub = incident.add_subparsers(dest="incident_command", required=True)
    report = sub.add_parser(
        "report",
        help="count what clients read (or what the tenant holds) and write a signed report (admin token)",
    )
    add_client_options(report)
    report.add_argument("--token", default="", help="an admin's token (IDVERIFY_TOKEN)")
    report.add_argument("--tenant", default="", help="the admin's own tenant (the default)")
    report.add_argument(
        "--principal",
        action="append",
        default=[],
        metavar="CLIENT_ID",
        help="a client whose reads are counted (repeat; default: every client that read)",
    )
    report.add_argument(
        "--since", required=True, help="window start, ISO 8601 with a zone (2026-12-06T08:00+08:00)"
    )
    report.add_argument("--until", required=True, help="window end (exclusive), ISO 8601 with a zone")
    report.add_argument(
        "--detected-at", required=True, help="when the incident was detected, ISO 8601 with a zone"
    )
    report.add_argument(
        "--critical-infrastructure",
        action="store_true",
        help="the operator runs critical information infrastructure (the shorter deadline)",
    )
    report.add_argument(
        "--store-breach",
        action="store_true",
        help="the store itself was exposed: the scale is everything the tenant holds",
    )
    report.add_argument("--out", default=".", help="directory for the report files (default: here)")
    report.add_argument(
        "--html",
        action="store_true",
        help="also write the report as one self-contained HTML page (.html beside the .md)",
    )
    verify = sub.add_parser("verify", help="check a report's signature offline (no server)")
    verify.add_argument("file", help="a report written by `idverify incident report`")
    verify.add_argument("--public-key", required=True, help="the audit log's Ed25519 public key (PEM file)")
    incident.set_defaults(handler=_run)


def parse_time(flag: str, text: str) -> Timestamp:
    """An ISO 8601 time with its zone, as a Timestamp.

    Raises:
        ValueError: a one-line reason naming the flag.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{flag}: not an ISO 8601 time: {text!r} (e.g. 2026-12-06T08:00+08:00)") from None
    if moment.tzinfo is None:
        raise ValueError(f"{flag}: give the time zone, e.g. {text}+08:00 or {text}Z")
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    if stamp.seconds <= 0:
        raise ValueError(f"{flag}: a time after 1970")
    return stamp


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(f"idverify: {text}\n")


def _run(args: argparse.Namespace) -> int:
    try:
        if args.incident_command == "verify":
            return _verify(Path(args.file), Path(args.public_key))
        return _report(args)
    except grpc.RpcError as error:
        _err(f"{error.code().name}: {error.details()}")
    except (OSError, KeyFormatError, ReportFormatError) as error:
        _err(str(error))
    except (ValueError, ConfigError) as error:  # bad flags: one line, as argparse's own
        _err(str(error))
        return 2
    return 1


def _report(args: argparse.Namespace) -> int:
    from idverify.v1 import admin_pb2  # noqa: PLC0415 - keeps `idverify --help` fast

    request = admin_pb2.CreateIncidentReportRequest(
        tenant=args.tenant,
        principals=args.principal,
        since=parse_time("--since", args.since),
        until=parse_time("--until", args.until),
        detected_at=parse_time("--detected-at", args.detected_at),
        critical_infrastructure=args.critical_infrastructure,
        store_breach=args.store_breach,
    )
    token = args.token or os.environ.get("IDVERIFY_TOKEN", "")
    if not token:
        raise ValueError("--token: an admin's token is needed (--token or IDVERIFY_TOKEN)")
    out = Path(args.out)
    if not out.is_dir():
        raise ValueError(f"--out: {out} is not a directory")
    with open_client(args, token) as client:
        answer = client.admin.CreateIncidentReport(request, timeout=300)
    report = json.loads(answer.signed_report)["report"]
    stem = f"incident-{report['tenant']}-{report['generated_at'].replace(':', '').replace('.', '')}"
    (out / f"{stem}.json").write_bytes(answer.signed_report)
    (out / f"{stem}.md").write_text(answer.markdown, encoding="utf-8")
    readable = [out / f"{stem}.md"]
    if args.html:
        from idverify.audit.incident_html import render_html  # noqa: PLC0415 - only when asked

        readable.append(out / f"{stem}.html")
        readable[-1].write_text(render_html(report), encoding="utf-8")
    for line in _summary(report, out / f"{stem}.json", readable):
        _out(line)
    return 0


def _summary(report: dict[str, Any], json_path: Path, readable: Sequence[Path]) -> Sequence[str]:
    threshold, deadline = report["threshold"], report["deadline"]
    affected = threshold["affected"]
    return (
        (
            f"persons affected: {affected['estimate']:,} ({affected['low']:,} to {affected['high']:,}; "
            f"{threshold['basis']})"
        ),
        f"threshold of {threshold['people']:,} crossed: {threshold['state']}",
        f"report due: {deadline['due']} ({deadline['hours']} hours after detection)",
        f"signed report: {json_path}",
        *(f"for people (fill in the measures): {path}" for path in readable),
    )


def _verify(path: Path, public_key_file: Path) -> int:
    result = verify_report(path.read_bytes(), read_public_key_file(public_key_file))
    tenant = result.report.get("tenant", "?")
    if result.ok:
        generated = result.report.get("generated_at", "?")
        _out(f"OK: incident report of tenant {tenant}, generated {generated}, signed by key {result.key_id}")
        return 0
    _out(f"FAILED: incident report of tenant {tenant}: {result.problem}")
    return 1

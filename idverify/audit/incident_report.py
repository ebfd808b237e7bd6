"""A signed incident report: its canonical bytes, its signature, the offline check, its Markdown.

The report is a JSON object of strings, whole numbers, booleans, lists and objects (no floats,
so that parsing and writing it again gives the same bytes). The signature is Ed25519, with the
audit log's signing key, over a domain label and the report's canonical JSON (keys sorted, no
spaces, UTF-8): a signature over a tree head can never pass for one over a report, nor the
reverse. The file::

    {"format": "idverify-incident-report/1", "key_id": "<hex>", "report": {...},
     "signature": "<base64>"}

What the operator adds (measures taken and to be taken) goes into the Markdown rendering, never
into the signed file: the file states what the service counted, and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from idverify.audit.checkpoint import key_id_for

__all__ = [
    "CATEGORY_NAMES",
    "FORMAT",
    "ReportFormatError",
    "VerifiedReport",
    "canonical_json",
    "count_text",
    "render_markdown",
    "sign_report",
    "verify_report",
]

FORMAT = "idverify-incident-report/1"
_DOMAIN = b"idverify incident report v1\n"
_FILE_FIELDS = frozenset({"format", "key_id", "report", "signature"})


class ReportFormatError(ValueError):
    """The document is not a signed incident report (or not one this release can read)."""


@dataclass(frozen=True, slots=True)
class VerifiedReport:
    """The outcome of a check: ok and the report, or the problem found."""

    ok: bool
    report: Mapping[str, Any]
    key_id: str
    problem: str = ""


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: sorted keys, no spaces, UTF-8.

    Raises:
        ReportFormatError: the value holds a float (whose text is not one canonical form) or
            anything else JSON cannot carry exactly.
    """
    _refuse_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_report(report: Mapping[str, Any], private_key: Ed25519PrivateKey) -> bytes:
    """The signed report file (pretty-printed JSON: the signature covers the report's canonical form)."""
    signature = private_key.sign(_DOMAIN + canonical_json(report))
    document = {
        "format": FORMAT,
        "key_id": key_id_for(private_key.public_key()),
        "report": report,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def verify_report(document: bytes, public_key: Ed25519PublicKey) -> VerifiedReport:
    """Checks a report file's signature with the audit log's public key (given, never taken from the file).

    Raises:
        ReportFormatError: the document is not a signed incident report.
    """
    parsed = _parse(document)
    report, key_id = parsed["report"], parsed["key_id"]
    expected = key_id_for(public_key)
    if key_id != expected:
        return VerifiedReport(
            ok=False, report=report, key_id=key_id, problem=f"signed by key {key_id!r}, not {expected!r}"
        )
    try:
        signature = base64.b64decode(parsed["signature"], validate=True)
        public_key.verify(signature, _DOMAIN + canonical_json(report))
    except (binascii.Error, InvalidSignature):
        return VerifiedReport(
            ok=False, report=report, key_id=key_id, problem="the signature does not verify over the report"
        )
    return VerifiedReport(ok=True, report=report, key_id=key_id)


def _parse(document: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(document, object_pairs_hook=_no_duplicates, parse_float=_no_float)
    except (UnicodeDecodeError, ValueError) as error:
        raise ReportFormatError(f"not a signed incident report: {error}") from None
    if not isinstance(parsed, dict) or set(parsed) != _FILE_FIELDS:
        raise ReportFormatError(f"not a signed incident report: expected the fields {sorted(_FILE_FIELDS)}")
    if parsed["format"] != FORMAT:
        raise ReportFormatError(f"format {parsed['format']!r} is not {FORMAT!r}")
    if not isinstance(parsed["report"], dict):
        raise ReportFormatError("the report is not a JSON object")
    if not isinstance(parsed["key_id"], str) or not isinstance(parsed["signature"], str):
        raise ReportFormatError("key_id and signature are strings")
    return parsed


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values under one name: a reader could be shown the one the signature does not cover.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate field {key!r}")
        result[key] = value
    return result


def _no_float(text: str) -> float:
    raise ValueError(f"a fractional number ({text}) has no canonical form")


def _refuse_floats(value: object) -> None:
    if isinstance(value, float):
        raise ReportFormatError("reports hold whole numbers only")
    if isinstance(value, Mapping):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)


def count_text(value: Mapping[str, Any]) -> str:
    """One counted figure in words: exact, or the estimate with its bounds."""
    if value.get("exact"):
        return f"{value['estimate']:,} (exact)"
    return f"{value['estimate']:,} (between {value['low']:,} and {value['high']:,})"


CATEGORY_NAMES = {
    "verification": "verification status",
    "ip_location": "IP location",
    "consent": "consents",
    "audit": "audit entries",
}


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report for people: the items an incident report states, with the operator's to fill in."""
    incident, window, reads = report["incident"], report["window"], report["reads"]
    holdings, threshold, deadline = report["holdings"], report["threshold"], report["deadline"]
    log = report["audit_log"]
    principals = ", ".join(incident["principals"]) or "every client that read"
    lines = [
        f"# Data-security incident report: tenant {report['tenant']}",
        "",
        (
            f"Generated {report['generated_at']} by idverify; signed with the audit log's key "
            f"`{report['signing_key_id']}` (check with `idverify incident verify`). The counts are "
            "the service's; the sections marked *to be filled* are the operator's."
        ),
        "",
        "## What happened",
        "",
        f"- Kind: {incident['kind_description']}",
        f"- Clients concerned: {principals}",
        f"- Clients that read in the window: {', '.join(reads['clients_that_read']) or 'none'}",
        "- Description: *to be filled by the operator*",
        "",
        "## When",
        "",
        f"- Detected: {incident['detected_at']}",
        f"- Window asked: {window['since_requested']} to {window['until_requested']}",
        f"- Window counted: {window['since']} to {window['until']} ({window['note']})",
        "",
        "## Scale",
        "",
        f"Reads by the clients concerned ({reads['method']}; {reads['error_bound']}):",
        "",
        "| data category | accounts | persons (identities) |",
        "|---|---|---|",
    ]
    for category, counts in reads["by_category"].items():
        name = CATEGORY_NAMES.get(category, category)
        lines.append(f"| {name} | {count_text(counts['accounts'])} | {count_text(counts['identities'])} |")
    every = reads["all_categories"]
    lines += [
        f"| **any category** | {count_text(every['accounts'])} | {count_text(every['identities'])} |",
        "",
        f"Everything the tenant holds ({holdings['method']}):",
        "",
        f"- persons (identities): {holdings['identities']:,}",
        f"- accounts: {holdings['accounts']:,}, of which bound to a person: {holdings['bound_accounts']:,}",
    ]
    for category, count in holdings["by_category"].items():
        lines.append(f"- accounts with {CATEGORY_NAMES.get(category, category)} held: {count:,}")
    lines += ["", "Sealed values (encrypted; counted by record):", ""]
    lines += [f"- {item}: {count:,}" for item, count in holdings["sealed_values"].items()]
    lines += [
        "",
        "## Data categories",
        "",
        (
            "Verification status, IP location labels, consents and audit entries, as counted above. "
            "The service holds no name, document number, phone or birth date in the clear: they are "
            "keyed hashes or sealed values, readable only with the deployment's keys."
        ),
        "",
        "## Reporting threshold and deadline",
        "",
        (
            f"- Threshold: {threshold['people']:,} persons; affected: {count_text(threshold['affected'])} "
            f"({threshold['basis']})"
        ),
        f"- Threshold crossed: {threshold['state']}",
        f"- Report due: {deadline['due']} ({deadline['hours']} hours after detection; {deadline['basis']})",
        "",
        "## Measures taken",
        "",
        "*to be filled by the operator*",
        "",
        "## Measures to be taken",
        "",
        "*to be filled by the operator*",
        "",
        "## Evidence",
        "",
        (
            f"- Audit log {log['origin']} at size {log['tree_size']:,}, root {log['root_hash']}, "
            f"head signed at {log['signed_at']}"
        ),
        "",
    ]
    return "\n".join(lines)

"""An incident report as one self-contained HTML page, beside its Markdown.

The page holds the same items as ``render_markdown`` (what, when, scale, data categories,
threshold and deadline, evidence) and three text areas for the operator (description, measures
taken, measures to be taken), to fill in a browser before printing, or in an editor. It loads
nothing: the style is inline, there is no script, and its Content-Security-Policy forbids any
script, frame or fetch, so that even a value that slipped past escaping could not run or call
out. Every value from the report is escaped (``html.escape``, quotes included): a report is
signed data, but its strings (client ids, a tenant's name) came from callers.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

from idverify.audit.incident_report import CATEGORY_NAMES, count_text

__all__ = ["OPERATOR_FIELDS", "render_html"]

OPERATOR_FIELDS = ("description", "measures_taken", "measures_to_be_taken")
"""The names of the page's text areas, the operator's to fill in."""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'"
_STYLE = """
body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #111; }
table { border-collapse: collapse; }
th, td { border: 1px solid #999; padding: 0.25rem 0.5rem; text-align: left; }
textarea { width: 100%; min-height: 6rem; font: inherit; }
code { word-break: break-all; }
@media print { textarea { border: none; resize: none; } }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _items(rows: Iterable[str]) -> str:
    """A list of rows already made safe."""
    return "<ul>\n" + "".join(f"<li>{row}</li>\n" for row in rows) + "</ul>\n"


def _to_fill(name: str, label: str) -> str:
    return (
        f'<label for="{name}">{label}</label>\n'
        f'<textarea id="{name}" name="{name}" placeholder="to be filled by the operator"></textarea>\n'
    )


def _scale(reads: Mapping[str, Any], holdings: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(CATEGORY_NAMES.get(category, category))}</td>"
        f"<td>{_e(count_text(counts['accounts']))}</td><td>{_e(count_text(counts['identities']))}</td></tr>\n"
        for category, counts in reads["by_category"].items()
    )
    every = reads["all_categories"]
    rows += (
        f"<tr><th>any category</th><td>{_e(count_text(every['accounts']))}</td>"
        f"<td>{_e(count_text(every['identities']))}</td></tr>\n"
    )
    held = [
        f"persons (identities): {holdings['identities']:,}",
        f"accounts: {holdings['accounts']:,}, of which bound to a person: {holdings['bound_accounts']:,}",
        *(
            f"accounts with {CATEGORY_NAMES.get(category, category)} held: {count:,}"
            for category, count in holdings["by_category"].items()
        ),
    ]
    sealed = [f"{item}: {count:,}" for item, count in holdings["sealed_values"].items()]
    return (
        f"<p>Reads by the clients concerned ({_e(reads['method'])}; {_e(reads['error_bound'])}):</p>\n"
        '<table id="reads">\n<tr><th>data category</th><th>accounts</th><th>persons (identities)</th></tr>\n'
        f"{rows}</table>\n"
        f"<p>Everything the tenant holds ({_e(holdings['method'])}):</p>\n"
        + _items(_e(row) for row in held)
        + "<p>Sealed values (encrypted; counted by record):</p>\n"
        + _items(_e(row) for row in sealed)
    )


def render_html(report: Mapping[str, Any]) -> str:
    """The report for people, as one HTML page that loads nothing (see the module's docstring)."""
    incident, window, reads = report["incident"], report["window"], report["reads"]
    holdings, threshold, deadline = report["holdings"], report["threshold"], report["deadline"]
    log = report["audit_log"]
    principals = ", ".join(incident["principals"]) or "every client that read"
    title = f"Data-security incident report: tenant {report['tenant']}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n"
        f"<p>Generated {_e(report['generated_at'])} by idverify; signed with the audit log's key "
        f"<code>{_e(report['signing_key_id'])}</code> (check the JSON file with "
        "<code>idverify incident verify</code>). The counts are the service's; the text areas are "
        "the operator's.</p>\n"
        '<h2 id="what">What happened</h2>\n'
        + _items(
            [
                f"Kind: {_e(incident['kind_description'])}",
                f"Clients concerned: {_e(principals)}",
                f"Clients that read in the window: {_e(', '.join(reads['clients_that_read']) or 'none')}",
            ]
        )
        + _to_fill("description", "Description")
        + '<h2 id="when">When</h2>\n'
        + _items(
            [
                f"Detected: {_e(incident['detected_at'])}",
                f"Window asked: {_e(window['since_requested'])} to {_e(window['until_requested'])}",
                f"Window counted: {_e(window['since'])} to {_e(window['until'])} ({_e(window['note'])})",
            ]
        )
        + '<h2 id="scale">Scale</h2>\n'
        + _scale(reads, holdings)
        + '<h2 id="categories">Data categories</h2>\n'
        "<p>Verification status, IP location labels, consents and audit entries, as counted above. "
        "The service holds no name, document number, phone or birth date in the clear: they are "
        "keyed hashes or sealed values, readable only with the deployment's keys.</p>\n"
        '<h2 id="threshold">Reporting threshold and deadline</h2>\n'
        + _items(
            [
                (
                    f"Threshold: {threshold['people']:,} persons; affected: "
                    f"{_e(count_text(threshold['affected']))} ({_e(threshold['basis'])})"
                ),
                f"Threshold crossed: <strong>{_e(threshold['state'])}</strong>",
                (
                    f"Report due: <strong>{_e(deadline['due'])}</strong> ({_e(deadline['hours'])} hours "
                    f"after detection; {_e(deadline['basis'])})"
                ),
            ]
        )
        + '<h2 id="measures-taken">Measures taken</h2>\n'
        + _to_fill("measures_taken", "Measures taken")
        + '<h2 id="measures-to-be-taken">Measures to be taken</h2>\n'
        + _to_fill("measures_to_be_taken", "Measures to be taken")
        + '<h2 id="evidence">Evidence</h2>\n'
        + _items(
            [
                (
                    f"Audit log {_e(log['origin'])} at size {log['tree_size']:,}, root "
                    f"<code>{_e(log['root_hash'])}</code>, head signed at {_e(log['signed_at'])}"
                )
            ]
        )
        + "</body>\n</html>\n"
    )

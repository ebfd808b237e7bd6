"""The signed incident report file: it verifies with the log's key only, and any change fails it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.incident_report import (
    ReportFormatError,
    canonical_json,
    render_markdown,
    sign_report,
    verify_report,
)
from idverify.flows.incident import estimate

KEY = Ed25519PrivateKey.generate()


def report() -> dict[str, Any]:
    counted = estimate(1234, exact=False)
    none = estimate(0, exact=True)
    return {
        "tenant": "default",
        "generated_at": "2026-12-06T08:00:00.000Z",
        "signing_key_id": "00",
        "incident": {
            "kind": "reads",
            "kind_description": "reads by the clients concerned",
            "principals": ["abc123"],
            "detected_at": "2026-12-06T07:00:00.000Z",
            "critical_infrastructure": False,
        },
        "window": {
            "since_requested": "2026-12-06T01:30:00.000Z",
            "until_requested": "2026-12-06T03:10:00.000Z",
            "since": "2026-12-06T01:00:00.000Z",
            "until": "2026-12-06T04:00:00.000Z",
            "hours": 3,
            "note": "whole hours",
        },
        "reads": {
            "method": "HyperLogLog",
            "error_bound": "3 standard errors",
            "clients_that_read": ["abc123"],
            "by_category": {
                "verification": {"accounts": none, "identities": none},
                "ip_location": {"accounts": counted, "identities": counted},
            },
            "all_categories": {"accounts": counted, "identities": counted},
        },
        "holdings": {
            "method": "SCAN",
            "keys_scanned": 10,
            "identities": 3,
            "accounts": 4,
            "bound_accounts": 3,
            "verifications_in_progress": 0,
            "by_category": {"verification": 3, "ip_location": 1, "consent": 2, "audit": 4},
            "sealed_values": {"birth_date": 3},
        },
        "threshold": {
            "people": 1000,
            "affected": counted,
            "basis": "identities read",
            "crossed": True,
            "state": "yes",
        },
        "deadline": {"hours": "4", "basis": "[incident] report_hours", "due": "2026-12-06T11:00:00.000Z"},
        "audit_log": {
            "origin": "idverify/default",
            "tree_size": 7,
            "root_hash": "00" * 32,
            "signed_at": "2026-12-06T08:00:00.000Z",
            "key_id": "00",
        },
        "operator_fills": ["measures_taken", "measures_to_be_taken"],
    }


def test_a_signed_report_verifies_with_the_logs_key() -> None:
    result = verify_report(sign_report(report(), KEY), KEY.public_key())
    assert result.ok, result.problem
    assert result.report == report()


def test_another_key_fails() -> None:
    result = verify_report(sign_report(report(), KEY), Ed25519PrivateKey.generate().public_key())
    assert not result.ok
    assert "signed by key" in result.problem


def _changed(document: bytes, change: Any) -> bytes:
    parsed = json.loads(document)
    change(parsed)
    return json.dumps(parsed).encode()


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["report"]["reads"]["all_categories"]["identities"].update(estimate=99),
        lambda d: d["report"]["threshold"].update(crossed=False),
        lambda d: d["report"]["deadline"].update(due="2026-12-07T11:00:00.000Z"),
        lambda d: d["report"]["incident"]["principals"].append("other"),
        lambda d: d["report"].update(extra="added"),
        lambda d: d["report"].pop("holdings"),
        lambda d: d.update(signature=d["signature"][:-4] + "AAA="),
    ],
    ids=["count", "threshold", "deadline", "principals", "added-field", "removed-section", "signature"],
)
def test_any_change_fails(change: Any) -> None:
    result = verify_report(_changed(sign_report(report(), KEY), change), KEY.public_key())
    assert not result.ok


def test_layout_is_not_content() -> None:
    """Re-indenting or reordering fields is no tampering: the canonical form is what is signed."""
    parsed = json.loads(sign_report(report(), KEY))
    compact = json.dumps(parsed, sort_keys=False, separators=(",", ":")).encode()
    assert verify_report(compact, KEY.public_key()).ok


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[]",
        b'{"format": "idverify-incident-report/1"}',
        b'{"format": "other/1", "key_id": "", "report": {}, "signature": ""}',
        b'{"format": "idverify-incident-report/1", "key_id": "", "report": [], "signature": ""}',
        b'{"format": "idverify-incident-report/1", "key_id": "", "report": {"a": 1.5}, "signature": ""}',
        (
            b'{"format": "idverify-incident-report/1", "key_id": "", "report": {"a": 1, "a": 2},'
            b' "signature": ""}'
        ),
        b"\xff\xfe",
    ],
    ids=["text", "list", "no-fields", "format", "report-list", "float", "duplicate", "not-utf8"],
)
def test_what_is_not_a_report_is_refused_in_one_line(document: bytes) -> None:
    with pytest.raises(ReportFormatError) as refused:
        verify_report(document, KEY.public_key())
    assert "\n" not in str(refused.value)


def test_a_duplicate_field_cannot_show_a_reader_another_value() -> None:
    """Two values under one name: a reader might see the one the signature does not cover."""
    signed = sign_report(report(), KEY).decode()
    doubled = signed.replace('"tenant": "default"', '"tenant": "default", "tenant": "other"', 1)
    with pytest.raises(ReportFormatError, match="duplicate"):
        verify_report(doubled.encode(), KEY.public_key())


def test_floats_are_refused_when_signing() -> None:
    with pytest.raises(ReportFormatError):
        canonical_json({"a": 0.5})


def test_the_markdown_states_what_an_incident_report_must() -> None:
    text = render_markdown(report())
    for heading in (
        "## What happened",
        "## When",
        "## Scale",
        "## Data categories",
        "## Reporting threshold and deadline",
        "## Measures taken",
        "## Measures to be taken",
    ):
        assert heading in text
    assert text.count("*to be filled by the operator*") == 3
    assert "1,234 (between 1,204 and 1,264)" in text
    assert "0 (exact)" in text
    assert "2026-12-06T11:00:00.000Z" in text


def test_estimate_bounds_are_three_standard_errors() -> None:
    """Redis's HyperLogLog: 0.81 %; three of them is 2.43 % each side, rounded outwards."""
    assert estimate(100_000, exact=False) == {
        "estimate": 100_000,
        "low": 97_570,
        "high": 102_430,
        "exact": False,
    }
    assert estimate(0, exact=True) == {"estimate": 0, "low": 0, "high": 0, "exact": True}
    assert estimate(10, exact=False)["low"] == 9

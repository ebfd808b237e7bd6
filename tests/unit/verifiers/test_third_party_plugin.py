# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""A verifier from a separately installed distribution is discovered through its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from idverify.testing import install_offline

EXAMPLE_SOURCE = Path(__file__).resolve().parents[2] / "fixtures" / "example_verifier"

# Runs in a fresh interpreter so that the entry point comes from the installed metadata alone,
# not from anything this test process has imported or cached.
_SNIPPET = textwrap.dedent(
    """
    import asyncio, json
    from datetime import date
    from importlib.metadata import entry_points

    from idverify.domain.subjects import Subject, SubjectKind
    from idverify.verifiers.base import StepContext, VerifierDeps
    from idverify.verifiers.registry import build_verifier, load_verifier_factories

    class NoKeyed:
        def mac(self, tenant, purpose, data):
            raise AssertionError("not used")

    class NoSender:
        async def send_code(self, phone_e164, code, *, tenant, verification_id):
            raise AssertionError("not used")

    factories = load_verifier_factories(["example_kba"])
    deps = VerifierDeps(keyed=NoKeyed(), sms_sender=NoSender())
    verifier = build_verifier("example_kba", factories["example_kba"], {"known_names": ["Alice"]}, deps)

    def outcome(name):
        subject = Subject(kind=SubjectKind.PERSON, name=name, document_type=None, document_number="")
        context = StepContext("acme", "0" * 32, subject, None, date(2025, 6, 1))
        result = asyncio.run(verifier.check(context))
        return [result.outcome.value, result.reason]

    [entry_point] = entry_points(group="idverify.verifiers", name="example_kba")
    print(json.dumps({
        "distribution": entry_point.dist.name,
        "verifier": type(verifier).__module__ + "." + type(verifier).__qualname__,
        "known": outcome("Alice"),
        "unknown": outcome("Mallory"),
    }))
    """
)


@pytest.mark.slow
class TestThirdPartyPlugin:
    def test_installed_plugin_is_loaded_by_entry_point(self, tmp_path: Path) -> None:
        """pip-installing the example package is all it takes for the registry to build it."""
        site = tmp_path / "site"
        install_offline(EXAMPLE_SOURCE, site)
        env = {**os.environ, "PYTHONPATH": str(site)}
        run = subprocess.run(
            [sys.executable, "-W", "error", "-c", _SNIPPET],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == {
            "distribution": "idverify-example-verifier",
            "verifier": "idverify_example.ExampleVerifier",
            "known": ["pass", ""],
            "unknown": ["fail", "UNKNOWN_NAME"],
        }

    def test_plugin_is_absent_without_the_install(self) -> None:
        """The example is not visible to this process: discovery above came from the install."""
        assert "example_kba" not in entry_points(group="idverify.verifiers").names

"""The names ``import idverify`` offers a program, and what importing the package costs.

``__all__`` is the public surface: a name added to it or dropped from it is a change callers see,
so the list is written out here and a change to it must change this test too.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import idverify

REPO = Path(__file__).resolve().parents[2]
PUBLIC = {
    "Client": "idverify.client",
    "text_version_of": "idverify.domain.consent",
    "ConfigError": "idverify.domain.errors",
    "IdverifyError": "idverify.domain.errors",
    "Challenge": "idverify.verifiers.base",
    "ChallengeVerifier": "idverify.verifiers.base",
    "JudgedChallengeVerifier": "idverify.verifiers.base",
    "Outcome": "idverify.verifiers.base",
    "SendFailed": "idverify.verifiers.base",
    "SmsSender": "idverify.verifiers.base",
    "StepContext": "idverify.verifiers.base",
    "StepResult": "idverify.verifiers.base",
    "Verifier": "idverify.verifiers.base",
    "VerifierDeps": "idverify.verifiers.base",
    "VerifierFactory": "idverify.verifiers.base",
}


def test_all_is_the_pinned_public_names() -> None:
    assert sorted(idverify.__all__) == sorted(PUBLIC)
    assert len(idverify.__all__) == len(set(idverify.__all__))


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_each_name_is_the_object_of_its_home_module(name: str) -> None:
    assert getattr(idverify, name) is getattr(importlib.import_module(PUBLIC[name]), name)


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from idverify import *", namespace)  # noqa: S102 - the statement under test
    assert sorted(set(namespace) - {"__builtins__"}) == sorted(PUBLIC)


def test_other_names_are_errors_and_submodules_still_import() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = idverify.no_such_name
    from idverify import priority  # noqa: PLC0415 - the submodule import the lookup must not break

    assert priority.__name__ == "idverify.priority"
    assert set(idverify.__all__) <= set(dir(idverify))


def test_type_checkers_see_each_public_name_re_exported_from_its_home() -> None:
    """``__all__`` is computed, so mypy learns the names only from the ``import X as X`` lines."""
    tree = ast.parse((REPO / "idverify" / "__init__.py").read_text(encoding="utf-8"))
    re_exported = {
        alias.name: node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name
    }
    assert re_exported == PUBLIC


def test_importing_the_package_loads_no_grpc_and_no_public_module() -> None:
    """Every command imports the package first; the client's gRPC stubs wait for a caller."""
    probe = (
        "import sys, idverify; "
        "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('idverify.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_readme_imports_from_the_package_only_public_names() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    imports = re.findall(r"^from idverify import ([^\n(]+)$", readme, re.MULTILINE)
    assert imports, "README's signup imports the client from the package"
    names = {name.strip() for line in imports for name in line.split(",")}
    assert names <= set(PUBLIC)
    assert "Client" in names

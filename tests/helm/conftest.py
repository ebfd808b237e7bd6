"""Renders the chart with the real helm binary (see ``tools.py``) for the chart's tests.

The Bitnami Redis dependency is fetched from its OCI registry by ``helm dependency build``,
which these tests cannot reach; they work on a copy of the chart without the dependency
declared (everything of the chart's own renders the same; ``redis.*`` values then only reach
the chart's own templates).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .tools import ROOT, ToolUnavailable, ensure_helm

CHART = ROOT / "helm" / "idverify"
VALUES = Path(__file__).resolve().parent / "values"
VALUES_FILES = sorted(path.stem for path in VALUES.glob("*.yaml"))
RELEASE = "idv"
NAMESPACE = "identity"


@dataclass(frozen=True)
class Helm:
    """The helm binary and the dependency-free copy of the chart."""

    binary: Path
    chart: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs helm; the output is text."""
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=120, check=check
        )

    def template(self, values: Sequence[str] = (), sets: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The rendered manifests for values files (by name in tests/helm/values) and --set pairs.

        Raises:
            subprocess.CalledProcessError: when helm refuses the values.
        """
        args = ["template", RELEASE, str(self.chart), "--namespace", NAMESPACE]
        for name in values:
            args += ["--values", str(VALUES / f"{name}.yaml")]
        for pair in sets:
            args += ["--set-string", pair]
        rendered = self.run(*args).stdout
        return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """Helm, and the chart without its remote dependency."""
    try:
        binary = ensure_helm()
    except ToolUnavailable as exc:
        pytest.skip(f"helm not available: {exc}")
    chart = tmp_path_factory.mktemp("chart") / "idverify"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8"))
    meta.pop("dependencies")
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return Helm(binary, chart)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The manifests of one kind."""
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single manifest of a kind."""
    (found,) = by_kind(docs, kind)
    return found

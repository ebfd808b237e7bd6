"""checkov's Kubernetes policies over the rendered chart: no failure without a stated reason.

checkov runs from its own virtual environment (see ``tools.py``), offline (``--skip-download``).
The reasons for the checks allowed to fail are repeated in the chart README's security section.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import VALUES, VALUES_FILES, Helm
from .tools import ToolUnavailable, ensure_checkov

pytestmark = pytest.mark.slow

# Check id -> why the chart fails it, for renders whose values do not pin an image digest.
WITHOUT_DIGEST = {
    "CKV_K8S_43": "the image is named by tag unless image.digest is set (the production values set it)",
    "CKV_K8S_15": "IfNotPresent with a tag; a digest satisfies the check, Always only adds a registry "
    "round trip (and a dependency on the registry) to every pod start",
}


@pytest.fixture(scope="module")
def checkov() -> Path:
    try:
        return ensure_checkov()
    except ToolUnavailable as exc:
        pytest.fail(str(exc))


def pins_digest(values: str) -> bool:
    data = yaml.safe_load((VALUES / f"{values}.yaml").read_text(encoding="utf-8"))
    return bool(data.get("image", {}).get("digest"))


@pytest.mark.parametrize("values", VALUES_FILES)
def test_checkov_finds_no_unexplained_failure(helm: Helm, checkov: Path, values: str, tmp_path: Path) -> None:
    """Every Kubernetes policy of checkov passes, but for the stated image-pinning exceptions."""
    rendered = tmp_path / f"{values}.yaml"
    args = [
        "template",
        "idv",
        str(helm.chart),
        "--namespace",
        "identity",
        "--values",
        str(VALUES / f"{values}.yaml"),
    ]
    rendered.write_text(helm.run(*args).stdout, encoding="utf-8")
    done = subprocess.run(
        [
            str(checkov),
            "-f",
            str(rendered),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(done.stdout)
    summary = report["summary"]
    assert summary["passed"] > 50, summary
    failed = {(check["check_id"], check["resource"]) for check in report["results"]["failed_checks"]}
    allowed = {} if pins_digest(values) else WITHOUT_DIGEST
    unexplained = sorted(item for item in failed if item[0] not in allowed)
    assert unexplained == []

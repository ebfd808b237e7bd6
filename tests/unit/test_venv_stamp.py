"""scripts/_venv.sh's install_locked: pip runs only when the venv does not hold the lock already.

A venv made by scripts/test (dev.txt) holds every runtime pin, so scripts/serve must start on it
without pip (that run took ~6 s of a 7 s restart), and scripts/test must not reinstall after it.
The venv here is a directory whose ``bin/python`` records its arguments instead of running pip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", re.MULTILINE)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the files install_locked reads, and a venv whose python logs its calls."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "_venv.sh", tmp_path / "scripts")
    (tmp_path / "requirements").mkdir()
    for lock in ("runtime.txt", "dev.txt"):
        shutil.copy(REPO / "requirements" / lock, tmp_path / "requirements")
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "$*" >>"$(dirname "$0")/../calls"\n', encoding="utf-8")
    python.chmod(0o755)
    return tmp_path


def install(project: Path, *locks: str) -> list[str]:
    """Runs install_locked on the venv; returns the pip calls it made."""
    calls = project / "venv" / "calls"
    calls.unlink(missing_ok=True)
    subprocess.run(
        ["bash", "-c", 'set -euo pipefail; source scripts/_venv.sh; install_locked venv "$@"', "-", *locks],
        cwd=project,
        check=True,
    )
    return calls.read_text(encoding="utf-8").splitlines() if calls.exists() else []


def test_a_new_venv_is_installed_once(project: Path) -> None:
    first = install(project, "requirements/runtime.txt", "requirements/dev.txt")
    assert [call.split(" -r ")[-1] for call in first if " -r " in call] == ["requirements/runtime.txt"]
    assert len(first) == 2  # the lock, then idverify itself
    assert install(project, "requirements/runtime.txt", "requirements/dev.txt") == []


def test_serve_starts_without_pip_on_the_test_venv(project: Path) -> None:
    assert install(project, "requirements/dev.txt")
    assert install(project, "requirements/runtime.txt", "requirements/dev.txt") == []
    # ...and scripts/test does not reinstall after it.
    assert install(project, "requirements/dev.txt") == []


def test_the_test_venv_is_installed_over_a_runtime_one(project: Path) -> None:
    assert install(project, "requirements/runtime.txt")
    assert any("requirements/dev.txt" in call for call in install(project, "requirements/dev.txt"))


def test_a_changed_lock_or_pyproject_installs_again(project: Path) -> None:
    assert install(project, "requirements/dev.txt")
    with (project / "pyproject.toml").open("a", encoding="utf-8") as file:
        file.write("\n# changed\n")
    assert install(project, "requirements/runtime.txt", "requirements/dev.txt")
    with (project / "requirements" / "runtime.txt").open("a", encoding="utf-8") as file:
        file.write("\n# changed\n")
    assert install(project, "requirements/runtime.txt", "requirements/dev.txt")


def test_dev_lock_pins_every_runtime_package_at_the_same_version() -> None:
    """What lets scripts/serve take the dev venv as it is (scripts/upgrade-deps: -c runtime.txt)."""

    def pins(lock: str) -> dict[str, str]:
        text = (REPO / "requirements" / lock).read_text(encoding="utf-8")
        return {name.lower().replace("_", "-"): version for name, version in PIN.findall(text)}

    runtime, dev = pins("runtime.txt"), pins("dev.txt")
    assert runtime
    assert {name: dev.get(name) for name in runtime} == runtime

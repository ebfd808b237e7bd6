"""The image's install and the chart's pod, emulated without a container engine.

What is emulated, with the tools of the machine (util-linux ``unshare``, ``setpriv``,
``nsenter``; the suite runs as root):

- the image's filesystem: the build stage's commands, read from the Dockerfile, run as the
  image's non-root user into a fresh virtual environment at the image's path (``/opt/idverify``,
  grafted onto the host's ``/opt`` in a mount namespace of its own), from a copy of the build
  context; then the install is made read-only (``chmod -R a-w`` and a read-only bind mount);
- the pod: a mount and network namespace where the host's root filesystem is remounted
  read-only, the rendered chart's volumes are mounted at the chart's paths (ConfigMap and Secret
  files with the chart's modes and the pod's fsGroup, each ``emptyDir`` a tmpfs of its
  ``sizeLimit``), read-only where the chart says so; the server runs as the pod's user and
  groups, with no capabilities and no_new_privs, with the image's environment, working
  directory and entry point plus the chart's environment and args, on its own loopback (so the
  chart's fixed port 50051 is free whatever else runs on the machine).

What it cannot emulate: the image's own base (Debian's ``/usr/bin/python3.X`` of the same minor
stands in for the image's ``/usr/local/bin/python``, and the host's libraries for the image's);
``--only-binary`` wheels come from a wheelhouse pip downloaded from the same hashed lock
(``--no-index --find-links``) instead of the index; a cgroup (memory and CPU limits); the
kubelet's own gRPC probe (``idverify health`` asks the same health service from inside); an
``emptyDir`` over its ``sizeLimit`` gets ENOSPC from its tmpfs instead of an eviction; the
host's ``/dev``, ``/dev/shm``, ``/proc`` and ``/sys`` stay as they are (a container gets its own,
/dev/shm writable as here); Redis runs in the pod's network namespace, as root, writing nothing.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .image import ROOT, Image

INSTALL = "/opt/idverify"
WHEELS = "/opt/idverify-wheels"
SOURCE = "/opt/idverify-src"
#: A setpriv that drops what the chart drops: every capability, and privilege escalation.
LOCKED_DOWN = ("--clear-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all")


def base_interpreter() -> str:
    """A python of the suite's minor that any user may run (the venv's own may be under /root).

    Raises:
        FileNotFoundError: when the machine has none (Debian: python3.X-venv).
    """
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")
    if found is None:
        raise FileNotFoundError(f"no {name} outside /root for the image's user (apt-get install {name}-venv)")
    return found


def ensure_wheelhouse(cache: Path) -> Path:
    """The lock's wheels for the base interpreter, downloaded once per lock and interpreter.

    For that interpreter's markers (Debian's 3.11.2 needs async-timeout, a newer 3.11 does not);
    pip checks the hashes on download and again on install.
    """
    lock = ROOT / "requirements" / "runtime.txt"
    interpreter = base_interpreter()
    version = subprocess.run(
        [interpreter, "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    key = hashlib.sha256(lock.read_bytes() + version.encode()).hexdigest()[:12]
    target = cache / f"wheels-{key}"
    if target.exists():
        return target
    partial = target.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    done = subprocess.run(
        [interpreter, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
         "--require-hashes", "--only-binary=:all:", "-r", str(lock), "-d", str(partial)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pip download of {lock} failed:\n{done.stderr[-3000:]}")
    partial.replace(target)
    return target


def _graft_script(targets: Sequence[str], layers: Path) -> list[str]:
    """Commands that make each target directory exist without writing to the host.

    The nearest existing ancestor gets a read-only overlay whose upper-most layer holds the
    missing folders.
    """
    by_ancestor: dict[str, list[str]] = {}
    for target in targets:
        ancestor = target
        while not Path(ancestor).is_dir():
            ancestor = str(Path(ancestor).parent)
        if ancestor != target:
            real = str(Path(ancestor).resolve())
            by_ancestor.setdefault(real, []).append(str(Path(target).relative_to(ancestor)))
    commands = []
    for number, (ancestor, relatives) in enumerate(sorted(by_ancestor.items())):
        layer = layers / f"layer-{number}"
        for relative in relatives:
            (layer / relative).mkdir(parents=True, exist_ok=True)
        commands.append(f"mount -t overlay overlay -o lowerdir={layer}:{ancestor} {ancestor}")
    return commands


def _bind(source: Path, target: str, *, read_only: bool) -> list[str]:
    commands = [f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}"]
    if read_only:
        commands.append(f"mount -o remount,bind,ro {shlex.quote(target)}")
    return commands


def install_like_the_image(image: Image, scratch: Path, wheelhouse: Path, uid: int, gid: int) -> Path:
    """Runs the Dockerfile's build stage commands as the non-root user; the install's folder.

    Raises:
        RuntimeError: with pip's output when the install fails.
    """
    context = scratch / "context"
    for name in ("requirements/runtime.txt", "pyproject.toml", "README.md"):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, context / name)
    shutil.copytree(ROOT / "idverify", context / "idverify", ignore=shutil.ignore_patterns("__pycache__"))
    install = scratch / "install"
    install.mkdir()
    for path in (context, install, *context.rglob("*")):
        os.chown(path, uid, gid)
    commands = []
    for written in image.stage("build").run_commands():
        command = [base_interpreter(), *written[1:]] if written[:3] == ["python", "-m", "venv"] else written
        if "--require-hashes" in command:
            command = [*command, "--no-index", f"--find-links={WHEELS}"]
        commands.append(shlex.join(command))
    script = [
        "set -euo pipefail",
        *_graft_script([INSTALL, WHEELS, SOURCE], scratch / "layers-install"),
        *_bind(install, INSTALL, read_only=False),
        *_bind(wheelhouse, WHEELS, read_only=True),
        *_bind(context, SOURCE, read_only=False),
        f"cd {SOURCE}",
        (
            f"exec setpriv --reuid={uid} --regid={gid} {' '.join(LOCKED_DOWN)} env -i HOME={SOURCE}"
            " PATH=/usr/local/bin:/usr/bin:/bin PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1"
            f" PIP_NO_CACHE_DIR=1 bash -euo pipefail -c {shlex.quote('; '.join(commands))}"
        ),
    ]
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", "\n".join(script)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the image's install failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    subprocess.run(["chmod", "-R", "a-w", str(install)], check=True)
    return install


@dataclass
class Pod:
    """The chart's container, running the installed image in namespaces of its own."""

    image: Image
    docs: list[dict[str, Any]]
    install: Path
    scratch: Path
    redis_server: str
    installed_at: float
    process: subprocess.Popen[bytes] | None = None
    pids: dict[str, int] = field(default_factory=dict)
    started: float = 0.0

    @property
    def spec(self) -> dict[str, Any]:
        """The Deployment's pod spec."""
        (deployment,) = [doc for doc in self.docs if doc["kind"] == "Deployment"]
        spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        """The chart's container."""
        (main,) = self.spec["containers"]
        return main

    @property
    def ids(self) -> tuple[int, int, int]:
        """runAsUser, runAsGroup, fsGroup."""
        context = self.spec["securityContext"]
        return context["runAsUser"], context["runAsGroup"], context["fsGroup"]

    @property
    def log_path(self) -> Path:
        """The server's (and the namespace script's) output."""
        return self.scratch / "pod.log"

    def environment(self) -> dict[str, str]:
        """The container's environment: the image's, then the chart's on top (as Kubernetes does)."""
        env = dict(self.image.env)
        env |= {item["name"]: item["value"] for item in self.container.get("env", [])}
        return env

    def _volume_script(self) -> list[str]:
        """Mounts for each of the container's volumeMounts, filled as the kubelet would.

        The emptyDirs come last: one of them covers /tmp, where the files to bind are prepared.
        """
        _, _, fs_group = self.ids
        volumes = {volume["name"]: volume for volume in self.spec["volumes"]}
        commands, empty_dirs = [], []
        for mount in self.container["volumeMounts"]:
            volume = volumes[mount["name"]]
            target, read_only = mount["mountPath"], bool(mount.get("readOnly"))
            if "emptyDir" in volume:
                size = volume["emptyDir"].get("sizeLimit", "64Mi").replace("Mi", "m").replace("Gi", "g")
                empty_dirs.append(f"mount -t tmpfs -o size={size},mode=2777,gid={fs_group} tmpfs {target}")
                if read_only:
                    empty_dirs.append(f"mount -o remount,ro {target}")
                continue
            folder = self.scratch / "volumes" / mount["name"]
            folder.mkdir(parents=True)
            if "configMap" in volume:
                (config,) = [d for d in self.docs if d["kind"] == "ConfigMap"]
                assert config["metadata"]["name"] == volume["configMap"]["name"]
                files = {key: value.encode() for key, value in config["data"].items()}
                mode = volume["configMap"].get("defaultMode", 0o644)
            elif "secret" in volume:
                files = self._secret_files(volume["secret"])
                mode = volume["secret"].get("defaultMode", 0o644)
            else:
                raise AssertionError(f"volume kind not emulated: {volume}")
            for name, content in files.items():
                path = folder / name
                path.write_bytes(content)
                os.chown(path, 0, fs_group)
                path.chmod(mode)
            folder.chmod(0o755)
            commands += _bind(folder, target, read_only=read_only)
        return commands + empty_dirs

    def _secret_files(self, source: dict[str, Any]) -> dict[str, bytes]:
        secrets = [
            d for d in self.docs if d["kind"] == "Secret" and d["metadata"]["name"] == source["secretName"]
        ]
        assert secrets, f"the render has no Secret {source['secretName']} to emulate"
        data = {key: base64.b64decode(value) for key, value in secrets[0].get("data", {}).items()}
        items = source.get("items")
        return {item["path"]: data[item["key"]] for item in items} if items else data

    def start(self) -> None:
        """Sets up the namespaces and starts Redis and the server; returns once both have pids."""
        uid, gid, fs_group = self.ids
        mounts = [m["mountPath"] for m in self.container["volumeMounts"]]
        env = self.environment()
        command = [*self.image.entrypoint, *self.container["args"]]
        script = [
            "set -euo pipefail",
            "ip link set lo up",
            # The external Redis (not part of the pod), on the pod's loopback, persisting nothing.
            (
                f"{shlex.quote(self.redis_server)} --bind 127.0.0.1 --port 6379 --save '' --appendonly no"
                " --dir / --daemonize no --loglevel warning &"
            ),
            "redis=$!",
            "until (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; do sleep 0.1; done",
            *_graft_script([INSTALL, *mounts], self.scratch / "layers-pod"),
            *_bind(self.install, INSTALL, read_only=True),
            *self._volume_script(),
            "mount -o remount,bind,ro /",
            f"cd {shlex.quote(self.image.workdir)}",
            (
                f"setpriv --reuid={uid} --regid={gid} --groups={fs_group} {' '.join(LOCKED_DOWN[1:])}"
                f" env -i {shlex.join(f'{k}={v}' for k, v in env.items())} {shlex.join(command)} &"
            ),
            "server=$!",
            'echo "pids redis=$redis server=$server"',
            "termed=''; trap 'termed=1; kill -TERM $server 2>/dev/null || true' TERM",
            "status=0; wait $server || status=$?",
            # A trapped signal interrupts wait (status 128+n): wait again for the server's own.
            'if [ -n "$termed" ]; then status=0; wait $server || status=$?; fi',
            "kill $redis; wait $redis || true",
            'echo "server exited $status"',
            "exit $status",
        ]
        self.started = time.monotonic()
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--net", "--propagation", "private", "bash", "-c", "\n".join(script)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def wait_pids(self, timeout: float = 60.0) -> dict[str, int]:
        """The pids of Redis and the server (read from the script's first line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("pids "):
                    self.pids = {k: int(v) for k, v in (word.split("=") for word in line.split()[1:])}
                    return self.pids
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the pod's setup failed:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"no pids after {timeout} s:\n{self.log_text()[-3000:]}")

    def exec(
        self, *command: str, as_root: bool = False, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Runs a command in the pod, like `kubectl exec` or an exec probe.

        As the pod's user, locked down, with the container's environment and working directory
        (as root for the test's own look around).
        """
        uid, gid, fs_group = self.ids
        inside = list(command)
        if not as_root:
            inside = [
                "setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={fs_group}", *LOCKED_DOWN[1:],
                "env", "-i", *(f"{k}={v}" for k, v in self.environment().items()), *inside,
            ]  # fmt: skip
        return subprocess.run(
            ["nsenter", f"--target={self.pids['server']}", "--mount", "--net",
             "--wd", *inside],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def log_text(self) -> str:
        """Everything the pod printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM to the server (through the script), then the script's exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            for pid in self.pids.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait()
            raise

"""Test helpers that ship with the package, for idverify's own tests and for its callers' tests.

``ServerProcess`` runs ``idverify serve`` as a real process on a free port with its own data
directory, captures its log, and hands out tokens for each role:

    with ServerProcess(tmp_path) as server:
        with server.client("registrar") as client:
            client.verification.ListMethods(...)

``LocalCluster`` and ``LocalSentinel`` start a 3-primary Redis Cluster or a Sentinel-managed
primary with replicas on loopback ports, for ``ServerProcess(redis_url=cluster.url)``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idverify.client import Client
from idverify.config import load_settings
from idverify.domain.errors import StoreUnavailable
from idverify.flows.ip_locator import GEO_TABLE_CACHE, BackgroundLocator
from idverify.store.embedded import RedisProcess, free_port, redis_server_binary
from idverify.store.local_topologies import LocalCluster, LocalSentinel
from idverify.v1 import admin_pb2

__all__ = [
    "LocalCluster",
    "LocalSentinel",
    "RedisProcess",
    "ServerProcess",
    "free_port",
    "install_offline",
    "redis_server_binary",
]

START_TIMEOUT_SECONDS = 30.0
PORT_ATTEMPTS = 3
# Bounded waits for the shared IP tables' build (seconds of CPU; minutes on a loaded machine).
GEO_BUILD_WAITS = 10
# Bootstrap token -> the operator it created: it creates one only, and replicas share it.
_OPERATORS: dict[str, str] = {}
# Threads of one test ask for tokens at once: the first operator must be created once.
_TOKENS_LOCK = threading.RLock()
_CODE_LINE = re.compile(r"console SMS sender: code (\d+) for \S+ \(verification ([0-9a-f]+)\)")


def install_offline(source: Path, target: Path) -> None:
    """pip-installs the package ``source`` into the directory ``target``, never into the venv.

    What a third party's plugin goes through (a plugin, the bench's SMS sender): its entry points
    are found once ``target`` is on ``PYTHONPATH``. No index and no build isolation: it needs
    nothing that is not installed already, and no network. The package is built in a copy, so
    ``source`` (a fixture) keeps no ``build/`` or ``*.egg-info``.

    Raises:
        RuntimeError: pip's own message, when the install fails.
    """
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / source.name
        shutil.copytree(source, copy)
        done = subprocess.run(  # noqa: S603 - this interpreter's pip, on a path the caller gave
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-index",
                "--no-build-isolation",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--target",
                str(target),
                str(copy),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=240,
        )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {source} failed: {done.stderr.strip()}")


@functools.cache
def _shared_geo_tables() -> Path:
    """The IP tables of the bundled database, built once by this process (removed at exit).

    Built here, by the code the servers run, rather than taken from a server: most test servers
    stop before their workers finish building.
    """
    directory = Path(tempfile.mkdtemp(prefix="idverify-geo-tables-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    locator = BackgroundLocator(load_settings(environ={}).geo, directory)
    try:
        # In a thread of its own: a test's event loop may be running in this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(_wait_until_located, locator).result()
    finally:
        locator.close()
    return directory


def _wait_until_located(locator: BackgroundLocator) -> None:
    for _ in range(GEO_BUILD_WAITS):
        with contextlib.suppress(StoreUnavailable):  # still building (each wait is bounded)
            asyncio.run(locator.locate("8.8.8.8"))
            return


def _command_of(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


@dataclass
class ServerProcess:
    """``idverify serve`` in a child process.

    Attributes:
        directory: holds the data directory, the config file and the captured log.
        config: TOML text for ``--config`` (empty: none, the embedded defaults).
        redis_url: external Redis, or empty for the embedded one.
        env: extra environment variables.
        extra_args: more ``idverify serve`` arguments (``--workers 2``).
        credentials: channel credentials for a TLS server (None: plaintext).
        development: start with ``--dev`` (the console sender the tests read codes from, plain
            HTTP to fakes); False for production mode, which needs a real ``sms.sender``.
        console: serve the auditor's console on ``console_port`` as development mode does (or
            as the config says); False (the default) switches it off unless ``env`` or the
            config sets ``console.enabled``, so a test that does not look at it does not pay
            for it; None passes no console option at all, for a release that has no console
            (0.1.0, run by the upgrade tests).
        shared_geo_tables: on the bundled IP database (no ``[geo]`` setting, this release's
            code), start with the IP tables this process built once, copied into the new data
            directory as a restart finds them: building them costs seconds of CPU at every
            start, beside whatever the test is doing. False lets the server build them.
    """

    directory: Path
    config: str = ""
    redis_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    credentials: grpc.ChannelCredentials | None = None
    development: bool = True
    port: int = 0
    console: bool | None = False
    console_port: int = 0
    shared_geo_tables: bool = True
    process: subprocess.Popen[bytes] | None = None
    _tokens: dict[str, str] = field(default_factory=dict)
    _codes: dict[str, str] = field(default_factory=dict)
    _log_offset: int = 0
    _code_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def data_dir(self) -> Path:
        """The server's data directory."""
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        """Where stdout and stderr of the server go."""
        return self.directory / "server.log"

    @property
    def target(self) -> str:
        """The gRPC address."""
        return f"127.0.0.1:{self.port}"

    @property
    def console_url(self) -> str:
        """The auditor's console (served in development mode, or with console.enabled = on)."""
        scheme = "https" if self.credentials is not None else "http"
        return f"{scheme}://127.0.0.1:{self.console_port}"

    def start(self) -> None:
        """Starts the server and waits until its health service answers SERVING.

        A port this object chose (``free_port``) may be taken between the choice and the server's
        bind: the kernel hands the same range to other processes' outgoing connections, and the
        suite runs on two processes. Such a start is tried again on new ports, at most
        ``PORT_ATTEMPTS`` times; a port the caller gave is never changed.

        Raises:
            RuntimeError: when it exits or is not serving in time (the log tail is included).
        """
        chose_port, chose_console = not self.port, not self.console_port
        for attempt in range(1, PORT_ATTEMPTS + 1):
            if chose_port:
                self.port = free_port()
            if chose_console:
                self.console_port = free_port()
            chosen = [
                p for p, chose in ((self.port, chose_port), (self.console_port, chose_console)) if chose
            ]
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._launch()
            except RuntimeError:
                said = self.log_path.read_bytes()[offset:].decode("utf-8", "replace")
                # The supervisor's words for a taken port (idverify/supervisor.py), for one we chose.
                raced = any(
                    f"cannot listen on 127.0.0.1:{p}: another process listens" in said for p in chosen
                )
                if attempt == PORT_ATTEMPTS or not raced:
                    raise
            else:
                return

    def _launch(self) -> None:
        """Starts the process on the ports set and waits for SERVING (``start``'s one attempt)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "idverify",
            "serve",
            "--listen",
            self.target,
            "--data-dir",
            str(self.data_dir),
        ]
        if self.console is not None:
            args += ["--console-listen", f"127.0.0.1:{self.console_port}"]
        if self.config:
            config_path = self.directory / "idverify.toml"
            config_path.write_text(self.config, encoding="utf-8")
            args += ["--config", str(config_path)]
        if self.redis_url:
            args += ["--redis-url", self.redis_url]
        if self.development:
            args.append("--dev")
        args += self.extra_args
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}
        if self.console is False and "[console]" not in self.config:
            env["IDVERIFY_CONSOLE__ENABLED"] = "off"
        env |= self.env
        cache = self.data_dir / GEO_TABLE_CACHE
        if self._on_bundled_geo() and not cache.exists():  # a restart keeps what it has
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            cache.mkdir(mode=0o700)
            self._copy_geo_tables(_shared_geo_tables(), cache)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
        try:
            self.wait_serving()
        except RuntimeError:
            # A server that never served must not outlive the test that gave up on it: left
            # running, such servers pile up and load the machine for every test after.
            self.stop(timeout=10)
            raise

    def wait_serving(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Waits until the overall health status is SERVING.

        Raises:
            RuntimeError: when the process exits or the deadline passes.
        """
        deadline = time.monotonic() + timeout
        channel = (
            grpc.secure_channel(self.target, self.credentials)
            if self.credentials is not None
            else grpc.insecure_channel(self.target)
        )
        with channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    msg = f"server exited with {self.process.returncode}:\n{self.log_tail()}"
                    raise RuntimeError(msg)
                try:
                    answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        msg = f"server not serving after {timeout}s:\n{self.log_tail()}"
        raise RuntimeError(msg)

    def server_pids(self) -> list[int]:
        """The supervisor and its worker processes (not the embedded Redis), for resource checks.

        Raises:
            RuntimeError: when the server is not running.
        """
        if self.process is None or self.process.poll() is not None:
            msg = "the server is not running"
            raise RuntimeError(msg)
        found = [self.process.pid]
        for pid in found:  # grows while it is walked: children of children too
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    children = (task / "children").read_text().split()
                    found.extend(int(c) for c in children if _command_of(c) != "redis-server")
        return found

    def resident_kib(self) -> int:
        """Resident memory of the supervisor and its workers together, in KiB."""
        total = 0
        for pid in self.server_pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total

    def open_fds(self) -> int:
        """Open file descriptors of the supervisor and its workers together."""
        total = 0
        for pid in self.server_pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
        return total

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the supervisor and its workers have used so far."""
        ticks = 0
        for pid in self.server_pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def wait_quiet(self, *, below_cores: float = 0.05, window: float = 1.0, timeout: float = 120.0) -> None:
        """Waits until the server uses less than ``below_cores`` of CPU over ``window`` seconds.

        A worker builds its IP tables in the background for several seconds after it starts
        serving: a measurement taken before then measures that build as much as the calls.

        Raises:
            TimeoutError: the server was still busy after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(window)
            now = self.cpu_seconds()
            if now - before < below_cores * window:
                return
            before = now
        msg = f"the server was still busy after {timeout:.0f} s"
        raise TimeoutError(msg)

    def log_text(self) -> str:
        """Everything the server has written so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def sms_code(self, verification_id: str, timeout: float = 15.0) -> str:
        """The code the console sender logged for a verification (the newest one).

        The log is read incrementally, so polling stays cheap however long the server has run.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._code_lock:
                self._read_new_codes()
                code = self._codes.get(verification_id)
            if code is not None:
                return code
            if time.monotonic() >= deadline:
                msg = f"no code logged for verification {verification_id}"
                raise LookupError(msg)
            time.sleep(0.02)

    def _read_new_codes(self) -> None:
        if not self.log_path.exists():
            return
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._log_offset += len(complete)
        for match in _CODE_LINE.finditer(complete.decode("utf-8", errors="replace")):
            self._codes[match.group(2)] = match.group(1)

    def bootstrap_token(self) -> str:
        """The bootstrap token created on first start (creates operators and admins only)."""
        return (self.data_dir / "bootstrap-token").read_text(encoding="utf-8").strip()

    def token(self, role: str, tenant: str = "default") -> str:
        """A token for a role in a tenant, created once through the admin API.

        The bootstrap token creates one operator (the first call, which retires it), and the
        operator creates every other client. Servers that share a Redis and the bootstrap file
        (a cluster's replicas) share that operator.
        """
        key = f"{tenant}/{role}"
        with _TOKENS_LOCK:
            return self._token_locked(key, role, tenant)

    def _token_locked(self, key: str, role: str, tenant: str) -> str:
        if key not in self._tokens:
            if role == "operator":
                # One operator, in default: the bootstrap token creates no second one.
                self._tokens[key] = self._operator_token()
            else:
                with Client(self.target, self._operator_token(), credentials=self.credentials) as admin:
                    created = admin.admin.CreateClient(
                        admin_pb2.CreateClientRequest(tenant=tenant, role=role, description="test")
                    )
                self._tokens[key] = created.token
        return self._tokens[key]

    def _operator_token(self) -> str:
        bootstrap = self.bootstrap_token()
        if bootstrap not in _OPERATORS:
            with Client(self.target, bootstrap, credentials=self.credentials) as first:
                created = first.admin.CreateClient(
                    admin_pb2.CreateClientRequest(tenant="default", role="operator", description="test")
                )
            _OPERATORS[bootstrap] = created.token
        return _OPERATORS[bootstrap]

    def client(self, role: str = "registrar", tenant: str = "default") -> Client:
        """A client authenticated as the role."""
        return Client(self.target, self.token(role, tenant), credentials=self.credentials)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Stops the server with a signal and returns its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def _on_bundled_geo(self) -> bool:
        """True when this server's IP tables are those of the bundled database and this code."""
        return (
            self.shared_geo_tables
            and "[geo" not in self.config
            and not any(name.startswith(("IDVERIFY_GEO", "PYTHON")) for name in self.env)
        )

    @staticmethod
    def _copy_geo_tables(source: Path, target: Path) -> None:
        """Copies the finished table files (each written whole, then renamed into place)."""
        for path in sorted(source.glob("*.tables")):
            shutil.copyfile(path, target / path.name)
            (target / path.name).chmod(0o600)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

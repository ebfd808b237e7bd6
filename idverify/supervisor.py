"""``idverify serve``: one supervisor process and N worker processes sharing the gRPC port.

Python runs one thread of Python code at a time, so a server uses more than one core only as
several processes. The supervisor creates no gRPC or Redis object itself (both are bound to the
process and event loop that made them, and gRPC does not survive a fork with live objects):

1. it reads the settings, holds the port with a bound, non-listening socket (first, so that a
   bad listen address creates nothing), locks the data directory for its life (a second
   server there is refused: it would start a second Redis on the same files), and creates the
   keyring file if needed. The port is bound *before*
   ``SO_REUSEPORT`` is set, so the bind fails while anything else is bound there (a second
   server among them), and only then opened to the workers: a restart never loses the port,
   port 0 picks one port for every worker, and no other server shares it;
2. without ``redis_url`` it starts the embedded redis-server once and hands its URL to the
   workers (and restarts it if it dies);
3. it forks one worker, waits until that one serves (so start-up errors and the bootstrap token
   appear once), then forks the others; each worker builds its own server with
   ``SO_REUSEPORT``, and the kernel spreads connections over them;
4. a worker that dies is forked again (with a growing pause if it keeps dying young); one that
   fails before the service ever served ends the supervisor with its exit code (2 for a
   configuration error);
5. SIGTERM or SIGINT drains: every worker gets SIGTERM and finishes its calls within
   ``grace_seconds``; stragglers are killed; then the embedded Redis stops. SIGHUP is passed on
   to every worker (which reloads its IP database files).

Each worker holds one end of a socket pair with the supervisor: it writes a byte when serving,
and reads end-of-file when the supervisor is gone, so no worker outlives a killed supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import math
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from idverify import server
from idverify.config import CallbackSettings, ConsoleSettings, Settings
from idverify.data_dir import DataDirLock, check_witness_dirs, prepare_data_dir, prepare_tiles_dir
from idverify.domain.errors import ConfigError
from idverify.flows.born_walked import new_logs_walked
from idverify.flows.key_check import check_signing_key, open_keyring
from idverify.flows.schema_version import ensure_schema
from idverify.security.file_modes import secure_data_and_keys
from idverify.store.audit_logs import check_tiles_bucket
from idverify.store.connection import close_client, connect
from idverify.store.embedded import HASH_MAX_LISTPACK_VALUE, RedisProcess
from idverify.store.hash_encoding import loose_hash_limit
from idverify.store.key_checks import RedisKeyChecks
from idverify.store.schema_versions import RedisSchemaStore
from idverify.store.server_reports import RedisServerReports

log = logging.getLogger("idverify.supervisor")

READY = b"R"
CONFIG_ERROR_EXIT = 2
# A worker that dies sooner than this after its start is restarted after a growing pause.
MIN_HEALTHY_SECONDS = 10.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
# Beyond the grace period, what a worker gets to close its Redis pool and threads.
EXIT_MARGIN_SECONDS = 5.0
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota.

    A container limited to 2 CPUs on a 64-core node sees 64 in ``os.cpu_count()``; running 64
    workers there would only add memory and contention, so the quota (``cpu.max``) counts.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = _CGROUP_CPU_MAX.read_text(encoding="ascii").split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return max(1, cores)


def worker_cores(workers: int) -> list[int]:
    """The core each worker is pinned to, round robin over the CPU affinity; empty: no pinning.

    A worker alone on its core keeps its event loop and its hashing thread on one core's caches;
    left to the kernel, two workers' threads wandered over both cores and a signup cost the
    workers more CPU (docs/PERFORMANCE.md). It also keeps
    fewer workers than cores on that many cores, not spread thin over all of them.

    Not under a cgroup CPU quota narrower than the affinity: every container on a node sees the
    node's cores, and pinning each one's first worker to the node's first core would pile them
    all onto it. There the kernel places the workers. (A Kubernetes static CPU manager sets the
    pod's cpuset, which narrows the affinity itself, and pinning applies again.)
    """
    if not hasattr(os, "sched_setaffinity"):
        return []
    cpus = sorted(os.sched_getaffinity(0))
    if available_cores() < len(cpus):
        return []
    return [cpus[index % len(cpus)] for index in range(workers)]


@dataclass
class _Worker:
    """One slot of the pool and the process currently filling it."""

    index: int
    pid: int = 0
    channel: socket.socket | None = None
    started: float = 0.0
    ready: bool = False
    backoff: float = 0.0
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Starts, watches and drains the workers of one ``idverify serve``.

    Attributes:
        settings: the validated settings (``workers`` 0 means one per available core).
        workers: how many worker processes.
    """

    settings: Settings
    workers: int
    embedded: RedisProcess | None = None
    _slots: list[_Worker] = field(default_factory=list)
    _port_hold: socket.socket | None = None
    _console_hold: socket.socket | None = None
    _callbacks_hold: socket.socket | None = None
    _data_lock: DataDirLock | None = None
    _worker_settings: Settings | None = None
    _new_logs_walked: bool = False
    _signals_r: int = -1
    _signals_w: int = -1
    _stopping: bool = False
    _served: bool = False
    _exit_code: int = 0
    _cores: list[int] = field(default_factory=list)

    def run(self) -> int:
        """Runs until a signal or a fatal start-up failure; returns the process exit code."""
        try:
            self._prepare()
            self._install_signal_handlers()
            self._spawn(self._slots[0])
            self._loop()
        except ConfigError as exc:
            print(f"idverify: configuration error: {exc}", file=sys.stderr, flush=True)  # noqa: T201
            self._exit_code = CONFIG_ERROR_EXIT
        finally:
            self._drain()
            self._release()
        return self._exit_code

    def _prepare(self) -> None:
        settings = self.settings
        host, port = settings.listen_host_port
        # The port first: a listen address that does not resolve, is not this machine's or is
        # taken fails before anything is created, so no empty data directory is left behind.
        self._port_hold = _hold_port(host, port)
        port = self._port_hold.getsockname()[1]
        console = self._hold_console_port()
        callbacks = self._hold_callbacks_port()
        prepare_data_dir(settings.data_dir)
        check_witness_dirs(settings.audit_witness_dirs)
        prepare_tiles_dir(settings.audit_tiles_dir)
        asyncio.run(check_tiles_bucket(settings))
        # Held until the supervisor has stopped everything; the forked workers share it.
        self._data_lock = DataDirLock.acquire(settings.data_dir)
        secure_data_and_keys(settings)
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        url = settings.redis_url
        if not url:
            self.embedded = RedisProcess.of_data_dir(settings.data_dir)
            self.embedded.start()
            url = self.embedded.url
        # Once, before any worker exists, against the store: its schema must not be newer than
        # ours, the keys must open what it holds, and the first start over an empty store
        # creates the keyring and signing key files.
        _ensure_schema_before_workers(url)
        _check_keys_before_workers(settings, url)
        # Once a server start, after the schema check that may record it: every worker it starts
        # or restarts creates logs alike.
        self._new_logs_walked = _new_logs_walked_before_workers(url)
        if not self.embedded:
            _warn_of_loose_hash_limit(url)
        self._worker_settings = dataclasses.replace(
            settings, listen=listen, redis_url=url, console=console, callbacks=callbacks
        )
        self._slots = [_Worker(index) for index in range(self.workers)]
        self._cores = worker_cores(self.workers)
        log.info(
            "supervisor %d: %d worker(s) on %s (redis: %s%s)",
            os.getpid(),
            self.workers,
            listen,
            "embedded" if self.embedded else "external",
            f"; worker cores {self._cores}" if self._cores else "",
        )
        if settings.development:
            log.warning("development mode: console SMS sender and plain HTTP allowed; never in production")
        else:
            log.info("production mode")

    def _hold_console_port(self) -> ConsoleSettings:
        """The workers' console settings, its port held like the gRPC port (port 0: one for all).

        A busy port stops the start when the console was asked for (``console.enabled = on``);
        the development mode's own console ("auto") is left out with a warning instead, so that
        a second development server on the same machine still starts.
        """
        settings = self.settings
        if not settings.console_enabled:
            return settings.console
        host, port = settings.console_host_port
        try:
            self._console_hold = _hold_port(host, port, setting="console.listen")
        except RuntimeError as busy:
            if settings.console.enabled.lower() != "auto":
                raise
            log.warning("auditor's console left out: %s (set console.listen)", busy)
            return dataclasses.replace(settings.console, enabled="off")
        # Imported once here, before the fork: each worker then starts without importing aiohttp
        # (about half a second on a loaded machine), and shares its pages with the others.
        import idverify.console.server  # noqa: F401, PLC0415 - only when the console is on
        from idverify.store import audit_postings, console_sessions  # noqa: F401, PLC0415 - its stores

        bound = self._console_hold.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        return dataclasses.replace(settings.console, listen=f"{shown}:{bound}")

    def _hold_callbacks_port(self) -> CallbackSettings:
        """The workers' callback settings, its port held like the gRPC port (port 0: one for all)."""
        settings = self.settings
        if not settings.callbacks_enabled:
            return settings.callbacks
        host, port = settings.callbacks_host_port
        self._callbacks_hold = _hold_port(host, port, setting="callbacks.listen")
        # Imported before the fork, as the console is: the workers share aiohttp's pages.
        import idverify.callbacks.server  # noqa: F401, PLC0415 - only when callbacks are on

        bound = self._callbacks_hold.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        return dataclasses.replace(settings.callbacks, listen=f"{shown}:{bound}")

    def _install_signal_handlers(self) -> None:
        # The handlers only wake the loop: the signal number arrives on the pipe.
        self._signals_r, self._signals_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._signals_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(signum, lambda *_: None)

    def _loop(self) -> None:
        while not self._stopping:
            channels = {w.channel.fileno(): w for w in self._slots if w.channel is not None}
            timeout = self._next_timeout()
            try:
                readable, _, _ = select.select([self._signals_r, *channels], [], [], timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
                readable = []
            for fd in readable:
                if fd == self._signals_r:
                    self._on_signals()
                elif fd in channels:
                    self._on_channel(channels[fd])
            self._reap()
            self._watch_embedded()
            self._restart_due()

    def _next_timeout(self) -> float:
        due = [w.restart_at for w in self._slots if w.restart_at is not None]
        if not due:
            return 1.0
        return max(0.0, min(min(due) - time.monotonic(), 1.0))

    def _on_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            received = os.read(self._signals_r, 64)
            if signal.SIGTERM in received or signal.SIGINT in received:
                log.info("draining %d worker(s) (grace %.0fs)", self.workers, self.settings.grace_seconds)
                self._stopping = True
            elif signal.SIGHUP in received:
                # Each worker reloads what it reloads on SIGHUP (the IP database files).
                for worker in self._slots:
                    if worker.pid:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(worker.pid, signal.SIGHUP)

    def _on_channel(self, worker: _Worker) -> None:
        assert worker.channel is not None  # noqa: S101 - only channels of live workers are polled
        try:
            data = worker.channel.recv(16)
        except OSError:
            data = b""
        if READY in data and not worker.ready:
            worker.ready = True
            log.info("worker %d (pid %d) serving", worker.index, worker.pid)
            if not self._served:
                self._served = True
                for other in self._slots[1:]:
                    self._spawn(other)
        if not data:
            worker.channel.close()
            worker.channel = None

    def _reap(self) -> None:
        for worker in self._slots:
            if not worker.pid:
                continue
            try:
                pid, status = os.waitpid(worker.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = worker.pid, 0
            if pid == 0:
                continue
            self._on_exit(worker, os.waitstatus_to_exitcode(status))

    def _on_exit(self, worker: _Worker, code: int) -> None:
        lived = time.monotonic() - worker.started
        worker.pid = 0
        worker.ready = False
        if worker.channel is not None:
            worker.channel.close()
            worker.channel = None
        if self._stopping:
            return
        if not self._served:
            # Nothing has served yet: the same failure would repeat, so report it and stop.
            log.error("worker %d failed to start (exit %d)", worker.index, code)
            self._exit_code = code if code > 0 else 1
            self._stopping = True
            return
        worker.backoff = (
            min(max(worker.backoff * 2, FIRST_BACKOFF_SECONDS), MAX_BACKOFF_SECONDS)
            if lived < MIN_HEALTHY_SECONDS
            else 0.0
        )
        worker.restart_at = time.monotonic() + worker.backoff
        how = f"signal {-code}" if code < 0 else f"exit {code}"
        log.warning(
            "worker %d died (%s) after %.1fs; restarting in %.1fs", worker.index, how, lived, worker.backoff
        )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self._slots:
            if worker.restart_at is not None and worker.restart_at <= now and not self._stopping:
                worker.restart_at = None
                self._spawn(worker)

    def _watch_embedded(self) -> None:
        process = self.embedded.process if self.embedded is not None else None
        if self.embedded is None or process is None or process.poll() is None or self._stopping:
            return
        # The workers report NOT_SERVING meanwhile; the AOF brings the data back.
        log.error("embedded redis-server exited with %s; restarting it", process.returncode)
        try:
            self.embedded.start()
        except RuntimeError:
            log.exception("embedded redis-server does not restart")
            self._exit_code = 1
            self._stopping = True

    def _spawn(self, worker: _Worker) -> None:
        assert self._worker_settings is not None  # noqa: S101 - set by _prepare
        ours, theirs = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            ours.close()
            self._become_worker(worker, theirs)
        theirs.close()
        worker.pid, worker.channel, worker.started, worker.ready = pid, ours, time.monotonic(), False

    def _become_worker(self, worker: _Worker, channel: socket.socket) -> NoReturn:  # pragma: no cover
        code = 1
        try:
            for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.set_wakeup_fd(-1)
            for fd in (self._signals_r, self._signals_w):
                os.close(fd)
            for other in self._slots:
                if other.channel is not None:
                    other.channel.close()
            self._close_held_ports()
            assert self._worker_settings is not None  # noqa: S101
            if self._cores:
                os.sched_setaffinity(0, {self._cores[worker.index]})
            settings = _settings_for_worker(self._worker_settings, worker.index)
            if settings.argon2.niceness:
                # A session of its own is a scheduling group of its own where the kernel groups
                # by session (autogroup). Linux splits a group's weight over the cores by the
                # weight of its threads on each: in the supervisor's group, a nice-19 hash alone
                # on its core would get a sliver of the group's weight against other programs
                # while the other worker's event loop is busy on the other core. Alone in its
                # group, the worker weighs as one program, and its hash yields to its loop only.
                os.setsid()
            asyncio.run(_serve_worker(settings, channel, new_logs_walked=self._new_logs_walked))
            code = 0
        except ConfigError as exc:
            print(f"idverify: configuration error: {exc}", file=sys.stderr, flush=True)  # noqa: T201
            code = CONFIG_ERROR_EXIT
        except KeyboardInterrupt:
            code = 0
        except BaseException:
            log.exception("worker %d crashed", worker.index)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            # Never return into the supervisor's stack, nor run its exit handlers.
            os._exit(code)

    def _drain(self) -> None:
        live = [w for w in self._slots if w.pid]
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace_seconds + EXIT_MARGIN_SECONDS
        while any(w.pid for w in live) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for worker in live:
            if worker.pid:
                log.warning("worker %d did not stop in time; killing it", worker.index)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(worker.pid, 0)
                worker.pid = 0

    def _close_held_ports(self) -> None:
        for hold in (self._port_hold, self._console_hold, self._callbacks_hold):
            if hold is not None:
                hold.close()

    def _release(self) -> None:
        started = bool(self._slots)
        if self.embedded is not None:
            self.embedded.stop()
        self._close_held_ports()
        if self._signals_w >= 0:
            signal.set_wakeup_fd(-1)
            os.close(self._signals_r)
            os.close(self._signals_w)
        if self._data_lock is not None:
            # Last: the embedded Redis has written its files and let go of them.
            self._data_lock.release()
        if started:
            # A start-up refusal stays the one line that says why.
            log.info("stopped")


def _ensure_schema_before_workers(url: str) -> None:
    """``ensure_schema`` from the supervisor, before it forks (a refusal is one line, exit 2).

    The event loop and the Redis client live only for this call: workers create their own.

    Raises:
        ConfigError: as ``flows.schema_version.ensure_schema``.
    """

    async def ensure() -> None:
        redis = connect(url, pool_size=1)
        try:
            await ensure_schema(RedisSchemaStore(redis), RedisKeyChecks(redis), RedisServerReports(redis))
        finally:
            await close_client(redis)

    asyncio.run(ensure())


def _new_logs_walked_before_workers(url: str) -> bool:
    """``flows.born_walked.new_logs_walked`` from the supervisor, for every worker it starts."""

    async def ask() -> bool:
        redis = connect(url, pool_size=1)
        try:
            return await new_logs_walked(RedisSchemaStore(redis))
        finally:
            await close_client(redis)

    return asyncio.run(ask())


def _check_keys_before_workers(settings: Settings, url: str) -> None:
    """``open_keyring`` and ``check_signing_key`` (``flows.key_check``) before the supervisor forks.

    The event loop and the Redis client live only for this call: workers create their own.

    Raises:
        ConfigError: as ``open_keyring`` and ``check_signing_key``.
    """

    async def check() -> None:
        redis = connect(url, pool_size=1)
        try:
            checks = RedisKeyChecks(redis)
            await open_keyring(settings, checks)
            await check_signing_key(settings, checks)
        finally:
            await close_client(redis)

    asyncio.run(check())


def _warn_of_loose_hash_limit(url: str) -> None:
    """One warning line when an external Redis keeps the records as hash tables (``store.hash_encoding``)."""

    async def check() -> int | None:
        redis = connect(url, pool_size=1)
        try:
            return await loose_hash_limit(redis)
        finally:
            await close_client(redis)

    limit = asyncio.run(check())
    if limit is not None:
        log.warning(
            "redis: hash-max-listpack-value is %d; set it to %d (6.2: hash-max-ziplist-value) or every "
            "account, identity and consent record takes about twice the memory (README, Scaling out)",
            limit,
            HASH_MAX_LISTPACK_VALUE,
        )


def _hold_port(host: str, port: int, *, setting: str = "listen") -> socket.socket:
    """A bound, non-listening socket on the port, shared with the workers through SO_REUSEPORT.

    Linux only spreads connections over *listening* sockets, so this one receives none; it only
    keeps the port ours between worker restarts and fixes the number when ``port`` is 0. It is
    bound without SO_REUSEPORT, so the bind fails while any other socket is bound to the port,
    even one of a process that set SO_REUSEPORT itself (a second server, which would otherwise
    join the port and receive a share of new connections); set after the bind, the option lets
    this server's own workers join (the kernel checks it on the bound socket at each later bind).

    Raises:
        ConfigError: naming ``listen`` when the host does not resolve or is not this machine's.
        RuntimeError: when another process is bound to the port (or the port needs privileges).
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    hold = socket.socket(family, socket.SOCK_STREAM)
    try:
        hold.bind((host, port))
    except OSError as exc:
        hold.close()
        if isinstance(exc, socket.gaierror):
            raise ConfigError(
                f"{setting}: {host} is not an IP address nor a host name that resolves"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"{setting}: {host} is not an address of this machine") from None
        if exc.errno == errno.EADDRINUSE:
            raise RuntimeError(
                f"cannot listen on {address}: another process listens there ({exc.strerror})"
            ) from None
        raise RuntimeError(f"cannot listen on {address}: {exc.strerror}") from None
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return hold


def _settings_for_worker(settings: Settings, index: int) -> Settings:
    """A worker's own view: its share of hashing threads and its own metrics port."""
    argon2, telemetry = settings.argon2, settings.telemetry
    if argon2.threads == 0:
        # A worker is a core: one hashing thread keeps it busy while the event loop handles the
        # calls (argon2-cffi releases the GIL); more threads would only fight over the cores.
        argon2 = dataclasses.replace(argon2, threads=1)
    if "prometheus" in telemetry.metrics and index:
        # One scrape port per worker: a shared port would answer from a random worker.
        telemetry = dataclasses.replace(telemetry, prometheus_port=telemetry.prometheus_port + index)
    return dataclasses.replace(settings, argon2=argon2, telemetry=telemetry)


async def _serve_worker(
    settings: Settings, channel: socket.socket, *, new_logs_walked: bool
) -> None:  # pragma: no cover
    """A worker's life: start, say ready, serve until SIGTERM or the supervisor's end, drain."""
    app = await server.start(settings, reuse_port=True, new_logs_walked=new_logs_walked)
    server.freeze_heap()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    channel.setblocking(False)  # noqa: FBT003 - the socket API's own flag

    def on_supervisor() -> None:
        try:
            if not channel.recv(16):
                stopping.set()  # end of file: the supervisor is gone
        except BlockingIOError:
            return
        except OSError:
            stopping.set()

    loop.add_reader(channel.fileno(), on_supervisor)
    channel.send(READY)
    await stopping.wait()
    loop.remove_reader(channel.fileno())
    await server.stop(app)


def supervise(settings: Settings) -> int:
    """Runs ``idverify serve`` with ``settings.workers`` workers (0: one per available core).

    Returns:
        the exit code: 0 after a drain, 2 on a configuration error, else the failing worker's.
    """
    workers = settings.workers or available_cores()
    try:
        return Supervisor(settings, workers).run()
    except RuntimeError as exc:
        print(f"idverify: {exc}", file=sys.stderr, flush=True)  # noqa: T201
        return 1

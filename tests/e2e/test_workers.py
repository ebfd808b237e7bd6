"""`idverify serve --workers N`: processes sharing the port, restarts, draining, and start-up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from idverify.privacy.identity_index import HASH_THREAD_NAME
from idverify.supervisor import worker_cores
from idverify.testing import ServerProcess, free_port
from idverify.v1 import account_pb2, audit_pb2, verification_pb2

from .conftest import person, start, submit, verify
from .test_binding import LOOSE_LIMITS

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text(encoding="ascii")
        found.extend(int(child) for child in text.split())
    return found


def command_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def workers_of(server: ServerProcess) -> list[int]:
    """The worker processes: the supervisor's children that run idverify (not redis-server)."""
    return sorted(server.server_pids()[1:])


def cpu_ticks(pid: int) -> int:
    """User + system CPU ticks a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (its parent has not reaped it yet).
    return Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0] != "Z"


def redis_servers() -> list[int]:
    """Every redis-server process of the machine."""
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit() and _is_redis(entry)]


def _is_redis(entry: Path) -> bool:
    try:
        return (entry / "comm").read_text(encoding="ascii").strip() == "redis-server"
    except OSError:
        return False


def serving_workers(server: ServerProcess) -> int:
    """How many times a worker reported serving (restarts count again)."""
    return server.log_text().count(") serving")


def wait_for(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"condition not met within {timeout}s")


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with two workers on its embedded Redis."""
    with ServerProcess(tmp_path_factory.mktemp("workers"), extra_args=["--workers", "2"]) as running:
        wait_for(lambda: serving_workers(running) == 2)
        yield running


class TestPortSharing:
    def test_n_workers_listen_on_one_port(self, two_workers: ServerProcess) -> None:
        """The supervisor runs the asked number of workers and starts the embedded Redis once."""
        assert two_workers.process is not None
        kids = children(two_workers.process.pid)
        assert len(workers_of(two_workers)) == 2
        assert sum("redis-server" in command_of(pid) for pid in kids) == 1
        # The bootstrap token is made once for all workers, and announced by its file, not shown.
        assert two_workers.log_text().count("bootstrap token created in") == 1
        assert two_workers.bootstrap_token() not in two_workers.log_text()
        # Each worker says which Redis it uses: the supervisor's embedded one, not an external one.
        assert two_workers.log_text().count("(redis: embedded)") == 2
        assert "(redis: external)" not in two_workers.log_text()

    def test_new_connections_are_spread_over_the_workers(self, two_workers: ServerProcess) -> None:
        """Connections (not calls) are balanced by the kernel: separate channels reach both workers."""
        pids = workers_of(two_workers)
        before = {pid: cpu_ticks(pid) for pid in pids}
        token = two_workers.token("registrar")
        for _ in range(40):
            # A local subchannel pool forces a fresh TCP connection per channel.
            with grpc.insecure_channel(
                two_workers.target, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                stub = channel.unary_unary(
                    "/idverify.v1.VerificationService/ListMethods",
                    request_serializer=verification_pb2.ListMethodsRequest.SerializeToString,
                    response_deserializer=verification_pb2.ListMethodsResponse.FromString,
                )
                for _ in range(20):
                    stub(
                        verification_pb2.ListMethodsRequest(),
                        metadata=(("authorization", f"Bearer {token}"),),
                    )
        used = {pid: cpu_ticks(pid) - before[pid] for pid in pids}
        assert all(ticks > 0 for ticks in used.values()), used

    def test_a_signup_works_across_workers(self, two_workers: ServerProcess) -> None:
        """Start on one connection and answer on another: the workers share everything through Redis."""
        identity = person()
        with two_workers.client() as first:
            started = start(first, identity, "workers-acct")
        with two_workers.client() as second:
            done = submit(second, started.verification_id, two_workers.sms_code(started.verification_id))
        assert done.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")


def threads_of(pid: int) -> dict[int, tuple[str, int]]:
    """A process's threads: OS name and nice value of each (Linux /proc, stat field 19)."""
    found: dict[int, tuple[str, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "stat").read_text(encoding="ascii")
        found[int(task.name)] = (
            text[text.index("(") + 1 : text.rindex(")")],
            int(text.rsplit(")", 1)[1].split()[16]),
        )
    return found


class TestHashPriority:
    @staticmethod
    def hashing_nices(server: ServerProcess) -> dict[int, list[int]]:
        """Each worker's argon2 threads' nice values, once signups on new connections reached all."""
        hashers: dict[int, list[int]] = {}
        for n in range(40):
            with server.client() as client:
                verify(server, client, person(), f"nice-acct-{n}")
            hashers = {
                pid: [nice for name, nice in threads_of(pid).values() if name == HASH_THREAD_NAME]
                for pid in workers_of(server)
            }
            if all(hashers.values()):
                break
        assert len(hashers) == 2
        return hashers

    def test_by_default_every_workers_hashes_yield_to_its_event_loop(
        self, two_workers: ServerProcess
    ) -> None:
        """[argon2] niceness = 19, the default: its argon2 threads at nice 19, its loop at the server's.

        Worker and hash share one core; at equal priority an answer behind a hash gets half the
        core. Each worker leads a session (its own scheduling group where the kernel groups by
        session), so its niced hash is weighed against its own event loop only.
        """
        server_nice = os.getpriority(os.PRIO_PROCESS, two_workers.server_pids()[0])
        hashers = self.hashing_nices(two_workers)
        assert all(nices == [max(19, server_nice)] for nices in hashers.values()), hashers
        assert all(threads_of(pid)[pid][1] == server_nice for pid in hashers)
        assert all(os.getsid(pid) == pid for pid in hashers)

    def test_with_niceness_0_hashes_run_at_the_servers_priority(self, tmp_path: Path) -> None:
        """[argon2] niceness = 0: nothing is niced and the workers stay in the supervisor's session."""
        with ServerProcess(
            tmp_path, extra_args=["--workers", "2"], config="[argon2]\nniceness = 0\n"
        ) as plain:
            wait_for(lambda: serving_workers(plain) == 2)
            supervisor = plain.server_pids()[0]
            server_nice = os.getpriority(os.PRIO_PROCESS, supervisor)
            hashers = self.hashing_nices(plain)
            assert all(nices == [server_nice] for nices in hashers.values()), hashers
            assert all(os.getsid(pid) == os.getsid(supervisor) for pid in hashers)


class TestSupervision:
    def test_a_killed_worker_is_replaced_and_service_continues(self, two_workers: ServerProcess) -> None:
        """SIGKILL of a worker: the other keeps serving, and the supervisor forks a new one."""
        victim, survivor = workers_of(two_workers)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not alive(victim))
        # A client whose connection went to the dead worker gets UNAVAILABLE until it has
        # reconnected (to a live one): as after any lost connection, it retries.
        deadline = time.monotonic() + 5
        while True:
            try:
                with two_workers.client() as registrar:
                    answer = verify(two_workers, registrar, person(), "after-kill")
                break
            except grpc.RpcError as error:
                if error.code() is not grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert answer.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")
        wait_for(lambda: serving_workers(two_workers) == 3)
        assert victim not in workers_of(two_workers)
        assert survivor in workers_of(two_workers)
        assert len(workers_of(two_workers)) == 2
        assert "died (signal 9)" in two_workers.log_text()

    def test_each_worker_runs_on_a_core_of_its_own(self, two_workers: ServerProcess) -> None:
        """Worker i is pinned to core i of the affinity, a restarted one too.

        This runs after the kill test. Under a cgroup quota narrower than the affinity nothing is
        pinned.
        """
        pinned = sorted(sorted(os.sched_getaffinity(pid)) for pid in workers_of(two_workers))
        expected = worker_cores(2)
        if expected:
            assert pinned == sorted([core] for core in expected)
        else:
            assert pinned == [sorted(os.sched_getaffinity(0))] * 2

    def test_sighup_reaches_the_workers_and_stops_nothing(self, two_workers: ServerProcess) -> None:
        """SIGHUP (reload the IP database) is passed on; supervisor and workers keep running."""
        assert two_workers.process is not None
        before = workers_of(two_workers)
        os.kill(two_workers.process.pid, signal.SIGHUP)
        time.sleep(0.5)
        assert two_workers.process.poll() is None
        assert workers_of(two_workers) == before
        two_workers.wait_serving()

    def test_one_worker_when_asked(self, tmp_path: Path) -> None:
        """--workers 1 runs a single worker process."""
        with ServerProcess(tmp_path, extra_args=["--workers", "1"]) as server:
            assert len(workers_of(server)) == 1


class TestShutdown:
    def test_sigterm_drains_every_worker_and_the_embedded_redis(self, tmp_path: Path) -> None:
        """SIGTERM: every worker and the embedded redis-server exit, and the supervisor exits 0."""
        server = ServerProcess(tmp_path, extra_args=["--workers", "2"])
        server.start()
        assert server.process is not None
        wait_for(lambda: serving_workers(server) == 2)
        everything = children(server.process.pid)
        assert server.stop(signal.SIGTERM) == 0
        assert not [pid for pid in everything if alive(pid)]
        assert "stopped" in server.log_text()

    def test_workers_do_not_outlive_a_killed_supervisor(self, tmp_path: Path) -> None:
        """SIGKILL of the supervisor: its workers notice the closed channel and exit."""
        server = ServerProcess(tmp_path, extra_args=["--workers", "2"])
        server.start()
        assert server.process is not None
        wait_for(lambda: serving_workers(server) == 2)
        workers = workers_of(server)
        redis = [pid for pid in children(server.process.pid) if "redis-server" in command_of(pid)]
        server.stop(signal.SIGKILL)
        try:
            wait_for(lambda: not any(alive(pid) for pid in workers))
        finally:
            # Nobody is left to stop the embedded Redis of a killed supervisor (as before workers).
            for pid in redis:
                os.kill(pid, signal.SIGTERM)

    def test_a_restart_after_a_killed_supervisor_runs_one_redis_on_the_data_dir(self, tmp_path: Path) -> None:
        """The killed supervisor's embedded Redis outlives it; the next server stops it, not joins it.

        Two redis-servers on one data directory would both append to one AOF (and the later one
        takes over the socket path), so the next server shuts the leftover down (it flushes its
        AOF) before starting its own, and nothing acknowledged is lost.
        """
        first = ServerProcess(tmp_path, extra_args=["--workers", "1"])
        first.start()
        assert first.process is not None
        with first.client() as registrar:
            assert verify(first, registrar, person(), "before-kill").status == STATUS.Value(
                "VERIFICATION_STATUS_VERIFIED"
            )
        platform_token = first.token("platform")
        workers = workers_of(first)
        leftover = [pid for pid in children(first.process.pid) if "redis-server" in command_of(pid)]
        first.stop(signal.SIGKILL)
        wait_for(lambda: not any(alive(pid) for pid in workers))
        assert all(alive(pid) for pid in leftover)
        second = ServerProcess(tmp_path, extra_args=["--workers", "1"])
        second._tokens["default/platform"] = platform_token
        try:
            with second:
                assert second.process is not None
                wait_for(lambda: not any(alive(pid) for pid in leftover))
                socket_path = str(second.data_dir / "redis" / "redis.sock")
                servers = [pid for pid in redis_servers() if socket_path in command_of(pid)]
                assert len(servers) == 1
                assert servers[0] in children(second.process.pid)
                with second.client("platform") as platform:
                    account = platform.account.GetAccount(
                        account_pb2.GetAccountRequest(account_id="before-kill")
                    )
                assert account.account.verified
        finally:
            for pid in leftover:
                if alive(pid):
                    os.kill(pid, signal.SIGTERM)


class TestStartup:
    def test_a_configuration_error_is_reported_once_with_exit_2(self, tmp_path: Path) -> None:
        """A bad setting found by a worker ends the supervisor with exit 2 and one message."""
        config = tmp_path / "bad.toml"
        config.write_text('[tenants.default.methods.face]\nsteps = ["face_magic"]\n', encoding="utf-8")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "idverify",
                "serve",
                "--dev",
                "--workers",
                "2",
                "--data-dir",
                str(tmp_path / "d"),
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{free_port()}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert done.stderr.count("face_magic") == 1

    def test_a_port_taken_without_reuseport_is_refused(self, tmp_path: Path) -> None:
        """Another process listening on the port: start-up fails at once instead of sharing it."""
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            port = squatter.getsockname()[1]
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "idverify",
                    "serve",
                    "--dev",
                    "--data-dir",
                    str(tmp_path / "d"),
                    "--listen",
                    f"127.0.0.1:{port}",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        assert done.returncode == 1
        assert "cannot listen" in done.stderr

    def test_a_second_server_on_a_busy_port_is_refused_and_takes_no_connection(
        self, two_workers: ServerProcess, tmp_path: Path
    ) -> None:
        """A second ``idverify serve`` on the port of a running one exits at once with one line.

        Both set SO_REUSEPORT, so before the check the second one joined the port and the kernel
        gave it a share of new connections, which it answered with its own tokens (or collected).
        """
        stranger = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "idverify",
                "serve",
                "--dev",
                "--data-dir",
                str(tmp_path / "stranger"),
                "--listen",
                two_workers.target,
                # A console port of its own: a development server on the default one (another
                # test process's, a developer's) would add a warning to the one line asserted.
                "--console-listen",
                f"127.0.0.1:{free_port()}",
                "--workers",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _, stderr = stranger.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # SIGTERM, not SIGKILL: it drains and stops its embedded Redis, which holds the pipes.
            stranger.terminate()
            stranger.communicate(timeout=60)
            pytest.fail("a second server started on a port in use")
        assert stranger.returncode == 1
        taken = f"cannot listen on {two_workers.target}: another process listens there"
        assert stderr.splitlines() == [f"idverify: {taken} (Address already in use)"]
        token = two_workers.token("registrar")
        for _ in range(20):
            # A local subchannel pool forces a fresh TCP connection per channel.
            with grpc.insecure_channel(
                two_workers.target, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                list_methods = channel.unary_unary(
                    "/idverify.v1.VerificationService/ListMethods",
                    request_serializer=verification_pb2.ListMethodsRequest.SerializeToString,
                    response_deserializer=verification_pb2.ListMethodsResponse.FromString,
                )
                list_methods(
                    verification_pb2.ListMethodsRequest(), metadata=(("authorization", f"Bearer {token}"),)
                )

    def test_a_negative_worker_count_is_refused(self, tmp_path: Path) -> None:
        """--workers -1 is a configuration error."""
        done = subprocess.run(
            [sys.executable, "-m", "idverify", "serve", "--workers", "-1", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert "workers" in done.stderr


class TestWorkerCrashUnderLoad:
    @pytest.mark.slow
    def test_a_worker_killed_mid_load_leaves_no_half_done_binding(self, tmp_path: Path) -> None:
        """A SIGKILL of a busy worker: each account is bound with its audit entry, or not at all."""
        attempted: list[str] = []
        unexpected: list[str] = []
        stop = threading.Event()
        with ServerProcess(tmp_path, config=LOOSE_LIMITS, extra_args=["--workers", "2"]) as server:
            wait_for(lambda: serving_workers(server) == 2)

            def load(thread: int) -> None:
                n = 0
                while not stop.is_set():
                    # A client (a connection) per signup, so that both workers take signups.
                    with server.client() as registrar:
                        n += 1
                        account = f"crash-{thread}-{n}"
                        attempted.append(account)
                        try:
                            started = start(registrar, person(), account)
                            code = server.sms_code(started.verification_id, 3)
                            submit(registrar, started.verification_id, code)
                        except grpc.RpcError as error:
                            # The killed worker's connections break: UNAVAILABLE or CANCELLED.
                            if error.code() not in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}:
                                unexpected.append(f"{account}: {error.code()} {error.details()}")
                        except LookupError:
                            pass  # the worker died between sending the code and logging it

            threads = [threading.Thread(target=load, args=(t,)) for t in range(4)]
            for thread in threads:
                thread.start()
            try:
                wait_for(lambda: len(attempted) >= 20, timeout=60)
                victim = workers_of(server)[0]
                os.kill(victim, signal.SIGKILL)
                wait_for(lambda: serving_workers(server) == 3 and victim not in workers_of(server))
                count_at_restart = len(attempted)
                wait_for(lambda: len(attempted) >= count_at_restart + 20, timeout=60)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=30)
            assert unexpected == []
            with server.client("platform") as platform, server.client("auditor") as auditor:
                verified = 0
                for account in attempted:
                    bound = platform.account.GetAccount(
                        account_pb2.GetAccountRequest(account_id=account)
                    ).account.verified
                    entries = list(
                        auditor.audit.QueryEvents(
                            audit_pb2.QueryEventsRequest(account_id=account, event_types=["account.bound"])
                        )
                    )
                    assert len(entries) == (1 if bound else 0), account
                    verified += bound
            assert verified >= 30

"""Operating the server: Redis outages, restarts, shutdown, plugins, start-up checks, one data dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idverify.data_dir import DataDirLock
from idverify.testing import RedisProcess, ServerProcess, free_port, install_offline, redis_server_binary
from idverify.v1 import account_pb2, verification_pb2

from .conftest import person, start, verify

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def idverify(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs the ``idverify`` command to its end (a server that starts is stopped and fails the test)."""
    if args[:1] == ("serve",) and "--console-listen" not in args:
        # A console port of its own: on the default one, a development server already there
        # (another test process's, a developer's) added a warning line to the one line asserted.
        args = (*args, "--console-listen", f"127.0.0.1:{free_port()}")
    command = subprocess.Popen(
        [sys.executable, "-m", "idverify", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")},
    )
    try:
        stdout, stderr = command.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: a server drains and stops its embedded Redis, which holds the pipes.
        command.terminate()
        command.communicate(timeout=60)
        pytest.fail(f"idverify {' '.join(args)} still ran after {timeout}s")
    return subprocess.CompletedProcess(command.args, command.returncode, stdout, stderr)


def redis_starts(server: ServerProcess) -> int:
    """How many times a redis-server has started on the server's data directory (its log says)."""
    log = server.data_dir / "redis" / "redis.log"
    return log.read_text(encoding="utf-8", errors="replace").count("Server initialized")


def health_status(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        return int(
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        )


def wait_for_health(target: str, wanted: int, timeout: float = 10.0) -> float:
    """Seconds until the health status is ``wanted``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if health_status(target) == wanted:
            return time.monotonic() - began
        time.sleep(0.1)
    pytest.fail(f"health did not become {wanted} within {timeout}s")


class TestRedisOutage:
    @pytest.fixture
    def external(self, tmp_path: Path) -> Iterator[tuple[RedisProcess, ServerProcess]]:
        redis_dir = tmp_path / "redis"
        store = RedisProcess(redis_dir, port=free_port(), binary=redis_server_binary(prefer_system=True))
        store.start()
        server = ServerProcess(tmp_path / "server", redis_url=store.url)
        server.start()
        yield store, server
        server.stop()
        store.stop()

    def test_health_follows_redis_and_calls_fail_fast(
        self, external: tuple[RedisProcess, ServerProcess]
    ) -> None:
        """Redis down: NOT_SERVING and fast UNAVAILABLE; Redis back: SERVING and data intact."""
        store, server = external
        identity = person()
        with server.client() as registrar:
            verify(server, registrar, identity, "outage-acct")
            store.stop(hard=True)
            wait_for_health(server.target, health_pb2.HealthCheckResponse.NOT_SERVING)
            began = time.monotonic()
            with pytest.raises(grpc.RpcError) as down:
                start(registrar, person(), "outage-2")
            assert down.value.code() is grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - began < 3.5
            store.start()
            wait_for_health(server.target, health_pb2.HealthCheckResponse.SERVING)
            with server.client("platform") as platform:
                account = platform.account.GetAccount(account_pb2.GetAccountRequest(account_id="outage-acct"))
            assert account.account.verified
            assert verify(server, registrar, person(), "outage-3").status == STATUS.Value(
                "VERIFICATION_STATUS_VERIFIED"
            )


class TestEmbeddedPersistence:
    def test_bindings_survive_a_restart(self, tmp_path: Path) -> None:
        """The embedded default keeps its data (AOF) across a restart of the server."""
        identity = person()
        server = ServerProcess(tmp_path)
        with server:
            with server.client() as registrar:
                verify(server, registrar, identity, "persist-acct")
            platform_token = server.token("platform")
        assert "bootstrap token created in" in server.log_text()
        restarted = ServerProcess(tmp_path)
        restarted._tokens["default/platform"] = platform_token
        with restarted, restarted.client("platform") as platform:
            account = platform.account.GetAccount(account_pb2.GetAccountRequest(account_id="persist-acct"))
        assert account.account.verified
        # Created once, announced once (by file name: a log is not a terminal), never logged itself.
        assert restarted.log_text().count("bootstrap token created in") == 1
        assert server.bootstrap_token() not in restarted.log_text()
        assert oct((tmp_path / "data" / "bootstrap-token").stat().st_mode & 0o777) == "0o600"


class TestShutdown:
    def test_sigterm_drains_and_exits_cleanly(self, tmp_path: Path) -> None:
        """SIGTERM lets the server finish and exit 0; afterwards calls are refused."""
        server = ServerProcess(tmp_path)
        server.start()
        with server.client() as registrar:
            start(registrar, person(), "drain-acct")
            assert server.stop(signal.SIGTERM) == 0
            with pytest.raises(grpc.RpcError) as gone:
                registrar.verification.ListMethods(verification_pb2.ListMethodsRequest(), timeout=2)
        assert gone.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "stopped" in server.log_text()


class TestPlugins:
    def test_a_third_party_verifier_appears_in_list_methods(self, tmp_path: Path) -> None:
        """A pip-installed package's verifier is offered once a method uses it."""
        site = tmp_path / "site"
        install_offline(FIXTURES / "example_verifier", site)
        config = """
[verifiers.example_kba]
known_names = ["测试"]

[tenants.default.methods.sms]
steps = ["document", "sms_otp"]

[tenants.default.methods.kba]
display_name = "Knowledge question"
steps = ["document", "example_kba"]
"""
        with (
            ServerProcess(tmp_path / "server", config=config, env={"PYTHONPATH": str(site)}) as server,
            server.client() as registrar,
        ):
            methods = registrar.verification.ListMethods(verification_pb2.ListMethodsRequest()).methods
        kba = next(m for m in methods if m.id == "kba")
        assert list(kba.steps) == ["document", "example_kba"]
        assert not kba.biometric


class TestStartupChecks:
    def _serve(self, tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "bad.toml"
        path.write_text(config, encoding="utf-8")
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "idverify",
                "serve",
                "--dev",
                "--data-dir",
                str(tmp_path / "d"),
                "--config",
                str(path),
                "--listen",
                f"127.0.0.1:{free_port()}",
            ],
            capture_output=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")},
            text=True,
            timeout=30,
            check=False,
        )

    def test_an_unknown_verifier_is_refused_with_the_available_ones(self, tmp_path: Path) -> None:
        """Start-up fails naming the unknown verifier and listing the installed ones."""
        done = self._serve(tmp_path, '[tenants.default.methods.face]\nsteps = ["face_magic"]\n')
        assert done.returncode == 2
        assert "face_magic" in done.stderr
        assert "sms_otp" in done.stderr

    def test_a_challenge_step_must_come_last(self, tmp_path: Path) -> None:
        """A method with a step after the SMS challenge is refused at start-up."""
        done = self._serve(tmp_path, '[tenants.default.methods.sms]\nsteps = ["sms_otp", "document"]\n')
        assert done.returncode == 2
        assert "must be the last step" in done.stderr

    @pytest.mark.parametrize(
        ("config", "fragment"),
        [
            # FaceID offers no enterprise registry check (its credentials: any variable that is set).
            (
                (
                    '[vendors.tencent]\nsecret_id_env = "PATH"\nsecret_key_env = "PATH"\n'
                    '[verifiers.org_registry]\nvendor = "tencent"\n'
                ),
                "no enterprise registry check",
            ),
            ('[verifiers.org_registry]\nvendor = "alibaba"\nmode = "ENT_5META"\n', "org_registry.mode"),
            ("[verifiers.org_registry]\n", "set vendor"),
        ],
    )
    def test_a_careless_registry_configuration_is_one_line(
        self, tmp_path: Path, config: str, fragment: str
    ) -> None:
        """The registry step with a vendor that has no such check, a misspelt mode, no vendor: exit 2."""
        done = self._serve(tmp_path, config)
        assert done.returncode == 2
        assert fragment in done.stderr
        assert "Traceback" not in done.stderr
        # One line says it, whatever else start-up logged before.
        assert len([line for line in done.stderr.splitlines() if fragment in line]) == 1, done.stderr

    def test_an_unknown_setting_is_refused(self, tmp_path: Path) -> None:
        """A typo in the config file stops start-up with the setting's name."""
        done = self._serve(tmp_path, "[verification]\nbinding_limt = 3\n")
        assert done.returncode == 2
        assert "binding_limt" in done.stderr


class TestUnusableSettings:
    @pytest.mark.parametrize("host", ["256.1.1.1", "nohost.invalid"])
    def test_a_listen_host_that_is_no_address_is_a_configuration_error(
        self, tmp_path: Path, host: str
    ) -> None:
        """--listen with a host that is neither an IP address nor a resolvable name: one line, exit 2."""
        done = idverify(
            "serve", "--dev", "--listen", f"{host}:{free_port()}", "--data-dir", str(tmp_path / "d")
        )
        assert done.returncode == 2
        expected = f"listen: {host} is not an IP address nor a host name that resolves"
        assert done.stderr.splitlines() == [f"idverify: configuration error: {expected}"]
        # Refused before anything was made: no empty data directory with a lock file in it.
        assert not (tmp_path / "d").exists()

    def test_a_busy_port_leaves_no_data_dir(self, tmp_path: Path) -> None:
        """A port another process listens on is refused (exit 1) before the data dir is created."""
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            port = other.getsockname()[1]
            done = idverify(
                "serve", "--dev", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "d")
            )
        assert done.returncode == 1
        [line] = done.stderr.splitlines()
        assert "another process listens there" in line
        assert not (tmp_path / "d").exists()

    @pytest.mark.parametrize(
        ("data_dir", "problem"),
        [
            ("a-file", "is not a directory"),
            ("a-file/data", "is not a directory"),
            ("missing/data", "does not exist"),
            # Read-only for root too: what a read-only mount looks like.
            ("/sys/kernel", "is not writable (Permission denied)"),
        ],
    )
    def test_an_unusable_data_dir_is_a_configuration_error(
        self, tmp_path: Path, data_dir: str, problem: str
    ) -> None:
        """A data dir that is a file, lies in a file or missing folder, or is read-only: one line, exit 2."""
        (tmp_path / "a-file").write_text("not a directory\n", encoding="utf-8")
        path = Path(data_dir) if data_dir.startswith("/") else tmp_path / data_dir
        done = idverify("serve", "--dev", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(path))
        assert done.returncode == 2
        [line] = done.stderr.splitlines()
        assert line.startswith("idverify: configuration error: data_dir: ")
        assert problem in line
        assert not (tmp_path / "missing").exists()

    @pytest.mark.parametrize(
        ("tiles_dir", "problem"),
        [
            ("{tmp}/a-file", "is not a directory"),
            ("{tmp}/a-file/tiles", "cannot write in"),
            ("/sys/kernel", "cannot write in /sys/kernel (Permission denied)"),
        ],
    )
    def test_an_unusable_audit_tiles_dir_is_a_configuration_error(
        self, tmp_path: Path, tiles_dir: str, problem: str
    ) -> None:
        """Tiles pointed at a file, under one, or at a read-only place: one line, exit 2, no traceback."""
        (tmp_path / "a-file").write_text("not a directory\n", encoding="utf-8")
        config = tmp_path / "idverify.toml"
        config.write_text(f'audit_tiles_dir = "{tiles_dir.format(tmp=tmp_path)}"\n', encoding="utf-8")
        done = idverify(
            "serve",
            "--dev",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(tmp_path / "d"),
            "--config",
            str(config),
        )
        assert done.returncode == 2
        [line] = done.stderr.splitlines()
        assert line.startswith("idverify: configuration error: audit_tiles_dir: ")
        assert problem in line


@pytest.fixture(scope="module")
def holder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A running server on its embedded Redis: the one that holds its data directory."""
    with ServerProcess(tmp_path_factory.mktemp("holder"), extra_args=["--workers", "1"]) as running:
        yield running


class TestOneServerPerDataDir:
    def test_a_second_server_on_the_data_dir_is_refused(self, holder: ServerProcess) -> None:
        """A second serve on a data dir in use exits with one line and starts no Redis of its own.

        It used to start a second redis-server on the same append-only file, and on its exit that
        one deleted the first server's Redis socket.
        """
        assert holder.process is not None
        starts = redis_starts(holder)
        done = idverify(
            "serve",
            "--dev",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(holder.data_dir),
            "--workers",
            "1",
        )
        assert done.returncode == 1
        in_use = f"data directory {holder.data_dir} is in use by another idverify process"
        assert done.stderr.splitlines() == [f"idverify: {in_use} (pid {holder.process.pid})"]
        assert redis_starts(holder) == starts
        assert (holder.data_dir / "redis" / "redis.sock").is_socket()
        with holder.client() as registrar:
            assert verify(holder, registrar, person(), "after-second-serve").status == STATUS.Value(
                "VERIFICATION_STATUS_VERIFIED"
            )

    @pytest.mark.parametrize("command", [("erasure", "status"), ("keys", "status")])
    def test_commands_use_the_running_servers_redis(
        self, holder: ServerProcess, command: tuple[str, ...]
    ) -> None:
        """The keys and erasure commands on a data dir in use talk to the server's Redis, not a second one."""
        starts = redis_starts(holder)
        done = idverify(command[0], "--data-dir", str(holder.data_dir), *command[1:])
        assert done.returncode == 0, done.stderr
        assert redis_starts(holder) == starts
        assert (holder.data_dir / "redis" / "redis.sock").is_socket()
        holder.wait_serving(timeout=5)

    def test_a_command_refuses_a_data_dir_whose_server_does_not_answer(self, tmp_path: Path) -> None:
        """A locked data dir whose Redis does not answer (a server starting): refused, no Redis started."""
        stopped = ServerProcess(tmp_path)
        with stopped:
            pass
        starts = redis_starts(stopped)
        with DataDirLock.acquire(stopped.data_dir):
            done = idverify("erasure", "--data-dir", str(stopped.data_dir), "status")
        assert done.returncode == 1
        in_use = (
            f"data directory {stopped.data_dir} is in use by another idverify process (pid {os.getpid()})"
        )
        assert done.stderr.splitlines() == [
            f"idverify: {in_use}, whose Redis does not answer; try again when it serves"
        ]
        assert redis_starts(stopped) == starts
        # Free again: the command starts the embedded Redis for its own time, as before.
        assert idverify("erasure", "--data-dir", str(stopped.data_dir), "status").returncode == 0
        assert redis_starts(stopped) == starts + 1

    @pytest.mark.parametrize("command", [("erasure", "status"), ("keys", "status")])
    def test_a_command_on_a_directory_without_data_says_so(
        self, tmp_path: Path, command: tuple[str, ...]
    ) -> None:
        """Run where no server kept data (another working directory): one line, exit 2, nothing made."""
        default = idverify(*command, cwd=tmp_path)
        assert default.returncode == 2
        hint = "(pass the server's --data-dir, or --redis-url)"
        assert default.stderr.splitlines() == [
            f"idverify: data_dir: no idverify data in idverify-data {hint}"
        ]
        assert not (tmp_path / "idverify-data").exists()
        empty = tmp_path / "empty"
        empty.mkdir()
        named = idverify(command[0], "--data-dir", str(empty), *command[1:])
        assert named.returncode == 2
        assert f"no idverify data in {empty}" in named.stderr
        assert list(empty.iterdir()) == []

"""Operating the server: Redis outages, restarts, shutdown, plugins and start-up checks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary
from idverify.v1 import account_pb2, verification_pb2

from .conftest import person, start, verify

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


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
        assert "shown once" in server.log_text()
        restarted = ServerProcess(tmp_path)
        restarted._tokens["default/platform"] = platform_token
        with restarted, restarted.client("platform") as platform:
            account = platform.account.GetAccount(account_pb2.GetAccountRequest(account_id="persist-acct"))
        assert account.account.verified
        assert restarted.log_text().count("shown once") == 1
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
        source = tmp_path / "src"
        shutil.copytree(FIXTURES / "example_verifier", source)
        site = tmp_path / "site"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-index",
                "--no-build-isolation",
                "--disable-pip-version-check",
                "--target",
                str(site),
                str(source),
            ],
            check=True,
        )
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

    def test_an_unknown_setting_is_refused(self, tmp_path: Path) -> None:
        """A typo in the config file stops start-up with the setting's name."""
        done = self._serve(tmp_path, "[verification]\nbinding_limt = 3\n")
        assert done.returncode == 2
        assert "binding_limt" in done.stderr

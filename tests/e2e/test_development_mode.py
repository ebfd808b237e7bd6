"""Development mode: the console SMS sender and plain HTTP serve only with --dev (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from idverify.testing import ServerProcess, free_port

pytestmark = pytest.mark.e2e
SECRET = "s" * 32


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``idverify serve`` to a refusal (a server that starts fails the test by timeout)."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "idverify", "serve"),
            *("--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d")),
            *args,
        ],
        capture_output=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")} | (env or {}),
        text=True,
        timeout=60,
        check=False,
    )


def gateway_config(url: str, *, allow_plain_http: bool = False) -> str:
    """An http SMS sender at ``url`` with its secret in SMS_SECRET."""
    plain = "allow_plain_http = true\n" if allow_plain_http else ""
    return f'[sms]\nsender = "http"\n[sms.options]\nurl = "{url}"\nsecret_env = "SMS_SECRET"\n{plain}'


class TestProductionRefuses:
    @pytest.mark.parametrize(
        "env", [{}, {"IDVERIFY_SMS__SENDER": "console"}, {"IDVERIFY_MODE": "production"}]
    )
    def test_the_console_sender_without_dev(self, tmp_path: Path, env: dict[str, str]) -> None:
        """The console sender without --dev: one line naming sms.sender and --dev, exit 2, nothing started."""
        done = serve(tmp_path, env=env)
        assert done.returncode == 2
        [line] = done.stderr.splitlines()
        assert line.startswith("idverify: configuration error: sms.sender: ")
        assert "--dev" in line
        assert not (tmp_path / "d").exists()

    def test_plain_http_to_a_gateway_off_the_host(self, tmp_path: Path) -> None:
        """allow_plain_http for the SMS gateway without --dev: one line naming it, exit 2."""
        config = tmp_path / "c.toml"
        config.write_text(gateway_config("http://sms.internal:8080", allow_plain_http=True), encoding="utf-8")
        done = serve(tmp_path, "--config", str(config), env={"SMS_SECRET": SECRET})
        assert done.returncode == 2
        [line] = done.stderr.splitlines()
        assert line.startswith("idverify: configuration error: sms.options.allow_plain_http: ")
        assert "--dev" in line


class TestDevelopmentMode:
    def test_dev_serves_with_the_console_sender_and_says_so(self, tmp_path: Path) -> None:
        """With --dev the console sender serves, and the log says development mode at start."""
        with ServerProcess(tmp_path, extra_args=["--workers", "1"]) as server:
            assert "development mode: console SMS sender" in server.log_text()

    def test_the_environment_switches_development_mode_on(self, tmp_path: Path) -> None:
        """IDVERIFY_MODE=development does what --dev does."""
        with ServerProcess(
            tmp_path, development=False, env={"IDVERIFY_MODE": "development"}, extra_args=["--workers", "1"]
        ) as server:
            assert "development mode: console SMS sender" in server.log_text()

    def test_production_serves_with_a_real_sender_and_says_so(self, tmp_path: Path) -> None:
        """Without --dev a gateway sender (plain HTTP on loopback stays allowed) serves in production mode."""
        with ServerProcess(
            tmp_path,
            development=False,
            config=gateway_config(f"http://127.0.0.1:{free_port()}"),
            env={"SMS_SECRET": SECRET},
            extra_args=["--workers", "1"],
        ) as server:
            log = server.log_text()
            assert "production mode" in log
            assert "development mode" not in log

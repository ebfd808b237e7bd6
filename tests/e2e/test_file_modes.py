"""A careless operator: a data directory others can read, key files for all, metrics on every interface."""

from __future__ import annotations

import stat
from pathlib import Path

import psutil
import pytest

from idverify.audit.checkpoint import generate_signing_key_file
from idverify.privacy.keyring import Keyring
from idverify.testing import ServerProcess, free_port

from .test_operations import idverify

pytestmark = pytest.mark.e2e


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def a_keyring_file(path: Path, mode: int) -> Path:
    path.write_text(Keyring.generate().to_json(), encoding="utf-8")
    path.chmod(mode)
    return path


class TestDataDirectory:
    def test_every_start_makes_the_data_dir_and_its_files_the_servers_alone(self, tmp_path: Path) -> None:
        with ServerProcess(tmp_path / "s") as first:
            data = first.data_dir
        # What a restore with the wrong umask, or a careless chmod -R, leaves behind.
        data.chmod(0o755)
        for path in data.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
            elif path.is_file():
                path.chmod(0o644)
        aof = sorted(p for p in (data / "redis").rglob("*.aof*") if p.is_file())
        assert aof
        with ServerProcess(tmp_path / "s"):
            assert mode_of(data) == 0o700
            for path in data.rglob("*"):
                if path.is_symlink() or path.is_socket():
                    continue
                assert mode_of(path) & 0o077 == 0, (path, oct(mode_of(path)))
            assert all(mode_of(path) == 0o600 for path in aof)


class TestKeyFiles:
    @pytest.mark.parametrize("setting", ["keyring_file", "audit_signing_key_file"])
    def test_a_key_file_others_can_read_stops_start_up(self, tmp_path: Path, setting: str) -> None:
        if setting == "keyring_file":
            key = a_keyring_file(tmp_path / "keyring.json", 0o644)
        else:
            key = tmp_path / "signing-key.pem"
            generate_signing_key_file(key)
            key.chmod(0o644)
        config = tmp_path / "idverify.toml"
        config.write_text(f'{setting} = "{key}"\n', encoding="utf-8")
        data = tmp_path / "d"
        done = idverify(
            "serve",
            "--dev",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(data),
            "--config",
            str(config),
        )
        assert done.returncode == 2
        [line] = done.stderr.splitlines()
        assert line.startswith(f"idverify: configuration error: {setting}: {key} is readable by other users")
        assert not (data / "redis").exists()  # refused before any Redis started

    def test_the_override_starts_with_a_warning(self, tmp_path: Path) -> None:
        keyring = a_keyring_file(tmp_path / "keyring.json", 0o644)
        config = f'keyring_file = "{keyring}"\n'
        with ServerProcess(
            tmp_path / "s", config=config, extra_args=["--allow-readable-key-files"]
        ) as running:
            assert "is readable by other users (mode 0644), allowed by setting" in running.log_text()

    def test_a_private_keyring_file_starts_quietly(self, tmp_path: Path) -> None:
        keyring = a_keyring_file(tmp_path / "keyring.json", 0o600)
        with ServerProcess(tmp_path / "s", config=f'keyring_file = "{keyring}"\n') as running:
            assert "readable by other users" not in running.log_text()


class TestMetricsEndpoint:
    def test_prometheus_listens_on_the_grpc_host_only(self, tmp_path: Path) -> None:
        port = free_port()
        config = f'[telemetry]\nmetrics = "prometheus"\nprometheus_port = {port}\n'
        with ServerProcess(tmp_path / "s", config=config, extra_args=["--workers", "1"]) as running:
            listening = {
                (c.laddr.ip, c.laddr.port)
                for pid in running.server_pids()
                for c in psutil.Process(pid).net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN
            }
        assert ("127.0.0.1", port) in listening
        assert ("0.0.0.0", port) not in listening  # noqa: S104 - the address that must not appear

"""The admin commands of the ``idverify`` CLI against a real server: tokens, TLS, ``clients list``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from idverify.testing import ServerProcess

from .test_tls import Authority, mutual_server, pki

pytestmark = pytest.mark.e2e

__all__ = ["mutual_server", "pki"]  # the TLS tests' authority and mutual-TLS server, fixtures here too

ROW = re.compile(
    r"^(?P<id>\S+)\s+(?P<tenant>\S+)\s+(?P<role>\S+)\s+(?P<state>active|revoked)\s+"
    r"(?P<created>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s*(?P<description>.*)$"
)


def idverify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the command with no IDVERIFY_* setting of the test's environment but ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "idverify", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A fresh server: its bootstrap token has created nothing yet."""
    with ServerProcess(tmp_path_factory.mktemp("cli")) as running:
        yield running


def created_token(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.split("token (shown once): ")[1].strip()


def test_the_bootstrap_token_is_found_through_data_dir_after_the_subcommand(server: ServerProcess) -> None:
    """--data-dir after ``create``: the bootstrap token file is read; then it is retired."""
    before = datetime.now(UTC).replace(microsecond=0)
    operator = created_token(
        idverify(
            "clients", "create", "--role", "operator", "--description", "on call",
            "--server", server.target, "--data-dir", str(server.data_dir),
        )
    )  # fmt: skip
    admin = created_token(
        idverify(
            "clients", "create", "--role", "admin", "--description", "the team's admin",
            "--server", server.target, "--token", operator,
        )
    )  # fmt: skip
    # Through IDVERIFY_DATA_DIR as well: found, and refused by the server now that it is retired.
    retired = idverify(
        "clients", "list", "--server", server.target, env={"IDVERIFY_DATA_DIR": str(server.data_dir)}
    )
    assert retired.returncode == 1
    assert retired.stderr.startswith(("idverify: PERMISSION_DENIED", "idverify: UNAUTHENTICATED"))

    listed = idverify("clients", "list", "--server", server.target, "--token", admin)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["CLIENT", "ID", "TENANT", "ROLE", "STATE", "CREATED", "(UTC)", "DESCRIPTION"]
    parsed = [ROW.match(row) for row in rows]
    assert all(parsed), rows
    by_role = {match["role"]: match for match in parsed if match}
    assert by_role["admin"]["description"] == "the team's admin"
    assert by_role["admin"]["tenant"] == "default"
    assert by_role["admin"]["state"] == "active"
    for match in by_role.values():
        created = datetime.strptime(match["created"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        assert before - timedelta(seconds=1) <= created <= datetime.now(UTC)
    # The columns line up under the header.
    assert {row.index(match["created"]) for row, match in zip(rows, parsed, strict=True) if match} == {
        header.index("CREATED")
    }


def test_a_wrong_token_is_one_line(server: ServerProcess) -> None:
    done = idverify("clients", "list", "--server", server.target, "--token", "iv_not-a-token")
    assert done.returncode == 1
    assert done.stderr.startswith("idverify: UNAUTHENTICATED")
    assert len(done.stderr.splitlines()) == 1


def test_client_commands_speak_tls(pki: tuple[Authority, Path], mutual_server: ServerProcess) -> None:
    """Clients and audit take --tls-ca/--tls-cert/--tls-key as health does; plaintext cannot pass."""
    _, directory = pki
    tls = ["--tls-ca", str(directory / "ca.pem"), "--tls-server-name", "localhost"]
    admin_cert = [
        "--tls-cert",
        str(directory / "admin-svc.pem"),
        "--tls-key",
        str(directory / "admin-svc.key"),
    ]
    listed = idverify("clients", "list", "--server", mutual_server.target, *tls, *admin_cert)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("CLIENT ID")

    stranger = ["--tls-cert", str(directory / "stranger.pem"), "--tls-key", str(directory / "stranger.key")]
    refused = idverify(
        "clients", "list", "--server", mutual_server.target, *tls, *stranger, "--data-dir", "/nonexistent"
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("idverify: UNAUTHENTICATED")

    plain = idverify("clients", "list", "--server", mutual_server.target, "--token", "t")
    assert plain.returncode == 1
    assert plain.stderr.startswith("idverify: UNAVAILABLE")
    assert len(plain.stderr.splitlines()) == 1

    health = idverify("health", "--server", mutual_server.target, *tls, *admin_cert)
    assert (health.returncode, health.stdout) == (0, "SERVING\n")

    auditor = mutual_server.token("auditor")
    key = idverify(
        "audit", "public-key", "--server", mutual_server.target, "--token", auditor, *tls, *admin_cert
    )
    assert key.returncode == 0, key.stderr
    assert key.stdout.startswith("-----BEGIN PUBLIC KEY-----")

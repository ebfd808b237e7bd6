"""Break-glass: ``idverify clients create --role operator --break-glass`` on the server's host."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest

from idverify.client import Client
from idverify.testing import ServerProcess
from idverify.v1 import admin_pb2, audit_pb2

from .conftest import rich_error

# Serial: the CLI's calls through the server's Redis have a deadline that a loaded machine missed.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A fresh server: its bootstrap token has created nothing yet."""
    with ServerProcess(tmp_path_factory.mktemp("glass")) as running:
        yield running


def idverify(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs the ``idverify`` command without any IDVERIFY_* setting of the test's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "idverify", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_cli_creates_an_operator_through_the_running_servers_redis(server: ServerProcess) -> None:
    """The operator works, the bootstrap token is retired, and the creation is audited by host user."""
    done = idverify(
        "clients", "--data-dir", str(server.data_dir), "create", "--role", "operator", "--break-glass"
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.split("token (shown once): ", 1)[1].strip()
    with Client(server.target, token) as operator:
        listed = operator.admin.ListClients(admin_pb2.ListClientsRequest()).clients
        assert any(c.role == "operator" and c.description == "break-glass operator" for c in listed)
        auditor = operator.admin.CreateClient(admin_pb2.CreateClientRequest(tenant="default", role="auditor"))
    with (
        Client(server.target, server.bootstrap_token()) as bootstrap,
        pytest.raises(grpc.RpcError) as retired,
    ):
        bootstrap.admin.CreateClient(admin_pb2.CreateClientRequest(role="admin"))
    assert rich_error(retired.value)[0] == "BOOTSTRAP_RETIRED"
    with Client(server.target, auditor.token) as reader:
        created = [
            found.event
            for found in reader.audit.QueryEvents(
                audit_pb2.QueryEventsRequest(event_types=["client.created"])
            )
        ]
    assert any(e.principal.startswith("break-glass/") and e.attributes["role"] == "operator" for e in created)


def test_it_creates_operators_only(server: ServerProcess) -> None:
    """Any other role is refused in one line, with exit code 2."""
    done = idverify(
        "clients", "--data-dir", str(server.data_dir), "create", "--role", "admin", "--break-glass"
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "idverify: --break-glass creates operators only (--role operator)"


def test_a_directory_without_data_is_refused_in_one_line(tmp_path: object) -> None:
    """No server ever kept data there: a configuration error, not an empty store, not a traceback."""
    done = idverify("clients", "--data-dir", str(tmp_path), "create", "--role", "operator", "--break-glass")
    assert done.returncode == 2
    assert done.stderr.startswith("idverify: configuration error: data_dir: no idverify data")
    assert len(done.stderr.strip().splitlines()) == 1

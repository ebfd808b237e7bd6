"""A careless operator: a lost keyring or audit signing key is refused at start, never replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idverify.audit.checkpoint import TreeHead, checkpoint_bytes, key_id_for, read_private_key_file
from idverify.privacy.keyring import Keyring
from idverify.testing import ServerProcess, free_port
from idverify.v1 import audit_pb2, verification_pb2

from .conftest import embedded_redis, person, verify

pytestmark = pytest.mark.e2e
CONFIG_ERROR_EXIT = 2


def serve_refused(
    server: ServerProcess, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``idverify serve`` on the server's data directory; a server that starts fails the test."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")} | (env or {})
    data_dir = ["--data-dir", str(server.data_dir)]
    command = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "idverify",
            "serve",
            "--dev",
            "--listen",
            f"127.0.0.1:{free_port()}",
            *data_dir,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean,
    )
    try:
        stdout, stderr = command.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        # SIGTERM: a server drains and stops its embedded Redis, which holds the pipes.
        command.terminate()
        command.communicate(timeout=60)
        pytest.fail("idverify serve started instead of refusing")
    return subprocess.CompletedProcess(command.args, command.returncode, stdout, stderr)


def idverify(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs an ``idverify`` command to its end."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "idverify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        check=False,
    )


@pytest.fixture
def used_server(tmp_path: Path) -> ServerProcess:
    """A server that has bound an account (so its store and audit log hold data), then stopped."""
    server = ServerProcess(tmp_path)
    with server, server.client() as registrar:
        server.identity = person()  # type: ignore[attr-defined]
        verify(server, registrar, server.identity, "acct-1")  # type: ignore[attr-defined]
        assert (server.data_dir / "keyring.json").exists()  # a fresh data directory generates one
    return server


class TestLostKeyring:
    def test_a_deleted_keyring_file_over_data_is_refused_and_the_data_stays(
        self, used_server: ServerProcess
    ) -> None:
        """Without keyring.json, a store with data is refused (exit 2) and no keyring is generated."""
        keyring_file = used_server.data_dir / "keyring.json"
        saved = keyring_file.read_bytes()
        keyring_file.unlink()
        refused = serve_refused(used_server)
        assert refused.returncode == CONFIG_ERROR_EXIT, refused.stderr
        assert str(keyring_file) in refused.stderr
        assert "IDVERIFY_KEYRING" in refused.stderr
        assert not keyring_file.exists()
        keyring_file.write_bytes(saved)
        keyring_file.chmod(0o600)
        with used_server, used_server.client() as registrar:
            # The restored keyring opens everything: the identity is still bound to acct-1.
            answer = registrar.verification.CheckIdentity(
                verification_pb2.CheckIdentityRequest(
                    account_id="acct-1",
                    subject=used_server.identity.subject(),  # type: ignore[attr-defined]
                )
            )
            assert answer.match

    def test_another_keyring_from_the_environment_is_refused(self, used_server: ServerProcess) -> None:
        """IDVERIFY_KEYRING with another keyring over existing data is refused, naming the source."""
        other = Keyring.generate().to_json()
        refused = serve_refused(used_server, {"IDVERIFY_KEYRING": other})
        assert refused.returncode == CONFIG_ERROR_EXIT, refused.stderr
        assert "IDVERIFY_KEYRING" in refused.stderr

    def test_a_new_key_version_then_a_restart_is_accepted(self, used_server: ServerProcess) -> None:
        """`idverify keys add` adds a version the store has not seen; the next start records it."""
        added = idverify("keys", "--data-dir", str(used_server.data_dir), "add")
        assert added.returncode == 0, added.stderr
        with used_server, used_server.client() as registrar:
            answer = registrar.verification.CheckIdentity(
                verification_pb2.CheckIdentityRequest(
                    account_id="acct-1",
                    subject=used_server.identity.subject(),  # type: ignore[attr-defined]
                )
            )
            assert answer.match


class TestLostSigningKey:
    def test_a_deleted_signing_key_over_a_log_is_refused(self, used_server: ServerProcess) -> None:
        """Without audit-signing-key.pem, a store with an audit log is refused, not re-keyed."""
        key_file = used_server.data_dir / "audit-signing-key.pem"
        key_file.unlink()
        refused = serve_refused(used_server)
        assert refused.returncode == CONFIG_ERROR_EXIT, refused.stderr
        assert "audit rotate-key" in refused.stderr
        assert not key_file.exists()

    def test_rotate_key_then_start_signs_heads_with_the_new_key(self, used_server: ServerProcess) -> None:
        """`idverify audit rotate-key` is the explicit step: then the server starts and signs with it."""
        key_file = used_server.data_dir / "audit-signing-key.pem"
        old_key = read_private_key_file(key_file).public_key()
        key_file.unlink()
        rotated = idverify("audit", "--data-dir", str(used_server.data_dir), "rotate-key")
        assert rotated.returncode == 0, rotated.stderr
        new_key = read_private_key_file(key_file)
        assert key_id_for(new_key.public_key()) != key_id_for(old_key)
        assert key_id_for(new_key.public_key()) in rotated.stdout
        with used_server, used_server.client("auditor") as auditor:
            message = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head
        head = TreeHead(
            origin=message.origin,
            size=message.tree_size,
            root_hash=message.root_hash,
            timestamp_ms=message.timestamp.seconds * 1000 + message.timestamp.nanos // 1_000_000,
        )
        assert head.size >= 1
        assert message.key_id == key_id_for(new_key.public_key())
        new_key.public_key().verify(message.signature, checkpoint_bytes(head))

    def test_rotate_key_leaves_one_entry_in_each_tenants_log(self, used_server: ServerProcess) -> None:
        """Each tenant's log says which key replaced which, and by whom; no key material; once only."""
        with used_server:
            used_server.token("registrar", "tb")  # a second tenant, with a log of its own
        key_file = used_server.data_dir / "audit-signing-key.pem"
        old_id = key_id_for(read_private_key_file(key_file).public_key())
        key_file.unlink()
        rotated = idverify("audit", "--data-dir", str(used_server.data_dir), "rotate-key")
        assert rotated.returncode == 0, rotated.stderr
        assert "2 tenant(s)" in rotated.stdout
        new_id = key_id_for(read_private_key_file(key_file).public_key())
        secret_lines = [line for line in key_file.read_text().splitlines() if not line.startswith("-----")]
        again = idverify("audit", "--data-dir", str(used_server.data_dir), "rotate-key")
        assert again.returncode == 0, again.stderr
        assert "nothing rotated" in again.stdout
        with used_server, embedded_redis(used_server) as store:
            logs = {
                tenant: [json.loads(entry) for entry in store.hvals(f"iv1:{{t:{tenant}}}:audit:log")]
                for tenant in ("default", "tb")
            }
        for tenant, log in logs.items():
            rotations = [entry for entry in log if entry["type"] == "audit.key_rotated"]
            assert len(rotations) == 1, (tenant, rotations)
            [entry] = rotations
            assert entry["attributes"] == {"key_id": new_id, "previous_key_id": old_id}
            assert entry["outcome"] == "rotated"
            assert entry["principal"].startswith("audit-rotate-key/")
            text = json.dumps(entry)
            assert not any(line in text for line in secret_lines)

"""A rollout from 0.1.0: this release refuses to serve beside a 0.1.0 server, and takes over once it stops.

0.1.0 keeps an identity's accounts in a set, and this release turns that set into a hash of their
claim tags in the first script that touches it: a 0.1.0 server serving beside it would then fail
(WRONGTYPE) on every identity this release touched. So this release's first start refuses, in
one line, while a 0.1.0 server still reports in, before it writes anything; once the old servers
are stopped (their reports left behind lapse within seconds, and the start waits for that), it
starts on 0.1.0's data and converts the set the next binding touches.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from idverify.flows.schema_version import SCHEMA_VERSION
from idverify.privacy.keyring import load_keyring
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.testing import RedisProcess, ServerProcess, free_port
from idverify.v1 import verification_pb2

from .conftest import Identity, person, verify
from .test_lifecycle_erasure import check, get_account
from .test_upgrade_from_0_1_0 import old_code, release_0_1_0

pytestmark = pytest.mark.e2e

STATUS = verification_pb2.VerificationStatus
ROLES = ("registrar", "platform", "auditor")


@dataclass
class OldServing:
    """A 0.1.0 server on an external Redis, with an identity it bound."""

    old: ServerProcess
    store: redis.Redis
    url: str
    directory: Path
    alice: Identity


@pytest.fixture(scope="module")
def old_serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OldServing]:
    tree = release_0_1_0(tmp_path_factory.mktemp("idverify-0.1.0"))
    directory = tmp_path_factory.mktemp("rolling")
    alice = person()
    with RedisProcess(directory / "redis", port=free_port()) as store:
        old = ServerProcess(directory / "old", redis_url=store.url, env=old_code(tree), console=None)
        with old:
            for role in ROLES:
                old.token(role)
            with old.client("registrar") as registrar:
                assert verify(old, registrar, alice, "rolling-old").status == STATUS.Value(
                    "VERIFICATION_STATUS_VERIFIED"
                )
            yield OldServing(old, redis.Redis(host="127.0.0.1", port=store.port), store.url, directory, alice)


def serve(data_dir: Path, url: str) -> subprocess.CompletedProcess[str]:
    """``idverify serve`` of this release on ``url``, to the end (a refusal ends it at once)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "idverify",
            "serve",
            "--dev",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(data_dir),
            "--redis-url",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")},
    )


class TestRollout:
    def test_keys_status_names_the_old_release(self, old_serving: OldServing) -> None:
        """0.1.0 reports its keyring without a schema version, so an operator sees it still serve."""
        command = [
            "keys",
            "status",
            "--data-dir",
            str(old_serving.old.data_dir),
            "--redis-url",
            old_serving.url,
        ]
        status = subprocess.run(
            [sys.executable, "-m", "idverify", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")},
        )
        assert status.returncode == 0, status.stderr
        servers = [line for line in status.stdout.splitlines() if line.startswith("server ")]
        assert servers, status.stdout
        assert all(": schema 1 (0.1.0: it reports none), " in line for line in servers), servers
        assert f"{len(servers)} server(s) of an older release" in status.stdout

    def test_this_release_refuses_to_start_beside_0_1_0_and_writes_nothing(
        self, old_serving: OldServing, tmp_path: Path
    ) -> None:
        store = old_serving.store
        ref = next(store.scan_iter(match=TenantKeys("default").identity_accounts("*"), count=1000))
        refused = serve(tmp_path / "data", old_serving.url)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        # A line saying it waits for the old servers' reports to lapse, then the refusal's.
        waiting, refusal = refused.stderr.strip().splitlines()
        assert "waiting up to 20 s for the reports of servers of an older release to lapse" in waiting
        assert "(schema 1)" in refusal
        assert "stop them, then start this one" in refusal
        assert store.get(GlobalKeys.SCHEMA) is None, "0.1.0's store keeps no version"
        assert store.type(ref) == b"set", "0.1.0's sets are left as 0.1.0 reads them"
        # The old server went on serving.
        with old_serving.old.client("platform") as platform:
            assert get_account(platform, "rolling-old").verified

    def test_once_0_1_0_stops_this_release_serves_its_data_and_converts_on_touch(
        self, old_serving: OldServing
    ) -> None:
        old, store = old_serving.old, old_serving.store
        keyring = load_keyring(path=old.data_dir / "keyring.json")
        keys = TenantKeys("default")
        old_account = keyring.pseudonym("default", "account", "rolling-old")
        ref = store.hget(keys.account(old_account), "identity")
        assert ref is not None
        accounts = keys.identity_accounts(ref.decode())
        assert store.type(accounts) == b"set"
        old.stop()  # 0.1.0 leaves its report behind: this release's start waits it out
        new_dir = old_serving.directory / "new"
        (new_dir / "data").mkdir(parents=True, mode=0o700)
        for name in ("keyring.json", "audit-signing-key.pem"):
            shutil.copy2(old.data_dir / name, new_dir / "data" / name)
        new = ServerProcess(new_dir, redis_url=old_serving.url)
        new._tokens = dict(old._tokens)
        with new:
            assert store.get(GlobalKeys.SCHEMA) == str(SCHEMA_VERSION).encode()
            assert "waiting up to" in new.log_text()
            with new.client("registrar") as registrar, new.client("platform") as platform:
                assert get_account(platform, "rolling-old").verified
                assert check(registrar, "rolling-old", old_serving.alice.subject())
                done = verify(new, registrar, old_serving.alice, "rolling-new")
                assert done.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED"), done
            new_account = keyring.pseudonym("default", "account", "rolling-new")
            assert store.type(accounts) == b"hash"
            members = {k.decode(): v.decode() for k, v in store.hgetall(accounts).items()}
            # 0.1.0 bound its account untagged (the identity's first name); this one is tagged.
            assert members[old_account] == "b:"
            assert members[new_account].startswith("b:")
            assert members[new_account] != "b:"
            assert set(members) == {old_account, new_account}

"""A store written by 0.1.0's own code is served by this release: read, completed, erased, audited.

The 0.1.0 server is the released code itself, taken from git history (``git archive`` of
0.1.0 as it last landed) and run with this venv, so the fixture is what 0.1.0
wrote, not a copy of its layout. A shallow clone fetches that commit from its origin; a clone that
cannot get it skips the test, saying NOT TESTED and why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest
import redis

from idverify.audit import merkle
from idverify.flows.schema_version import SCHEMA_VERSION
from idverify.privacy.keyring import load_keyring
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.testing import RedisProcess, ServerProcess, free_port
from idverify.v1 import account_pb2, audit_pb2, consent_pb2, verification_pb2

from .conftest import Identity, embedded_redis, person, start, submit, text_versions, verify
from .test_backup import idverify as idverify_command
from .test_lifecycle_erasure import _erased, cancel, check, get_account, holders, wait_for

pytestmark = pytest.mark.e2e

RELEASE_0_1_0 = "bb9b565ac609e7f3086579fef1888caa2c9fb3d9"
"""0.1.0 as it last landed on main, before any change of this release."""
REPOSITORY = Path(__file__).resolve().parents[2]
STATUS = verification_pb2.VerificationStatus
# 0.1.0 leaves the cancelled account to the new release's worker, which erases it at once.
OLD_CONFIG = "[erasure]\nworking_days = 0\nworker = false\n"
NEW_CONFIG = "[erasure]\nworking_days = 0\npoll_seconds = 0.2\n"


def release_0_1_0(into: Path) -> Path:
    """0.1.0's source tree, unpacked from git history into ``into``."""
    archive = _archive()
    if archive.returncode != 0:
        # A shallow clone: ask its origin for that one commit before giving up.
        subprocess.run(
            ["git", "-C", str(REPOSITORY), "fetch", "--quiet", "--depth=1", "origin", RELEASE_0_1_0],
            capture_output=True,
            check=False,
            timeout=120,
        )
        archive = _archive()
    if archive.returncode != 0:
        pytest.skip(
            f"NOT TESTED: the upgrade from 0.1.0 needs 0.1.0's code ({RELEASE_0_1_0}) from git "
            f"history, which this checkout lacks and its origin did not give (git fetch --unshallow): "
            f"{archive.stderr.decode(errors='replace').strip()}"
        )
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tree:
        tree.extractall(into, filter="data")
    return into


def _archive() -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", "--format=tar", RELEASE_0_1_0],
        capture_output=True,
        check=False,
        timeout=120,
    )


def old_code(tree: Path) -> dict[str, str]:
    """The environment that makes ``python -m idverify`` import ``tree``'s package, not this one.

    PYTHONSAFEPATH keeps the working directory (this checkout) off the path; PYTHONPATH then comes
    before the venv's editable install of this release.
    """
    return {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree)}


@dataclass
class Before:
    """What 0.1.0 wrote and answered, to compare with this release's answers."""

    alice: Identity
    bob: Identity
    accounts: dict[str, account_pb2.Account]
    consents: list[consent_pb2.Consent]
    pending_id: str
    pending_code: str
    head: audit_pb2.GetTreeHeadResponse


@dataclass
class Upgraded:
    server: ServerProcess
    before: Before
    store: redis.Redis


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upgraded]:
    """A data directory written by a 0.1.0 server, then served by this release's."""
    tree = release_0_1_0(tmp_path_factory.mktemp("idverify-0.1.0"))
    directory = tmp_path_factory.mktemp("upgrade")
    alice, bob, carol = person(), person(), person()
    old = ServerProcess(directory, config=OLD_CONFIG, env=old_code(tree), console=None)
    with old, old.client() as registrar, old.client("platform") as platform, old.client("auditor") as auditor:
        verify(old, registrar, alice, "legacy-alice")
        verify(old, registrar, alice, "legacy-alice-again")
        registrar.consent.GrantConsent(
            consent_pb2.GrantConsentRequest(
                account_id="legacy-alice",
                purpose="biometric",
                text_version=text_versions(["biometric"])["biometric"],
            )
        )
        verify(old, registrar, carol, "legacy-cancelled")
        cancel(platform, "legacy-cancelled")
        pending = start(registrar, bob, "legacy-pending")
        assert pending.status == STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT")
        accounts = {
            account: get_account(platform, account) for account in ("legacy-alice", "legacy-alice-again")
        }
        # 0.1.0 knew no age sources: this is the old code answering.
        assert accounts["legacy-alice"].age_source == account_pb2.AGE_SOURCE_UNSPECIFIED
        consents = list(
            registrar.consent.ListConsents(
                consent_pb2.ListConsentsRequest(account_id="legacy-alice")
            ).consents
        )
        before = Before(
            alice=alice,
            bob=bob,
            accounts=accounts,
            consents=consents,
            pending_id=pending.verification_id,
            pending_code=old.sms_code(pending.verification_id),
            head=auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()),
        )
    new = ServerProcess(directory, config=NEW_CONFIG)
    new._tokens = dict(old._tokens)  # the clients 0.1.0 created go on authenticating
    with new:
        yield Upgraded(server=new, before=before, store=embedded_redis(new))


class TestUpgradeFrom010:
    def test_the_schema_version_is_recorded(self, upgraded: Upgraded) -> None:
        """0.1.0's store had no version; it is raised to this release's and the log says from what."""
        assert upgraded.store.get(GlobalKeys.SCHEMA) == str(SCHEMA_VERSION).encode()
        assert f"store schema version 1 raised to {SCHEMA_VERSION}" in upgraded.server.log_text()

    def test_migrate_legacy_gives_0_1_0s_members_their_tags_while_this_release_serves(
        self, upgraded: Upgraded
    ) -> None:
        """Alice's accounts, bound by 0.1.0, have no ``m:`` field until ``idverify migrate legacy``.

        Before any binding touches her identity (the later tests re-verify); refused while 0.1.0's
        keyring report is still alive (it expires a few seconds after 0.1.0 stopped); no account
        read changes (``test_accounts_read_as_0_1_0_bound_them`` follows).
        """
        data = ("--data-dir", str(upgraded.server.data_dir))
        unmigrated = idverify_command("migrate", "legacy", "--verify", "--json", *data)
        assert unmigrated.returncode == 1, unmigrated.stderr
        before = json.loads(unmigrated.stdout)["tenants"]["default"]
        assert before["members_without_field"] >= 2, before
        deadline = time.monotonic() + 30
        while True:
            ran = idverify_command("migrate", "legacy", "--json", *data)
            if ran.returncode == 0 or time.monotonic() > deadline:
                break
            assert "(schema 1)" in ran.stderr, ran.stderr
            assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
            time.sleep(0.5)
        assert ran.returncode == 0, ran.stderr
        written = json.loads(ran.stdout)["tenants"]["default"]
        assert written["fields_written"] == before["members_without_field"], written
        checked = idverify_command("migrate", "legacy", "--verify", "--json", *data)
        assert checked.returncode == 0, checked.stderr
        after = json.loads(checked.stdout)["tenants"]["default"]
        assert (after["members"], after["members_without_field"]) == (before["members"], 0)
        keyring = load_keyring(path=upgraded.server.data_dir / "keyring.json")
        for account in upgraded.before.accounts:  # untagged, as 0.1.0 bound them: the first name
            member = keyring.pseudonym("default", "account", account)
            tags = [
                value
                for key in upgraded.store.scan_iter(match="iv1:{t:default}:id:*")
                if (value := upgraded.store.hget(key, f"m:{member}")) is not None
            ]
            assert tags == [b"b:"], account

    def test_accounts_read_as_0_1_0_bound_them(self, upgraded: Upgraded) -> None:
        """Verified, same method, time and band; the band is LEGACY (no birth date was sealed)."""
        with upgraded.server.client("platform") as platform:
            for account, old in upgraded.before.accounts.items():
                now = get_account(platform, account)
                assert now.verified, account
                assert (now.method_id, now.verified_at, now.age_band) == (
                    old.method_id,
                    old.verified_at,
                    old.age_band,
                ), account
                assert now.age_source == account_pb2.AGE_SOURCE_LEGACY, account

    def test_accounts_without_a_name_tag_match_the_identitys_first_name(self, upgraded: Upgraded) -> None:
        """CheckIdentity matches the name 0.1.0 bound, and no other, on either account."""
        alice = upgraded.before.alice
        keyring = load_keyring(path=upgraded.server.data_dir / "keyring.json")
        with upgraded.server.client() as registrar:
            for account in upgraded.before.accounts:
                stored = f"iv1:{{t:default}}:acct:{keyring.pseudonym('default', 'account', account)}"
                assert not upgraded.store.hexists(stored, "name_tag"), "0.1.0 wrote no tags"
                assert check(registrar, account, alice.subject()), account
                assert not check(registrar, account, alice.subject(name=alice.name + "明")), account

    def test_consents_read_as_given(self, upgraded: Upgraded) -> None:
        """ListConsents answers what 0.1.0 answered."""
        with upgraded.server.client() as registrar:
            now = registrar.consent.ListConsents(consent_pb2.ListConsentsRequest(account_id="legacy-alice"))
        assert list(now.consents) == upgraded.before.consents
        assert any(record.purpose == "biometric" and record.granted for record in now.consents)

    def test_a_verification_started_by_0_1_0_completes(self, upgraded: Upgraded) -> None:
        """Its code, sent by 0.1.0, binds the account under this release, with the band it froze."""
        with upgraded.server.client() as registrar, upgraded.server.client("platform") as platform:
            done = submit(registrar, upgraded.before.pending_id, upgraded.before.pending_code)
            assert done.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")
            account = get_account(platform, "legacy-pending")
            assert account.verified
            assert account.age_band == account_pb2.AGE_BAND_ADULT
            assert check(registrar, "legacy-pending", upgraded.before.bob.subject())

    def test_a_cancellation_of_0_1_0_is_erased_by_this_release(self, upgraded: Upgraded) -> None:
        """The pending erasure is found and done; nothing of the account is left but audit entries."""
        keyring = load_keyring(path=upgraded.server.data_dir / "keyring.json")
        wait_for(lambda: _erased(upgraded.store, keyring.pseudonym("default", "audit", "legacy-cancelled")))
        account_ps = keyring.pseudonym("default", "account", "legacy-cancelled")
        assert holders(upgraded.store, account_ps.encode()) == []

    def test_reverifying_under_this_release_seals_the_birth_date_and_tags_the_name(
        self, upgraded: Upgraded
    ) -> None:
        """The lazy upgrade of an account: its next verification writes 0.2.0's fields."""
        server = upgraded.server
        with server.client() as registrar, server.client("platform") as platform:
            verify(server, registrar, upgraded.before.alice, "legacy-alice")
            account = get_account(platform, "legacy-alice")
        assert account.verified
        assert account.age_source == account_pb2.AGE_SOURCE_DOCUMENT
        keyring = load_keyring(path=server.data_dir / "keyring.json")
        stored = f"iv1:{{t:default}}:acct:{keyring.pseudonym('default', 'account', 'legacy-alice')}"
        assert upgraded.store.hexists(stored, "name_tag")
        assert upgraded.store.hexists(stored, "birth_sealed")

    def test_the_audit_log_goes_on_from_0_1_0s_head(self, upgraded: Upgraded) -> None:
        """Same key; the new head is consistent with the one 0.1.0 signed."""
        old = upgraded.before.head
        with upgraded.server.client("registrar") as registrar:
            verify(upgraded.server, registrar, person(), "after-upgrade")
        with upgraded.server.client("auditor") as auditor:
            new = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest())
            assert new.public_key == old.public_key
            assert new.head.tree_size > old.head.tree_size
            proof = auditor.audit.GetConsistencyProof(
                audit_pb2.GetConsistencyProofRequest(first=old.head.tree_size, second=new.head.tree_size)
            )
        merkle.verify_consistency(
            old.head.tree_size, new.head.tree_size, list(proof.hashes), old.head.root_hash, new.head.root_hash
        )


class TestNewerSchema:
    def test_a_store_of_a_newer_schema_is_refused_in_one_line(self, tmp_path: Path) -> None:
        """Exit 2 naming both versions, before anything is written to the store or generated."""
        with RedisProcess(tmp_path / "redis", port=free_port()) as store_process:
            store = redis.Redis.from_url(store_process.url)
            store.set(GlobalKeys.SCHEMA, SCHEMA_VERSION + 1)
            env = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}
            refused = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "idverify",
                    "serve",
                    "--dev",
                    "--listen",
                    f"127.0.0.1:{free_port()}",
                    # A console port of its own: a development server on the default one (another
                    # test process's, a developer's) added a warning to the one line asserted.
                    "--console-listen",
                    f"127.0.0.1:{free_port()}",
                    "--data-dir",
                    str(tmp_path / "data"),
                    "--redis-url",
                    store_process.url,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env=env,
            )
            assert refused.returncode == 2, refused.stdout + refused.stderr
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1, refused.stderr
            assert f"schema version {SCHEMA_VERSION + 1}" in lines[0]
            assert f"this release's {SCHEMA_VERSION}" in lines[0]
            assert store.get(GlobalKeys.SCHEMA) == str(SCHEMA_VERSION + 1).encode()
            assert store.dbsize() == 1, "nothing was written"
            assert not (tmp_path / "data" / "keyring.json").exists(), "no keyring was generated"

    @pytest.mark.parametrize("command", [["erasure", "status"], ["tenants", "status"]])
    def test_commands_on_the_store_refuse_it_too(self, tmp_path: Path, command: list[str]) -> None:
        """A command run with an older release (keys, erasure, tenants...) refuses it in one line, exit 2."""
        with RedisProcess(tmp_path / "redis", port=free_port()) as store_process:
            redis.Redis.from_url(store_process.url).set(GlobalKeys.SCHEMA, SCHEMA_VERSION + 1)
            refused = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "idverify",
                    command[0],
                    "--data-dir",
                    str(tmp_path / "data"),
                    "--redis-url",
                    store_process.url,
                    *command[1:],
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env={k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")},
            )
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert f"schema version {SCHEMA_VERSION + 1}" in refused.stderr

    def test_an_empty_store_starts_at_this_releases_version(self, server: ServerProcess) -> None:
        """A new deployment records the version at its first start."""
        assert embedded_redis(server).get(GlobalKeys.SCHEMA) == str(SCHEMA_VERSION).encode()

    def test_a_new_deployments_tenant_is_born_walked(self, server: ServerProcess) -> None:
        """No older server reported in when it started: a tenant's log is created with the walk's mark."""
        with server.client("registrar", tenant="born") as registrar:
            verify(server, registrar, person(), "born-1")
        assert embedded_redis(server).hget(TenantKeys("born").audit_head(), "legacy_moved") == b"born"

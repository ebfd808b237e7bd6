"""A rolling upgrade: 0.1.0 and this release serve one Redis at the same time, and nothing breaks.

Servers of both releases share an external Redis, the keyring and the signing key, as replicas
do while an upgrade replaces them one by one. Each binds, re-binds, reads and completes what the
other started; afterwards this release's answers are those of a store written by one release,
and the one audit log both appended to verifies from either's heads.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import pytest
import redis

from idverify.audit import merkle
from idverify.client import Client
from idverify.domain.consent import text_version_of
from idverify.flows.schema_version import SCHEMA_VERSION
from idverify.flows.verification.plan import request_ref
from idverify.privacy.keyring import load_keyring
from idverify.store.connection import close_client, connect
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.scripts import ChainStep, Scripts
from idverify.testing import RedisProcess, ServerProcess, free_port
from idverify.v1 import account_pb2, audit_pb2, consent_pb2, verification_pb2

from .conftest import Identity, person, start, submit, verify
from .test_lifecycle_erasure import _erased, cancel, check, get_account, holders, wait_for
from .test_upgrade_from_0_1_0 import old_code, release_0_1_0

pytestmark = pytest.mark.e2e

STATUS = verification_pb2.VerificationStatus
# Erasures here are the old release's to do: its worker must erase what the new one bound.
NEW_CONFIG = "[erasure]\nworking_days = 0\nworker = false\n"
OLD_WORKER = "[erasure]\nworking_days = 0\npoll_seconds = 0.2\n"
ROLES = ("registrar", "platform", "auditor")


@dataclass
class Pair:
    """A server of each release on one Redis."""

    old: ServerProcess
    new: ServerProcess
    store: redis.Redis
    url: str

    def clients(self, server: ServerProcess) -> tuple[Client, Client]:
        return server.client("registrar"), server.client("platform")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tree = release_0_1_0(tmp_path_factory.mktemp("idverify-0.1.0"))
    directory = tmp_path_factory.mktemp("rolling")
    with RedisProcess(directory / "redis", port=free_port()) as store:
        # As a rollout goes: 0.1.0 serves first, and this release joins it on 0.1.0's data.
        old = ServerProcess(
            directory / "old", config=OLD_WORKER, redis_url=store.url, env=old_code(tree), console=None
        )
        with old:
            for role in ROLES:
                old.token(role)
            # Replicas share the keys: the new one gets the files the old one created.
            (directory / "new" / "data").mkdir(parents=True, mode=0o700)
            for name in ("keyring.json", "audit-signing-key.pem"):
                shutil.copy2(old.data_dir / name, directory / "new" / "data" / name)
            new = ServerProcess(directory / "new", config=NEW_CONFIG, redis_url=store.url)
            new._tokens = dict(old._tokens)
            with new:
                yield Pair(old, new, redis.Redis(host="127.0.0.1", port=store.port), store.url)


async def reserve_and_release(url: str, keys: TenantKeys, request: str, verification_id: str) -> None:
    """What a start of this release whose caller gave up leaves: reserved, then released."""
    client = connect(url, pool_size=1)
    scripts = Scripts(client)
    try:
        marker = keys.request_released(verification_id)
        reserve = ChainStep("reserve_request", [request, marker], [verification_id, 30_000])
        assert await scripts.run_chain([reserve]) == [[b"OK"]]
        release = [request, keys.verification(verification_id), marker]
        assert await scripts.run("release_request", release, [verification_id, 30_000]) == 1
    finally:
        await scripts.aclose()
        await close_client(client)


def bind(server: ServerProcess, identity: Identity, account: str) -> None:
    with server.client("registrar") as registrar:
        assert verify(server, registrar, identity, account).status == STATUS.Value(
            "VERIFICATION_STATUS_VERIFIED"
        )


class TestRollingUpgrade:
    def test_the_store_keeps_this_releases_schema(self, pair: Pair) -> None:
        """The new server raised the version of 0.1.0's data, naming the 0.1.0 server it found."""
        bind(pair.old, person(), "rolling-schema")
        assert pair.store.get(GlobalKeys.SCHEMA) == str(SCHEMA_VERSION).encode()
        log = pair.new.log_text()
        assert "servers of an older release serve this Redis beside this one" in log
        assert "(schema 1)" in log

    def test_keys_status_names_the_old_release(self, pair: Pair) -> None:
        """0.1.0 reports its keyring without a schema version, so an operator sees it still serve."""
        command = ["keys", "status", "--data-dir", str(pair.new.data_dir), "--redis-url", pair.url]
        status = subprocess.run(
            [sys.executable, "-m", "idverify", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")},
        )
        assert status.returncode == 0, status.stderr
        # One line per worker process that reported in the last few seconds.
        servers = [line for line in status.stdout.splitlines() if line.startswith("server ")]
        old = [line for line in servers if ": schema 1 (0.1.0: it reports none), " in line]
        new = [line for line in servers if f": schema {SCHEMA_VERSION}, " in line]
        assert old, servers
        assert new, servers
        assert len(old) + len(new) == len(servers), servers
        assert f"{len(old)} server(s) of an older release" in status.stdout

    def test_each_reads_what_the_other_bound(self, pair: Pair) -> None:
        alice, bob = person(), person()
        bind(pair.new, alice, "rolling-new")
        bind(pair.old, bob, "rolling-old")
        for server in (pair.old, pair.new):
            with server.client("platform") as platform, server.client("registrar") as registrar:
                for account, identity, other in (("rolling-new", alice, bob), ("rolling-old", bob, alice)):
                    found = get_account(platform, account)
                    assert found.verified, (server.directory.name, account)
                    # 0.1.0 reads the stored band: 0.2.0 writes its binding day's beside the date.
                    assert found.age_band == account_pb2.AGE_BAND_ADULT, (server.directory.name, account)
                    assert check(registrar, account, identity.subject()), (server.directory.name, account)
                    assert not check(registrar, account, other.subject()), (server.directory.name, account)

    @pytest.mark.parametrize(("child_on", "guardian_on"), [("old", "new"), ("new", "old")])
    def test_an_adult_bound_by_one_is_a_guardian_on_the_other(
        self, pair: Pair, child_on: str, guardian_on: str
    ) -> None:
        """0.1.0 judges a guardian by the stored band; an adult 0.2.0 bound is not refused."""
        guardian, child = f"rolling-guardian-{guardian_on}", f"rolling-child-{child_on}"
        bind(getattr(pair, guardian_on), person(), guardian)
        server = getattr(pair, child_on)
        with server.client("registrar") as registrar:
            waiting = start(registrar, person(birth=date(2020, 3, 1)), child)
            waiting = submit(registrar, waiting.verification_id, server.sms_code(waiting.verification_id))
            assert waiting.status == STATUS.Value("VERIFICATION_STATUS_NEEDS_GUARDIAN_CONSENT")
            registrar.consent.GrantConsent(
                consent_pb2.GrantConsentRequest(
                    account_id=child,
                    purpose="guardian",
                    text_version=text_version_of("guardian consent text"),
                    verification_id=waiting.verification_id,
                    guardian_account_id=guardian,
                    relationship=consent_pb2.GUARDIAN_RELATIONSHIP_PARENT,
                )
            )
        with pair.new.client("platform") as platform:
            assert get_account(platform, child).verified
            assert get_account(platform, child).age_band == account_pb2.AGE_BAND_UNDER_14

    def test_both_refuse_to_rebind_an_account_to_another_person(self, pair: Pair) -> None:
        """The rule is the same in both releases, so neither can leave the other's claim on a stranger."""
        alice, carol = person(), person()
        bind(pair.new, alice, "rolling-rebound")
        for server in (pair.old, pair.new):
            with server.client("registrar") as registrar:
                refused = verify(server, registrar, carol, "rolling-rebound")
            assert refused.status == STATUS.Value("VERIFICATION_STATUS_REJECTED"), server.directory.name
            assert refused.reason_code == "ACCOUNT_BOUND_TO_OTHER_IDENTITY", server.directory.name
        # The same person again, through the old release: the new release's fields still fit.
        bind(pair.old, alice, "rolling-rebound")
        with pair.new.client("registrar") as registrar, pair.new.client("platform") as platform:
            account = get_account(platform, "rolling-rebound")
            assert account.verified
            assert account.age_band == account_pb2.AGE_BAND_ADULT
            assert check(registrar, "rolling-rebound", alice.subject())
            assert not check(registrar, "rolling-rebound", carol.subject())

    @pytest.mark.parametrize(("first", "second"), [("old", "new"), ("new", "old")])
    def test_a_verification_started_by_one_is_completed_by_the_other(
        self, pair: Pair, first: str, second: str
    ) -> None:
        starter, finisher = getattr(pair, first), getattr(pair, second)
        dave = person()
        account = f"rolling-{first}-{second}"
        with starter.client("registrar") as registrar:
            started = start(registrar, dave, account)
        code = starter.sms_code(started.verification_id)
        with finisher.client("registrar") as registrar, finisher.client("platform") as platform:
            done = submit(registrar, started.verification_id, code)
            assert done.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")
            assert get_account(platform, account).verified
            assert check(registrar, account, dave.subject())

    def test_a_retry_reaching_the_old_release_after_the_new_one_gave_up_starts_there(
        self, pair: Pair
    ) -> None:
        """A 0.2.0 attempt that gave up leaves nothing 0.1.0 misreads: its retry starts there.

        The reservation and release are this release's own scripts on the account's key, as an
        attempt whose caller gave up runs them; 0.1.0 then gets the caller's retry with the same
        request id, under the key it knows (the request id's alone).
        """
        keyring = load_keyring(path=pair.new.data_dir / "keyring.json")
        keys = TenantKeys("default")
        request_id = f"rolling-released-{secrets.token_hex(4)}"
        account_ps = keyring.pseudonym("default", "account", "rolling-released")
        ref = request_ref(keyring, "default", account_ps, request_id)
        gave_up = secrets.token_hex(16)
        asyncio.run(reserve_and_release(pair.url, keys, keys.request(ref.pseudonym), gave_up))
        assert pair.store.exists(keys.request_released(gave_up))

        with pair.old.client("registrar") as registrar:
            retried = start(registrar, person(), "rolling-released", request_id=request_id)
        assert retried.verification_id != gave_up
        assert pair.store.get(keys.request(ref.legacy_pseudonym)) == retried.verification_id.encode()
        code = pair.old.sms_code(retried.verification_id)
        with pair.new.client("registrar") as registrar:
            done = submit(registrar, retried.verification_id, code)
        assert done.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")

    def test_a_retry_reaching_the_new_release_finds_what_the_old_one_started(self, pair: Pair) -> None:
        """0.1.0 keyed the request id alone: this release reads that key where the account's is absent.

        The account's retry gets 0.1.0's verification (no second code); another account reusing
        the request id starts its own and gets nothing of it.
        """
        request_id, gina = f"rolling-retried-{secrets.token_hex(4)}", person()
        with pair.old.client("registrar") as registrar:
            first = start(registrar, gina, "rolling-retried", request_id=request_id)
        with pair.new.client("registrar") as registrar:
            again = start(registrar, gina, "rolling-retried", request_id=request_id)
            other = start(registrar, person(), "rolling-retried-other", request_id=request_id)
        assert again.verification_id == first.verification_id
        assert f"(verification {first.verification_id})" not in pair.new.log_text()
        assert other.verification_id != first.verification_id
        assert other.account_id == "rolling-retried-other"

    def test_a_retry_reaching_the_old_release_after_the_new_one_started_starts_again(
        self, pair: Pair
    ) -> None:
        """The one thing a rollout costs a retry: 0.1.0 does not read the account's key.

        README ("Upgrading") says so: a start's retry that reaches 0.1.0 starts a second
        verification, as a retry with a new request id would.
        """
        request_id, hank = f"rolling-forward-{secrets.token_hex(4)}", person()
        with pair.new.client("registrar") as registrar:
            first = start(registrar, hank, "rolling-forward", request_id=request_id)
        with pair.old.client("registrar") as registrar:
            again = start(registrar, hank, "rolling-forward", request_id=request_id)
        assert again.verification_id != first.verification_id

    def test_one_log_verifies_from_both_releases_heads(self, pair: Pair) -> None:
        heads = []
        for server in (pair.old, pair.new, pair.old):
            bind(server, person(), f"rolling-log-{len(heads)}")
            with server.client("auditor") as auditor:
                heads.append(auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head)
        assert [head.tree_size for head in heads] == sorted(head.tree_size for head in heads)
        with pair.new.client("auditor") as auditor:
            for older, newer in itertools.pairwise(heads):
                if older.tree_size == newer.tree_size:
                    assert older.root_hash == newer.root_hash
                    continue
                proof = auditor.audit.GetConsistencyProof(
                    audit_pb2.GetConsistencyProofRequest(first=older.tree_size, second=newer.tree_size)
                )
                merkle.verify_consistency(
                    older.tree_size, newer.tree_size, list(proof.hashes), older.root_hash, newer.root_hash
                )

    def test_the_old_worker_erases_an_account_the_new_release_bound(self, pair: Pair) -> None:
        """Nothing of it is left but audit entries and counters that expire within a day."""
        erin = person()
        bind(pair.new, erin, "rolling-erased")
        keyring = load_keyring(path=pair.new.data_dir / "keyring.json")
        with pair.new.client("platform") as platform:
            cancel(platform, "rolling-erased")
        wait_for(lambda: _erased(pair.store, keyring.pseudonym("default", "audit", "rolling-erased")))
        account_ps = keyring.pseudonym("default", "account", "rolling-erased").encode()
        left = [key for key in holders(pair.store, account_ps) if b":audit:" not in key]
        assert all(pair.store.ttl(key) > 0 for key in left), left

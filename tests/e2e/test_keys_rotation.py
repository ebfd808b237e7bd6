"""Key rotation online: a new wrapping key with an interrupted and resumed reindex, and a lazy pepper."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from idverify.client import Client
from idverify.privacy.keyring import load_keyring, save_keyring_file
from idverify.store.keys import GlobalKeys
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, admin_pb2, verification_pb2

from .conftest import Identity, embedded_redis, person, start, submit, verify
from .webhook_receiver import Receiver

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
VERIFIED = STATUS.Value("VERIFICATION_STATUS_VERIFIED")
CONFIG = """
keyring_reload_seconds = 0.3

[rate_limits]
per_principal_per_minute = 100000
per_identity_per_hour = 100000
code_sends_per_phone_per_hour = 100000

# Every sms verification here establishes its document's name, so that another name is refused.
[tenants.default]
claim_assurance = "low"
"""
_USAGE = re.compile(
    r"^\s+(w\d+): (\d+) identities, (\d+) verifications, (\d+) forwarding, (\d+) accounts, "
    r"(\d+) event accounts, \d+ webhook secrets$",
    re.MULTILINE,
)
_WEBHOOK_SECRETS = re.compile(r"^\s+(w\d+): .* (\d+) webhook secrets$", re.MULTILINE)
_PEPPERS = re.compile(r"^\s+(p\d+): (\d+) identity indexes$", re.MULTILINE)


def keys(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``idverify keys ...`` against a server's data directory and configuration."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "idverify",
            "keys",
            "--data-dir",
            str(server.data_dir),
            "--config",
            str(server.directory / "idverify.toml"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")},
    )


def ok(server: ServerProcess, *args: str) -> str:
    done = keys(server, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def usage(server: ServerProcess) -> tuple[Counter[str], Counter[str], Counter[str], Counter[str]]:
    """Identities, verifications and accounts per wrapping key, identities per pepper (``keys status``)."""
    text = ok(server, "status")
    identities: Counter[str] = Counter()
    verifications: Counter[str] = Counter()
    peppers: Counter[str] = Counter()
    accounts: Counter[str] = Counter()
    for version, ids, vfs, _, accts, event_accts in _USAGE.findall(text):
        identities[version] += int(ids)
        verifications[version] += int(vfs)
        # Accounts' own sealed values and their ids kept for events: both must move on.
        accounts[version] += int(accts) + int(event_accts)
    for version, count in _PEPPERS.findall(text):
        peppers[version] += int(count)
    return identities, verifications, peppers, accounts


def wait_for_servers(server: ServerProcess, condition: Callable[[dict[str, object]], bool]) -> None:
    """Waits until every running server reports a keyring that satisfies ``condition``."""
    store = embedded_redis(server)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        reports = [
            json.loads(store.get(k) or b"{}") for k in store.scan_iter(match=b"iv1:{global}:keyring:*")
        ]
        if reports and all(condition(report) for report in reports):
            return
        time.sleep(0.1)
    raise AssertionError("servers did not load the keyring in time")


def check(client: Client, account: str, identity: Identity) -> bool:
    return client.verification.CheckIdentity(
        verification_pb2.CheckIdentityRequest(account_id=account, subject=identity.subject())
    ).match


class TestWrappingKeyRotation:
    def test_reindex_interrupted_and_resumed_while_lookups_stay_right(self, tmp_path: Path) -> None:
        """add, rotate, half a reindex, lookups and bindings across both keys, resume, retire."""
        people = [person() for _ in range(10)]
        stranger, late = person(), person()
        with ServerProcess(tmp_path, config=CONFIG) as server, server.client() as registrar:
            for n, someone in enumerate(people):
                assert verify(server, registrar, someone, f"rot-{n}").status == VERIFIED
            pending = start(registrar, late, "rot-pending")
            code = server.sms_code(pending.verification_id)

            assert "added w2" in ok(server, "add")
            assert "w2 is the write version" in ok(server, "rotate")
            wait_for_servers(server, lambda report: report["wrapping_current"] == "w2")

            assert "stopped" in ok(server, "reindex", "--limit", "3", "--batch", "2", "--no-progress")
            identities, _, _, _ = usage(server)
            assert identities["w1"] > 0
            assert identities["w2"] > 0
            retire = keys(server, "retire", "w1")
            assert retire.returncode == 1
            assert "remain under w1" in retire.stderr

            # Lookups under both keys, halfway through.
            for n, someone in enumerate(people):
                assert check(registrar, f"rot-{n}", someone)
            assert not check(registrar, "rot-0", stranger)
            assert not check(registrar, "rot-0", people[1])
            # Verifying again, or on a new account, finds the identity wherever it is sealed.
            assert verify(server, registrar, people[-1], "rot-9").status == VERIFIED
            assert verify(server, registrar, people[0], "rot-0-second").status == VERIFIED
            impostor = start(registrar, people[1], "rot-1-impostor", name=stranger.name)
            refused = submit(registrar, impostor.verification_id, server.sms_code(impostor.verification_id))
            assert refused.reason_code == "NAME_MISMATCH"
            # A challenge sent under the old key still completes.
            assert submit(registrar, pending.verification_id, code).status == VERIFIED

            assert "done" in ok(server, "reindex", "--no-progress")
            identities, verifications, _, accounts = usage(server)
            assert identities["w1"] == 0
            assert verifications["w1"] == 0
            assert accounts["w1"] == 0
            assert identities["w2"] == len(people) + 1
            assert "retired w1" in ok(server, "retire", "w1")
            wait_for_servers(server, lambda report: report["wrapping"] == ["w2"])
            assert load_keyring(path=server.data_dir / "keyring.json").wrapping_versions == ("w2",)

            for n, someone in enumerate(people):
                assert check(registrar, f"rot-{n}", someone)
            assert check(registrar, "rot-0-second", people[0])
            assert check(registrar, "rot-pending", late)
            assert verify(server, registrar, person(), "rot-after").status == VERIFIED
            with server.client("platform") as platform:
                assert platform.account.GetAccount(
                    account_pb2.GetAccountRequest(account_id="rot-3")
                ).account.verified

    def test_webhook_secrets_are_resealed_and_still_sign_after_the_old_key_is_retired(
        self, tmp_path: Path
    ) -> None:
        config = (
            CONFIG
            + "\n[webhooks]\nallow_private_destinations = true\nscan_seconds = 0.2\nlease_seconds = 2\n"
        )
        with ServerProcess(tmp_path, config=config) as server, Receiver() as receiver:
            with server.client("admin") as admin:
                created = admin.admin.CreateWebhook(
                    admin_pb2.CreateWebhookRequest(url=receiver.url, event_types=["verification.verified"])
                )
            receiver.secret = created.secret
            assert "added w2" in ok(server, "add")
            assert "w2 is the write version" in ok(server, "rotate")
            wait_for_servers(server, lambda report: report["wrapping_current"] == "w2")
            assert dict(_WEBHOOK_SECRETS.findall(ok(server, "status"))) == {"w1": "1"}
            assert "done" in ok(server, "reindex", "--no-progress")
            assert dict(_WEBHOOK_SECRETS.findall(ok(server, "status"))) == {"w2": "1"}
            assert "retired w1" in ok(server, "retire", "w1")
            wait_for_servers(server, lambda report: report["wrapping"] == ["w2"])
            with server.client() as registrar:
                assert verify(server, registrar, person(), "hook-after").status == VERIFIED
            (delivered,) = receiver.wait_for(lambda d: len(d) >= 1)
            assert delivered.payload["data"]["accountId"] == "hook-after"
            assert not receiver.refused

    def test_reindex_waits_for_servers_that_have_not_loaded_the_key(self, tmp_path: Path) -> None:
        """A reindex refuses to start while a running server does not write under the new key yet."""
        with ServerProcess(tmp_path, config=CONFIG) as server:
            store = embedded_redis(server)
            store.set(
                "iv1:{global}:keyring:stale",
                json.dumps({"wrapping_current": "w1", "wrapping": ["w1"], "pepper_current": "p1"}),
                px=60_000,
            )
            ok(server, "add")
            ok(server, "rotate")
            refused = keys(server, "reindex", "--wait", "1", "--no-progress")
            assert refused.returncode == 1
            assert "stale" in refused.stderr

    def test_a_key_is_not_retired_while_an_account_birth_date_is_sealed_under_it(
        self, tmp_path: Path
    ) -> None:
        """Accounts' birth dates are counted by status and retire, and re-sealed by a reindex."""
        with ServerProcess(tmp_path, config=CONFIG) as server, server.client() as registrar:
            assert verify(server, registrar, person(), "born").status == VERIFIED
            store = embedded_redis(server)
            keyring = load_keyring(path=server.data_dir / "keyring.json")
            key = f"iv1:{{t:default}}:acct:{keyring.pseudonym('default', 'account', 'born')}"
            under_w1 = store.hget(key, "birth_sealed")
            assert under_w1
            assert under_w1.startswith(b"w1:")
            ok(server, "add")
            ok(server, "rotate")
            wait_for_servers(server, lambda report: report["wrapping_current"] == "w2")
            assert "done" in ok(server, "reindex", "--no-progress")
            assert (store.hget(key, "birth_sealed") or b"").startswith(b"w2:")

            # An account the reindex did not reach (as if it stopped there): w1 cannot go.
            store.hset(key, "birth_sealed", under_w1)
            assert usage(server)[3]["w1"] == 1
            refused = keys(server, "retire", "w1")
            assert refused.returncode == 1
            assert "remain under w1" in refused.stderr

            assert "done" in ok(server, "reindex", "--no-progress")
            assert usage(server)[3]["w1"] == 0
            assert "retired w1" in ok(server, "retire", "w1")
            wait_for_servers(server, lambda report: report["wrapping"] == ["w2"])
            with server.client("platform") as platform:
                found = platform.account.GetAccount(account_pb2.GetAccountRequest(account_id="born")).account
            assert (found.age_band, found.age_source) == (
                account_pb2.AGE_BAND_ADULT,
                account_pb2.AGE_SOURCE_DOCUMENT,
            )


class TestPepperRotation:
    def test_a_new_pepper_is_adopted_when_an_identity_is_next_presented(self, tmp_path: Path) -> None:
        """Old records stay readable; each moves to the new pepper at its next verification."""
        alice, bob = person(), person()
        with ServerProcess(tmp_path, config=CONFIG) as server, server.client() as registrar:
            verify(server, registrar, alice, "pep-a")
            verify(server, registrar, bob, "pep-b")
            assert "added p2" in ok(server, "add", "--pepper")
            ok(server, "rotate", "--pepper")
            wait_for_servers(server, lambda report: report["pepper_current"] == "p2")
            assert usage(server)[2] == Counter({"p1": 2})

            # Tokens and pseudonyms are pinned: the same client and accounts keep working.
            assert check(registrar, "pep-a", alice)
            assert check(registrar, "pep-b", bob)
            assert verify(server, registrar, alice, "pep-a").status == VERIFIED
            assert usage(server)[2] == Counter({"p1": 1, "p2": 1})
            assert check(registrar, "pep-a", alice)
            assert not check(registrar, "pep-a", bob)
            assert check(registrar, "pep-b", bob)

            assert verify(server, registrar, bob, "pep-b-second").status == VERIFIED
            assert usage(server)[2] == Counter({"p2": 2})
            assert check(registrar, "pep-b", bob)
            assert check(registrar, "pep-b-second", bob)
            refused = keys(server, "retire", "p1")
            assert refused.returncode == 2
            assert "pinned" in refused.stderr


class TestKeyringFileEdits:
    def test_a_version_added_to_the_file_is_recorded_before_it_is_taken(self, tmp_path: Path) -> None:
        """A hand-edited keyring: its new version's key check lands in Redis; a clashing one is refused."""
        with ServerProcess(tmp_path, config=CONFIG) as server:
            path = server.data_dir / "keyring.json"
            store = embedded_redis(server)
            first = load_keyring(path=path)
            grown = first.with_new_wrapping_key(make_current=False)
            (added,) = set(grown.wrapping_versions) - set(first.wrapping_versions)
            save_keyring_file(grown, path)
            wait_for_servers(server, lambda report: added in report["wrapping"])  # type: ignore[operator]
            assert store.hexists(GlobalKeys.KEYCHECK, f"w:{added}")

            # Another server recorded the next version with another secret: this file cannot be taken.
            clashing = grown.with_new_wrapping_key(make_current=False)
            (other,) = set(clashing.wrapping_versions) - set(grown.wrapping_versions)
            store.hset(GlobalKeys.KEYCHECK, f"w:{other}", "0" * 32)
            save_keyring_file(clashing, path)
            deadline = time.monotonic() + 20
            while "keyring file not taken" not in server.log_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert f"{other} (another secret)" in server.log_text()
            reports = [
                json.loads(store.get(k) or b"{}") for k in store.scan_iter(match=b"iv1:{global}:keyring:*")
            ]
            assert reports
            assert all(other not in report["wrapping"] for report in reports), reports

"""Cancellation unbinds at once; erasure follows on time, once, across restarts, and leaves no link."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
import redis

from idverify.audit.checkpoint import generate_signing_key_file
from idverify.client import Client
from idverify.domain.calendar import WorkingCalendar, erasure_due_at
from idverify.domain.consent import text_version_of
from idverify.domain.subjects import DocumentType
from idverify.privacy.keyring import Keyring, load_keyring
from idverify.privacy.name_binding import claim_tag
from idverify.testing import RedisProcess, ServerProcess, free_port
from idverify.v1 import account_pb2, consent_pb2, verification_pb2

from .conftest import (
    Identity,
    embedded_redis,
    person,
    record_login_ip,
    rich_error,
    start,
    submit,
    verify,
    wrong_code,
)

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
LOOSE_LIMITS = """
[rate_limits]
per_principal_per_minute = 100000
per_identity_per_hour = 100000
code_sends_per_phone_per_hour = 100000
"""
ERASE_AT_ONCE = "[erasure]\nworking_days = 0\npoll_seconds = 0.2\n" + LOOSE_LIMITS
NO_WORKER = "[erasure]\nworking_days = 0\nworker = false\n" + LOOSE_LIMITS
# Keys that hold lasting records; every other key of a tenant must expire on its own.
# "events": the outbox, trimmed by age rather than by TTL, and the ids of bound accounts (a
# verification that binds nothing leaves none: checked below).
LASTING_KINDS = {"acct", "id", "idacc", "consent", "audit", "client", "clients", "erasure", "events"}


def cancel(client: Client, account: str) -> datetime:
    answer = client.account.CancelAccount(account_pb2.CancelAccountRequest(account_id=account))
    return answer.erasure_due_at.ToDatetime(tzinfo=UTC)


def get_account(client: Client, account: str) -> account_pb2.Account:
    return client.account.GetAccount(account_pb2.GetAccountRequest(account_id=account)).account


def check(client: Client, account: str, subject: object) -> bool:
    return client.verification.CheckIdentity(
        verification_pb2.CheckIdentityRequest(account_id=account, subject=subject)  # type: ignore[arg-type]
    ).match


def holders(store: redis.Redis, needle: bytes) -> list[bytes]:
    """The keys whose name or value contains ``needle``."""
    return [key for key in store.scan_iter(count=1000) if needle in key or needle in contents(store, key)]


def contents(store: redis.Redis, key: bytes) -> bytes:
    """Everything a key holds, as one blob to search."""
    kind = store.type(key)
    if kind == b"string":
        return store.get(key) or b""
    if kind == b"hash":
        return b"\n".join(b"%s=%s" % item for item in store.hgetall(key).items())
    if kind == b"set":
        return b"\n".join(store.smembers(key))
    if kind == b"zset":
        return b"\n".join(store.zrange(key, 0, -1))
    if kind == b"list":
        return b"\n".join(store.lrange(key, 0, -1))
    return b""


def audit_entries(store: redis.Redis, event_type: str, tenant: str = "default") -> list[bytes]:
    """The tenant's audit entries of one type, whatever the log's layout."""
    log_key = f"iv1:{{t:{tenant}}}:audit:log"
    kind = store.type(log_key)
    if kind == b"hash":
        entries = list(store.hvals(log_key))
    elif kind == b"list":
        entries = list(store.lrange(log_key, 0, -1))
    else:
        entries = []
    return [entry for entry in entries if f'"{event_type}"'.encode() in entry]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def erasure_status(server: ServerProcess) -> str:
    """``idverify erasure status`` for a server's data directory and configuration."""
    command = [sys.executable, "-m", "idverify", "erasure", "--data-dir", str(server.data_dir)]
    if server.config:
        command += ["--config", str(server.directory / "idverify.toml")]
    if server.redis_url:
        command += ["--redis-url", server.redis_url]
    done = subprocess.run(
        [*command, "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")} | server.env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def platform(server: ServerProcess) -> Iterator[Client]:
    """A platform client of the default server."""
    with server.client("platform") as client:
        yield client


@pytest.fixture(scope="module")
def eraser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose erasures fall due at once and whose worker looks five times a second."""
    with ServerProcess(tmp_path_factory.mktemp("eraser"), config=ERASE_AT_ONCE) as running:
        yield running


class TestCancel:
    def test_cancel_unbinds_at_once_and_gives_the_due_date(
        self, server: ServerProcess, registrar: Client, platform: Client
    ) -> None:
        """It reads unverified at once, its identity no longer matches; due 15 working days on."""
        alice = person()
        verify(server, registrar, alice, "cancel-now")
        assert check(registrar, "cancel-now", alice.subject())
        before = datetime.now(UTC)
        due = cancel(platform, "cancel-now")
        expected = {
            erasure_due_at(moment, 15, WorkingCalendar(), ZoneInfo("Asia/Shanghai"))
            for moment in (before, datetime.now(UTC))
        }
        assert due in expected
        assert due - before > timedelta(days=18)
        account = get_account(platform, "cancel-now")
        assert not account.verified
        assert not account.method_id
        assert account.erasure_due_at.ToDatetime(tzinfo=UTC) == due
        assert not check(registrar, "cancel-now", alice.subject())
        assert cancel(platform, "cancel-now") == due
        with pytest.raises(grpc.RpcError) as refused:
            start(registrar, alice, "cancel-now")
        assert rich_error(refused.value) == ("ACCOUNT_CANCELLED", "account_id")
        assert "cancel-now" not in erasure_status(server)
        assert "pending" in erasure_status(server)

    def test_cancel_ends_pending_verifications(
        self, server: ServerProcess, registrar: Client, platform: Client
    ) -> None:
        """A verification waiting for its code ends REJECTED / ACCOUNT_CANCELLED; the code is refused."""
        started = start(registrar, person(), "cancel-pending")
        code = server.sms_code(started.verification_id)
        cancel(platform, "cancel-pending")
        now = registrar.verification.GetVerification(
            verification_pb2.GetVerificationRequest(verification_id=started.verification_id)
        ).verification
        assert (now.status, now.reason_code) == (
            STATUS.Value("VERIFICATION_STATUS_REJECTED"),
            "ACCOUNT_CANCELLED",
        )
        with pytest.raises(grpc.RpcError) as refused:
            submit(registrar, started.verification_id, code)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION

    def test_a_malformed_account_id_is_refused(self, platform: Client) -> None:
        """CancelAccount validates its account id like every other call."""
        with pytest.raises(grpc.RpcError) as refused:
            cancel(platform, "")
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


class TestTimeToLive:
    def test_failed_and_abandoned_verifications_keep_nothing_but_audit_entries(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """Sessions, requests, counters, consents given with them: everything of theirs expires."""
        failed = start(registrar, person(), "ttl-failed")
        code = server.sms_code(failed.verification_id)
        for _ in range(5):
            submit(registrar, failed.verification_id, wrong_code(code))
        start(registrar, person(), "ttl-abandoned")
        keyring = load_keyring(path=server.data_dir / "keyring.json")
        store = embedded_redis(server)
        for account in ("ttl-failed", "ttl-abandoned"):
            pseudonym = keyring.pseudonym("default", "account", account).encode()
            lasting = [k for k in store.scan_iter(match=b"*" + pseudonym + b"*") if store.pttl(k) < 0]
            assert lasting == [], account
            audit_ps = keyring.pseudonym("default", "audit", account)
            assert not store.hexists("iv1:{t:default}:events:acct", audit_ps), account
            assert not store.hexists(f"iv1:{{t:default}}:acct:{pseudonym.decode()}", "event_account"), account
        for key in store.scan_iter(match=b"iv1:{t:default}:*"):
            kind = key.split(b"}:", 1)[1].split(b":")[0].decode()
            if kind not in LASTING_KINDS:
                assert store.pttl(key) > 0, key


class TestErasure:
    def test_erasure_removes_every_link_and_the_identity_can_register_again(
        self, eraser: ServerProcess
    ) -> None:
        """After erasure no key or value links the account to the identity index; re-registering works."""
        bob = person()
        with eraser.client() as registrar, eraser.client("platform") as platform:
            verify(eraser, registrar, bob, "erase-me")
            record_login_ip(platform, "erase-me")
            registrar.consent.GrantConsent(
                consent_pb2.GrantConsentRequest(
                    account_id="erase-me", purpose="biometric", text_version=text_version_of("v9")
                )
            )
            pending = start(registrar, person(), "erase-me")
            keyring = load_keyring(path=eraser.data_dir / "keyring.json")
            store = embedded_redis(eraser)
            account_ps = keyring.pseudonym("default", "account", "erase-me")
            audit_ps = keyring.pseudonym("default", "audit", "erase-me")
            ref = store.hget(f"iv1:{{t:default}}:acct:{account_ps}", "identity")
            assert ref
            tag = claim_tag(keyring, "default", DocumentType.CN_RIC.value, bob.number, bob.name)
            assert store.hget(f"iv1:{{t:default}}:acct:{account_ps}", "name_tag") == tag.encode()
            cancel(platform, "erase-me")
            wait_for(lambda: _erased(store, audit_ps) and not store.zcard("iv1:{t:default}:erasure:due"))
            for needle in (
                account_ps.encode(),
                tag.encode(),
                ref,
                ref.split(b":", 1)[1],
                b"erase-me",
            ):
                assert holders(store, needle) == [], needle
            # The verification ids stay in the audit log (and in request keys until they expire);
            # their records, which linked them to the identity, are gone.
            assert not store.exists(f"iv1:{{t:default}}:vf:{pending.verification_id}")
            assert len(audit_entries(store, "identity.erased")) >= 1
            assert not get_account(platform, "erase-me").verified
            again = verify(eraser, registrar, bob, "erase-me-again")
            assert again.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")
            assert check(registrar, "erase-me-again", bob.subject())

    def test_every_key_tied_to_the_account_is_gone_but_the_audit_log(self, eraser: ServerProcess) -> None:
        """Lists every key and file tied to an account in each of its stores before erasure, none after.

        The account has a binding with its claim tag and sealed birth date, consents, an IP
        label, a CheckIdentity mismatch counted against it, and a verification refused because
        its phone was locked. Afterwards its pseudonyms, identity and sealed birth date are in
        the audit log's keys only.
        """
        erin = person()
        with eraser.client() as registrar, eraser.client("platform") as platform:
            verify(eraser, registrar, erin, "erase-all")
            record_login_ip(platform, "erase-all")
            registrar.consent.GrantConsent(
                consent_pb2.GrantConsentRequest(
                    account_id="erase-all", purpose="biometric", text_version=text_version_of("v9")
                )
            )
            assert not check(registrar, "erase-all", erin.subject(name=erin.name + "明"))
            locked = lock_phone_of_a_verification(eraser, registrar, "erase-all")
            keyring = load_keyring(path=eraser.data_dir / "keyring.json")
            store = embedded_redis(eraser)
            account_key = f"iv1:{{t:default}}:acct:{keyring.pseudonym('default', 'account', 'erase-all')}"
            ref, birth_sealed, event_account = store.hmget(
                account_key, "identity", "birth_sealed", "event_account"
            )
            assert ref
            assert birth_sealed
            assert event_account  # the account's id for its events, sealed, kept in the account
            needles = {
                keyring.pseudonym("default", "account", "erase-all").encode(),
                keyring.pseudonym("default", "audit", "erase-all").encode(),
                claim_tag(keyring, "default", DocumentType.CN_RIC.value, erin.number, erin.name).encode(),
                ref,
                ref.split(b":", 1)[1],
                birth_sealed,
                event_account,
                store.hget(f"iv1:{{t:default}}:vf:{locked}", "otp_ps") or b"?",
                b"erase-all",
            }
            before = families(tied_keys(store, needles))
            # Files: only Redis's own (their keys are listed here; the AOF keeps erased writes
            # until rewritten, as ARCHITECTURE's retention table says) may hold any of them.
            assert files_holding(eraser.data_dir, needles) == set()
            assert {
                "acct",
                "id",
                "idacc",
                "consent",
                "acctvf",
                "vf",
                "otpfail",
                "chkfail:acct",
                "rl:phone_locked_audited",
                "audit:log",
            } <= before, before
            cancel(platform, "erase-all")
            wait_for(
                lambda: (
                    _erased(store, keyring.pseudonym("default", "audit", "erase-all"))
                    and not store.zcard("iv1:{t:default}:erasure:due")
                )
            )
            after = families(tied_keys(store, needles))
            assert files_holding(eraser.data_dir, needles) == set()
            assert after, "the audit log keeps the account's pseudonymous entries"
            assert {family for family in after if not family.startswith("audit:")} == set(), after

    def test_an_identity_still_bound_elsewhere_is_kept(self, eraser: ServerProcess) -> None:
        """Erasing one of two accounts of an identity keeps the identity for the other."""
        carol = person()
        with eraser.client() as registrar, eraser.client("platform") as platform:
            verify(eraser, registrar, carol, "shared-1")
            verify(eraser, registrar, carol, "shared-2")
            keyring = load_keyring(path=eraser.data_dir / "keyring.json")
            store = embedded_redis(eraser)
            cancel(platform, "shared-1")
            wait_for(lambda: _erased(store, keyring.pseudonym("default", "audit", "shared-1")))
            assert check(registrar, "shared-2", carol.subject())
            assert get_account(platform, "shared-2").verified


def lock_phone_of_a_verification(server: ServerProcess, registrar: Client, account: str) -> str:
    """Starts a verification for ``account``, then locks its phone with another account's wrong codes.

    One wrong code of its own is counted under the account and phone; its right code is then
    refused PHONE_LOCKED, which leaves the lock's audit marker under the
    account's (account, phone) pseudonym. Returns the verification id.
    """
    someone = person()
    mine = start(registrar, someone, account)
    code = server.sms_code(mine.verification_id)
    submit(registrar, mine.verification_id, wrong_code(code))
    other = start(registrar, someone, f"{account}-neighbour")
    for _ in range(4):  # the phone's fifth wrong code (otp_failures_per_phone) locks it
        submit(registrar, other.verification_id, wrong_code(server.sms_code(other.verification_id)))
    with pytest.raises(grpc.RpcError) as refused:
        submit(registrar, mine.verification_id, code)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rich_error(refused.value)[0] == "PHONE_LOCKED"
    return mine.verification_id


def tied_keys(store: redis.Redis, needles: set[bytes]) -> set[bytes]:
    """Every key whose name or value holds one of ``needles``."""
    return {key for needle in needles for key in holders(store, needle)}


def files_holding(data_dir: Path, needles: set[bytes]) -> set[str]:
    """The files of a data directory, Redis's aside, whose name or bytes hold one of ``needles``."""
    found = set()
    for path in data_dir.rglob("*"):
        relative = path.relative_to(data_dir)
        if relative.parts[0] == "redis" or not path.is_file():
            continue
        data = path.read_bytes() + str(relative).encode()
        found |= {str(relative) for needle in needles if needle in data}
    assert any(data_dir.iterdir()), data_dir
    return found


def families(keys: set[bytes]) -> set[str]:
    """Each key's kind: its name after the hash tag up to its identifier (``rl:phone_locked_audited``)."""
    found = set()
    for key in keys:
        parts = key.split(b"}:", 1)[1].decode().split(":")
        found.add(":".join(parts[:2]) if parts[0] in {"rl", "chkfail", "audit"} else parts[0])
    return found


def _erased(store: redis.Redis, audit_ps: str) -> bool:
    return any(audit_ps.encode() in entry for entry in audit_entries(store, "account.erased"))


class TestRestart:
    def test_a_pending_erasure_survives_a_restart(self, tmp_path: Path) -> None:
        """Cancelled with no worker running, listed by the CLI while down, erased after a restart."""
        dave = person()
        first = ServerProcess(tmp_path, config=NO_WORKER)
        with first:
            with first.client() as registrar, first.client("platform") as platform:
                verify(first, registrar, dave, "restart-me")
                cancel(platform, "restart-me")
            time.sleep(1.0)
            assert "account" in erasure_status(first)
        listing = erasure_status(first)  # the server is down: the CLI starts the embedded Redis itself
        assert "account" in listing
        assert "identity" in listing
        assert "1 overdue" not in listing
        second = ServerProcess(tmp_path, config=ERASE_AT_ONCE)
        with second:
            keyring = load_keyring(path=second.data_dir / "keyring.json")
            store = embedded_redis(second)
            wait_for(lambda: _erased(store, keyring.pseudonym("default", "audit", "restart-me")))
            assert "no pending erasures" in erasure_status(second)


class TestRace:
    def test_two_servers_racing_erase_each_account_once(self, tmp_path: Path) -> None:
        """Two servers (two worker processes each) on one Redis erase every due account once."""
        keyring_text = Keyring.generate().to_json()
        # Replicas on one Redis share the keyring and the audit signing key, as production does:
        # a server with a key of its own over the log is refused.
        signing_key = tmp_path / "audit-signing-key.pem"
        generate_signing_key_file(signing_key)
        env = {"IDVERIFY_KEYRING": keyring_text, "IDVERIFY_AUDIT_SIGNING_KEY": signing_key.read_text()}
        keyring = load_keyring(text=keyring_text)
        with RedisProcess(tmp_path / "redis", port=free_port()) as store_process:
            url = store_process.url
            setup = ServerProcess(tmp_path / "setup", config=NO_WORKER, redis_url=url, env=env)
            accounts = [f"race-erase-{n}" for n in range(30)]
            with setup, setup.client() as registrar, setup.client("platform") as platform:
                for account in accounts:
                    verify(setup, registrar, person(), account)
                for account in accounts:
                    cancel(platform, account)
            config = "[erasure]\nworking_days = 0\npoll_seconds = 0.05\n" + LOOSE_LIMITS
            racers = [
                ServerProcess(
                    tmp_path / f"racer-{n}",
                    config=config,
                    redis_url=url,
                    env=env,
                    extra_args=["--workers", "2"],
                )
                for n in range(2)
            ]
            store = redis.Redis.from_url(url)
            try:
                for racer in racers:
                    racer.start()
                wait_for(lambda: store.zcard("iv1:{t:default}:erasure:due") == 0, timeout=60)
            finally:
                for racer in racers:
                    racer.stop()
            erased = audit_entries(store, "account.erased")
            for account in accounts:
                audit_ps = keyring.pseudonym("default", "audit", account).encode()
                assert sum(audit_ps in entry for entry in erased) == 1, account
            assert len(erased) == len(accounts)
            assert len(audit_entries(store, "identity.erased")) == len(accounts)
            assert json.loads(erased[0])["type"] == "account.erased"


@pytest.fixture(scope="module")
def one_account_each(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server where an identity binds one account, so a binding left behind would show."""
    config = "[verification]\nbinding_limit = 1\n" + NO_WORKER
    with ServerProcess(tmp_path_factory.mktemp("one-account"), config=config) as running:
        yield running


class TestCancelRaces:
    ROUNDS = 25

    @pytest.mark.parametrize("already_bound", [False, True], ids=["first-signup", "re-verification"])
    def test_cancel_racing_a_verification_leaves_the_account_cancelled_and_unbound(
        self, one_account_each: ServerProcess, already_bound: bool
    ) -> None:
        """CancelAccount and the code submission that binds the account, at once.

        Whichever lands first, the account ends cancelled and unbound, and its identity (one
        account allowed) is free to bind another: no binding outlives the cancellation.
        """
        server = one_account_each
        outcomes: list[str] = []
        with server.client() as registrar, server.client("platform") as platform:
            for round_number in range(self.ROUNDS):
                identity = person()
                account = f"cancel-race-{already_bound}-{round_number}"
                if already_bound:
                    verify(server, registrar, identity, account)
                outcomes.append(self.race(server, registrar, platform, identity, account))

                after = get_account(platform, account)
                assert not after.verified, account
                assert after.HasField("erasure_due_at"), account
                assert not check(registrar, account, identity.subject()), account
                assert verify(server, registrar, identity, f"{account}-next").status == STATUS.Value(
                    "VERIFICATION_STATUS_VERIFIED"
                ), f"{account}: the cancelled account still holds the identity's only binding"
        assert set(outcomes) <= {"VERIFICATION_STATUS_VERIFIED", "FAILED_PRECONDITION"}, outcomes

    @staticmethod
    def race(
        server: ServerProcess, registrar: Client, platform: Client, identity: Identity, account: str
    ) -> str:
        """Submits the code that binds ``account`` while cancelling it; the submission's outcome.

        Each side waits a random few milliseconds (about one step's time) so that both orders,
        and overlaps of the two steps, come up over the rounds.
        """
        started = start(registrar, identity, account)
        code = server.sms_code(started.verification_id)
        starting_line = threading.Barrier(2)

        def bind() -> str:
            starting_line.wait()
            time.sleep(random.uniform(0, 0.01))  # noqa: S311 - jitter, not a secret
            try:
                return STATUS.Name(submit(registrar, started.verification_id, code).status)
            except grpc.RpcError as error:
                return error.code().name

        def cancel_soon() -> None:
            starting_line.wait()
            time.sleep(random.uniform(0, 0.01))  # noqa: S311 - jitter, not a secret
            cancel(platform, account)

        with ThreadPoolExecutor(max_workers=2) as pool:
            bound = pool.submit(bind)
            pool.submit(cancel_soon).result()
            return bound.result()

"""SMS pumping and code guessing across accounts, principals and tenants.

A dishonest registrar (or several, in several tenants) must not be able to send codes to
premium-rate destinations, to run past a send budget, or to buy fresh guesses at one phone with
fresh account ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import grpc
import pytest

from idverify.client import Client
from idverify.privacy.keyring import DEPLOYMENT_LABEL, load_keyring
from idverify.store.keys import PhoneKeys
from idverify.testing import ServerProcess
from idverify.v1 import admin_pb2, verification_pb2

from .conftest import Identity, embedded_redis, person, rich_error, start, submit, wrong_code

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
CHALLENGE_SENT = STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT")
REJECTED = STATUS.Value("VERIFICATION_STATUS_REJECTED")
CODE_LINE = re.compile(r"console SMS sender: code \d+ for ")

CONFIG = """
[sms_destinations]
default = ["852"]

[rate_limits]
code_sends_per_phone_all_tenants_per_hour = 3
code_sends_per_principal_per_minute = 6
code_sends_per_tenant_per_minute = 9
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose budgets are small enough to reach in a test."""
    with ServerProcess(tmp_path_factory.mktemp("sends"), config=CONFIG) as running:
        yield running


def another_registrar(server: ServerProcess, tenant: str = "default") -> Client:
    """A second registrar client of a tenant: another principal."""
    with server.client("admin", tenant=tenant) as admin:  # an admin manages its own tenant only
        created = admin.admin.CreateClient(
            admin_pb2.CreateClientRequest(tenant=tenant, role="registrar", description="second")
        )
    return Client(server.target, created.token, credentials=server.credentials)


def refusal(call: object) -> tuple[grpc.StatusCode, str]:
    """The status code and reason of a call that must fail."""
    with pytest.raises(grpc.RpcError) as refused:
        call()  # type: ignore[operator]
    return refused.value.code(), rich_error(refused.value)[0]


def codes_sent(server: ServerProcess) -> int:
    return len(CODE_LINE.findall(server.log_text()))


def audit_log(server: ServerProcess, tenant: str = "default") -> list[dict[str, object]]:
    with embedded_redis(server) as store:
        return [json.loads(entry) for entry in store.hvals(f"iv1:{{t:{tenant}}}:audit:log")]


class TestDestinations:
    def test_codes_go_only_to_mainland_mobiles_and_the_tenants_countries(self, server: ServerProcess) -> None:
        """+882 and +232 are refused (PHONE_DESTINATION_NOT_ALLOWED); +852 only where the tenant allows it."""
        with server.client() as registrar:
            for phone in ("+88212345678", "+23276123456", "0023276123456"):
                code, reason = refusal(
                    lambda p=phone: start(registrar, person(), "dest-acct", phone_number=p)
                )
                assert (code, reason) == (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "PHONE_DESTINATION_NOT_ALLOWED",
                )
            allowed = start(registrar, person(), "dest-acct", phone_number="+852 9123 4567")
            assert allowed.status == CHALLENGE_SENT
        with server.client(tenant="other") as other:
            code, reason = refusal(lambda: start(other, person(), "dest-acct", phone_number="+85291234568"))
            assert reason == "PHONE_DESTINATION_NOT_ALLOWED"
            assert start(other, person(), "dest-acct").status == CHALLENGE_SENT


class TestSendBudgets:
    def test_a_phone_send_counter_is_shared_by_all_tenants(self, server: ServerProcess) -> None:
        """A second tenant cannot send on once the phone's shared window is full; the hit is audited once."""
        target = person()
        with server.client(tenant="pump-a") as first, server.client(tenant="pump-b") as second:
            assert start(first, target, "pump-1").status == CHALLENGE_SENT
            assert start(first, target, "pump-2").status == CHALLENGE_SENT
            assert start(second, target, "pump-3").status == CHALLENGE_SENT
            before = codes_sent(server)
            for _ in range(2):
                code, reason = refusal(lambda: start(second, target, "pump-4"))
                assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "PHONE_RATE_LIMITED")
        assert codes_sent(server) == before
        hits = [entry for entry in audit_log(server, "pump-b") if entry["type"] == "rate_limit.hit"]
        assert [entry["attributes"] for entry in hits] == [{"limit": "phone_all_tenants"}]

    def test_principal_and_tenant_budgets_are_enforced_and_audited_once(self, server: ServerProcess) -> None:
        """Past 6 sends a minute a principal is refused, past 9 its tenant is; each hit is audited once."""
        tenant = "budget"
        with server.client(tenant=tenant) as first, another_registrar(server, tenant) as second:
            for n in range(6):
                assert start(first, person(), f"budget-{n}").status == CHALLENGE_SENT
            for _ in range(2):
                code, reason = refusal(lambda: start(first, person(), "budget-over"))
                assert (code, reason) == (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "PRINCIPAL_SEND_BUDGET_EXCEEDED",
                )
            for n in range(3):
                assert start(second, person(), f"budget-second-{n}").status == CHALLENGE_SENT
            for _ in range(2):
                code, reason = refusal(lambda: start(second, person(), "budget-over"))
                assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TENANT_SEND_BUDGET_EXCEEDED")
        hits = [entry for entry in audit_log(server, tenant) if entry["type"] == "rate_limit.hit"]
        assert sorted(entry["attributes"]["limit"] for entry in hits) == [  # type: ignore[index]
            "principal_sends_minute",
            "tenant_sends_minute",
        ]

    def test_a_count_that_fails_sends_nothing(self, server: ServerProcess) -> None:
        """When the phone's deployment-wide count cannot be made, the call fails and no code goes out."""
        target = person()
        keyring = load_keyring(path=server.data_dir / "keyring.json")
        phone = PhoneKeys(keyring.pseudonym(DEPLOYMENT_LABEL, "phone", f"+86{target.phone}"))
        with embedded_redis(server) as store:
            store.hset(phone.sends_this_hour(), "not", "a counter")
        try:
            before = codes_sent(server)
            with server.client(tenant="closed") as registrar:
                code, reason = refusal(lambda: start(registrar, target, "closed-acct"))
            assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "NOT_COUNTED")
            assert codes_sent(server) == before
        finally:
            with embedded_redis(server) as store:
                store.delete(phone.sends_this_hour())


def guess_wrong(server: ServerProcess, client: Client, identity: Identity, account: str, times: int) -> str:
    """Starts a verification and answers it wrongly; returns its id."""
    started = start(client, identity, account)
    assert started.status == CHALLENGE_SENT, started
    code = server.sms_code(started.verification_id)
    for _ in range(times):
        answer = submit(client, started.verification_id, wrong_code(code))
        assert answer.reason_code == "OTP_MISMATCH"
    return started.verification_id


class TestWrongCodesPerPhone:
    def test_fresh_accounts_and_tenants_buy_no_fresh_guesses_at_a_phone(self, server: ServerProcess) -> None:
        """Five wrong codes for a phone from any accounts and tenants lock it: no guesses, no codes."""
        target = person()
        with server.client(tenant="guess-a") as first, server.client(tenant="guess-b") as second:
            guess_wrong(server, first, target, "guess-1", 2)
            guess_wrong(server, first, target, "guess-2", 2)
            last = guess_wrong(server, second, target, "guess-3", 1)
            code = server.sms_code(last)
            assert refusal(lambda: submit(second, last, wrong_code(code))) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "PHONE_LOCKED",
            )
            # The right code meets the same lock: a locked phone tells no guess from the code.
            assert refusal(lambda: submit(second, last, code)) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "PHONE_LOCKED",
            )
            before = codes_sent(server)
            refused = start(second, target, "guess-4")
        assert (refused.status, refused.reason_code) == (REJECTED, "PHONE_LOCKED")
        assert codes_sent(server) == before
        rejected = [e for e in audit_log(server, "guess-b") if e["type"] == "verification.rejected"]
        assert [e["reason"] for e in rejected] == ["PHONE_LOCKED"]
        # The two answers refused at the lock: one entry, naming the verification they were for.
        locked = [
            e
            for e in audit_log(server, "guess-b")
            if e["type"] == "rate_limit.hit" and e["attributes"].get("limit") == "phone_locked"  # type: ignore[attr-defined]
        ]
        assert [e["verification_id"] for e in locked] == [last]

    def test_the_lock_lasts_one_failure_window(self, server: ServerProcess) -> None:
        """A locked phone opens again after the failure window (15 minutes by default), never later."""
        target = person()
        with server.client(tenant="window") as registrar:
            guess_wrong(server, registrar, target, "window-1", 3)
            guess_wrong(server, registrar, target, "window-2", 2)
        keyring = load_keyring(path=server.data_dir / "keyring.json")
        lock = PhoneKeys(keyring.pseudonym(DEPLOYMENT_LABEL, "phone", f"+86{target.phone}")).otp_failures()
        with embedded_redis(server) as store:
            assert int(store.get(lock) or 0) == 5
            assert 890_000 < store.pttl(lock) <= 900_000

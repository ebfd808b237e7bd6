"""CheckIdentity is no oracle: wrong claims are capped per account and per caller, every check audited.

The attack this holds back: a registrar who knows an account holder's name, region and birth
date tried the 301 document numbers they leave open, one CheckIdentity each, and the one that
answered true was the number. Now an account answers five wrong claims a day and then refuses
every claim, the right one included, until its window ends.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date

import grpc
import pytest

from idverify.client import Client
from idverify.testing import ServerProcess
from idverify.v1 import admin_pb2, audit_pb2, common_pb2, verification_pb2

from .conftest import (
    IDENTITIES,
    Identity,
    embedded_redis,
    everything_stored,
    needles_of,
    person,
    ric,
    verify,
)
from .test_store_full import refusal as store_refusal

pytestmark = pytest.mark.e2e

PER_ACCOUNT = 5  # the default
PER_PRINCIPAL = 8
DAY_SECONDS = 86_400
# Document numbers guessed in this module: personal data of whoever holds them, so scanned for too.
GUESSED: set[str] = set()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = f"[rate_limits]\ncheck_identity_mismatches_per_principal_per_day = {PER_PRINCIPAL}\n"
    with ServerProcess(tmp_path_factory.mktemp("check-limits"), config=config) as running:
        yield running


def new_registrar(server: ServerProcess, tenant: str = "default") -> tuple[Client, str]:
    """A registrar client of its own (a principal no other test uses) and its audit label."""
    with server.client("admin", tenant=tenant) as admin:
        created = admin.admin.CreateClient(
            admin_pb2.CreateClientRequest(tenant=tenant, role="registrar", description="checks")
        )
    client = Client(server.target, created.token, credentials=server.credentials)
    return client, f"{tenant}/registrar/{created.client.client_id}"


def check(client: Client, account: str, subject: common_pb2.Subject) -> str:
    """``match``, ``mismatch``, or the reason of a RESOURCE_EXHAUSTED refusal."""
    try:
        answer = client.verification.CheckIdentity(
            verification_pb2.CheckIdentityRequest(account_id=account, subject=subject)
        )
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return refusal(error)[0]
    return "match" if answer.match else "mismatch"


def refusal(error: grpc.RpcError) -> tuple[str, float]:
    """The ErrorInfo reason and RetryInfo delay (seconds; -1 without one) of a refused call."""
    details = store_refusal(error)
    return details.reason, -1.0 if details.retry_seconds is None else details.retry_seconds


def refused_call(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value


def numbers_around(holder: Identity, count: int) -> list[str]:
    """``count`` valid numbers of the holder's region and birth date, the holder's among them."""
    region, birth = holder.number[:6], holder.number[6:14]
    born = date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))
    others = [ric(region, born, seq) for seq in range(1000)]
    guesses = [number for number in others if number != holder.number][: count - 1]
    guesses.insert(count * 2 // 3, holder.number)
    GUESSED.update(guesses)
    return guesses


def checked_events(server: ServerProcess, account: str) -> list[audit_pb2.AuditEvent]:
    with server.client("auditor") as auditor:
        answers = auditor.audit.QueryEvents(
            audit_pb2.QueryEventsRequest(event_types=["identity.checked"], account_id=account)
        )
        return [answer.event for answer in answers]


def expire_window(server: ServerProcess, counter: bytes) -> None:
    """Ends a window as a day's wait would: Redis expires the counter (the window is its TTL)."""
    store = embedded_redis(server)
    try:
        assert store.pexpire(counter, 1)
        # A check sent within that millisecond would still meet the counter: wait until it is gone.
        while store.exists(counter):
            time.sleep(0.01)
    finally:
        store.close()


def account_counters(server: ServerProcess) -> set[bytes]:
    store = embedded_redis(server)
    try:
        return set(store.scan_iter(match="iv1:{t:default}:chkfail:acct:*"))
    finally:
        store.close()


class TestPerAccount:
    def test_301_guesses_stop_after_five_mismatches_whatever_the_guess_until_the_window_ends(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """The issue's attack: five wrong numbers answered, then every guess refused, the right one too."""
        victim = person()
        verify(server, registrar, victim, "oracle-victim")
        guesses = numbers_around(victim, 301)
        counters_before = account_counters(server)
        attacker, label = new_registrar(server)
        with attacker:
            outcomes = [check(attacker, "oracle-victim", victim.subject(document_number=n)) for n in guesses]
            assert outcomes[:PER_ACCOUNT] == ["mismatch"] * PER_ACCOUNT
            assert set(outcomes[PER_ACCOUNT:]) == {"CHECK_LIMIT_REACHED"}
            assert "match" not in outcomes

            # The delay names the window's end: a day from the first mismatch.
            error = refused_call(
                lambda: attacker.verification.CheckIdentity(
                    verification_pb2.CheckIdentityRequest(
                        account_id="oracle-victim", subject=victim.subject()
                    )
                )
            )
            reason, delay = refusal(error)
            assert reason == "CHECK_LIMIT_REACHED"
            assert DAY_SECONDS - 600 < delay <= DAY_SECONDS

            # The owner's own registrar is refused too (the account's limit is the choice).
            assert check(registrar, "oracle-victim", victim.subject()) == "CHECK_LIMIT_REACHED"

            # A second account answers as before, for the same caller.
            bystander = person()
            verify(server, registrar, bystander, "oracle-bystander")
            assert check(attacker, "oracle-bystander", bystander.subject()) == "match"

            # The window ends: the right claim matches again, and a wrong one counts anew.
            (counter,) = account_counters(server) - counters_before
            expire_window(server, counter)
            assert check(attacker, "oracle-victim", victim.subject()) == "match"
            assert check(attacker, "oracle-victim", person().subject()) == "mismatch"

        events = checked_events(server, "oracle-victim")
        by_principal = Counter((event.principal, event.outcome) for event in events)
        assert by_principal[label, "mismatch"] == PER_ACCOUNT + 1
        assert by_principal[label, "refused"] == len(guesses) - PER_ACCOUNT + 1
        assert by_principal[label, "match"] == 1
        assert all(
            event.reason_code == "CHECK_LIMIT_REACHED" for event in events if event.outcome == "refused"
        )
        assert len(events) == len(guesses) + 4  # every check recorded, the owner's refused one too

    def test_malformed_claims_are_refused_uncounted(self, server: ServerProcess, registrar: Client) -> None:
        """A claim that fails validation is INVALID_ARGUMENT and costs the account none of its five."""
        owner = person()
        verify(server, registrar, owner, "oracle-malformed")
        bad_check = owner.number[:-1] + ("0" if owner.number[-1] != "0" else "1")
        for _ in range(PER_ACCOUNT + 2):
            error = refused_call(
                lambda: registrar.verification.CheckIdentity(
                    verification_pb2.CheckIdentityRequest(
                        account_id="oracle-malformed", subject=owner.subject(document_number=bad_check)
                    )
                )
            )
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert check(registrar, "oracle-malformed", owner.subject()) == "match"


class TestPerPrincipal:
    def test_a_caller_stops_at_its_own_daily_limit_and_other_callers_go_on(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """Mismatches spread over many accounts meet the caller's limit; nobody else is refused."""
        owner = person()
        verify(server, registrar, owner, "oracle-owner")
        prober, label = new_registrar(server)
        with prober:
            for n in range(PER_PRINCIPAL):
                # Two wrong claims an account: no account nears its own limit.
                assert check(prober, f"oracle-probe-{n // 2}", person().subject()) == "mismatch"
            assert check(prober, "oracle-owner", owner.subject()) == "PRINCIPAL_CHECK_LIMIT_REACHED"
            error = refused_call(
                lambda: prober.verification.CheckIdentity(
                    verification_pb2.CheckIdentityRequest(account_id="oracle-fresh", subject=owner.subject())
                )
            )
            reason, delay = refusal(error)
            assert reason == "PRINCIPAL_CHECK_LIMIT_REACHED"
            assert DAY_SECONDS - 600 < delay <= DAY_SECONDS
        # Another caller checks the same accounts as before.
        assert check(registrar, "oracle-owner", owner.subject()) == "match"
        assert check(registrar, "oracle-probe-0", person().subject()) == "mismatch"
        refused = [e for e in checked_events(server, "oracle-owner") if e.outcome == "refused"]
        assert [(e.principal, e.reason_code) for e in refused] == [(label, "PRINCIPAL_CHECK_LIMIT_REACHED")]


class TestCallers:
    def test_unauthenticated_and_wrong_role_callers_get_their_status(self, server: ServerProcess) -> None:
        someone = person()
        request = verification_pb2.CheckIdentityRequest(account_id="oracle-anyone", subject=someone.subject())
        with Client(server.target) as anonymous:
            assert refused_call(lambda: anonymous.verification.CheckIdentity(request)).code() == (
                grpc.StatusCode.UNAUTHENTICATED
            )
        with server.client("platform") as platform:
            assert refused_call(lambda: platform.verification.CheckIdentity(request)).code() == (
                grpc.StatusCode.PERMISSION_DENIED
            )
        assert checked_events(server, "oracle-anyone") == []

    def test_another_tenant_neither_sees_nor_spends_this_tenant_s_checks(
        self, server: ServerProcess, registrar: Client
    ) -> None:
        """The same account id in another tenant is another account, with counters of its own."""
        owner = person()
        verify(server, registrar, owner, "oracle-tenants")
        other, _ = new_registrar(server, tenant="tenant-b")
        with other:
            for _ in range(PER_ACCOUNT):
                assert check(other, "oracle-tenants", owner.subject()) == "mismatch"
            assert check(other, "oracle-tenants", owner.subject()) == "CHECK_LIMIT_REACHED"
        assert check(registrar, "oracle-tenants", owner.subject()) == "match"


def test_checks_leave_no_personal_data_in_redis_the_log_or_the_audit_log(server: ServerProcess) -> None:
    """Names and numbers claimed, right or wrong, are nowhere in the clear or plainly hashed."""
    with server.client("auditor") as auditor:
        leaves = [
            answer.leaf
            for answer in auditor.audit.QueryEvents(
                audit_pb2.QueryEventsRequest(event_types=["identity.checked"])
            )
        ]
    assert len(leaves) > 300
    haystack = [*leaves, *everything_stored(embedded_redis(server)), server.log_text().encode()]
    blob = b"\n".join(haystack)
    needles = set().union(*(needles_of(identity) for identity in IDENTITIES))
    for number in GUESSED:
        needles |= {number.encode(), hashlib.sha256(number.encode()).hexdigest().encode()}
    assert sorted(needle.decode() for needle in needles if needle in blob) == []

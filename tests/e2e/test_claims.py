"""Identity claims: a squatter cannot take a document, and nothing answers before possession.

The fake FaceID stands in for the authority (a method rated at the claim assurance); the
default ``sms`` method is rated LOW and never establishes a claim (README "Identity claims").
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from idverify.client import Client
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, audit_pb2, events_pb2, verification_pb2
from idverify.vendors.fakes import FakeTencent

from .conftest import Identity, person, rich_error, start, submit, verify
from .faceid import faceid_server, known
from .test_binding import LOOSE_LIMITS

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
VERIFIED = STATUS.Value("VERIFICATION_STATUS_VERIFIED")
REJECTED = STATUS.Value("VERIFICATION_STATUS_REJECTED")
CHALLENGE_SENT = STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT")

CONFIG = (
    LOOSE_LIMITS
    + """
[verification]
binding_limit = 5

[verifiers.authority]
vendor = "tencent"

[tenants.default.methods.sms]
steps = ["document", "sms_otp"]

[tenants.default.methods.authority]
assurance = "substantial"
steps = ["document", "authority"]
"""
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, faceid: FakeTencent) -> Iterator[ServerProcess]:
    with faceid_server(tmp_path_factory.mktemp("claims"), faceid, CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def platform(server: ServerProcess) -> Iterator[Client]:
    with server.client("platform") as client:
        yield client


def false_name(identity: Identity) -> str:
    """A name that is not the person's: the squatter's invention."""
    return "假" + identity.name[1:] if identity.name[0] != "假" else "冒" + identity.name[1:]


def squat(
    server: ServerProcess, registrar: Client, victim: Identity, account: str
) -> verification_pb2.Verification:
    """Squat by sms (LOW) with the victim's document under a false name and the squatter's own phone."""
    started = start(registrar, victim, account, name=false_name(victim), phone_number=person().phone)
    assert started.status == CHALLENGE_SENT, started
    return submit(registrar, started.verification_id, server.sms_code(started.verification_id))


def account(platform: Client, account_id: str) -> account_pb2.Account:
    return platform.account.GetAccount(account_pb2.GetAccountRequest(account_id=account_id)).account


class TestSquatters:
    def test_low_bindings_under_a_false_name_never_take_the_owners_places(
        self, server: ServerProcess, registrar: Client, platform: Client
    ) -> None:
        """With no authority involved, five squatters leave the owner's five places free."""
        owner = person()
        for n in range(5):
            assert squat(server, registrar, owner, f"sq-low-{n}").status == VERIFIED
        refused = squat(server, registrar, owner, "sq-low-5")
        assert (refused.status, refused.reason_code) == (REJECTED, "BINDING_LIMIT_REACHED")
        mine = verify(server, registrar, owner, "owner-low")
        assert mine.status == VERIFIED, mine
        assert account(platform, "owner-low").assurance == 1  # LOW

    def test_an_established_claim_supersedes_every_false_binding(
        self, server: ServerProcess, registrar: Client, platform: Client, faceid: FakeTencent
    ) -> None:
        """Five squatters, then the owner through the authority: owner VERIFIED, five superseded."""
        owner = known(faceid)
        squatters = [f"sq-{n}" for n in range(5)]
        for account_id in squatters:
            assert squat(server, registrar, owner, account_id).status == VERIFIED
        established = start(registrar, owner, "owner-auth", method="authority", consents=("identity",))
        assert established.status == VERIFIED, established
        for account_id in squatters:
            superseded = account(platform, account_id)
            assert not superseded.verified
            assert superseded.binding_state == account_pb2.BINDING_STATE_SUPERSEDED
            assert superseded.superseded_at.seconds > 0
        owned = account(platform, "owner-auth")
        assert owned.binding_state == account_pb2.BINDING_STATE_BOUND
        # The squatters' places are free: four more accounts of the owner bind (five in all).
        for n in range(4):
            assert verify(server, registrar, owner, f"owner-more-{n}").status == VERIFIED
        # The false name now fails after the right code, whoever tries and however.
        again = squat(server, registrar, owner, "sq-again")
        assert (again.status, again.reason_code) == (REJECTED, "NAME_MISMATCH")
        with server.client("auditor") as auditor:
            entries = list(
                auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest(event_types=["binding.superseded"]))
            )
        assert len([e for e in entries if e.event.verification_id == established.verification_id]) == 5
        # A platform learns of each supersession with the squatter's own account id, which the
        # owner's step never knew: each read from its account's hash (sealed there at binding).
        request = events_pb2.StreamEventsRequest(types=["binding.superseded"], until_caught_up=True)
        events = [reply.event for reply in platform.events.StreamEvents(request, timeout=30)]
        named = [e.account_id for e in events if e.verification_id == established.verification_id]
        assert sorted(named) == squatters

    def test_a_lower_method_never_supersedes_an_established_claim(
        self, server: ServerProcess, registrar: Client, platform: Client, faceid: FakeTencent
    ) -> None:
        """Once the authority established the owner's name, sms under another name binds nothing."""
        owner = known(faceid)
        assert (
            start(registrar, owner, "est-owner", method="authority", consents=("identity",)).status
            == VERIFIED
        )
        for n in range(3):
            answer = squat(server, registrar, owner, f"est-sq-{n}")
            assert (answer.status, answer.reason_code) == (REJECTED, "NAME_MISMATCH")
        assert account(platform, "est-owner").verified
        # The squatter's false name has used up its refusals for the day: its starts stop there.
        with pytest.raises(grpc.RpcError) as refused:
            start(registrar, owner, "est-sq-9", name=false_name(owner), phone_number=person().phone)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert rich_error(refused.value)[0] == "CLAIM_REFUSALS_LIMIT_REACHED"
        with pytest.raises(grpc.RpcError):
            start(registrar, owner, "est-sq-10", name=false_name(owner), phone_number=person().phone)
        # The first refusal of the day is audited, once, under the account that asked.
        with server.client("auditor") as auditor:
            hits = [
                found.event
                for found in auditor.audit.QueryEvents(
                    audit_pb2.QueryEventsRequest(event_types=["rate_limit.hit"], account_id="est-sq-9")
                )
            ]
        assert [hit.attributes["limit"] for hit in hits] == ["claim_refusals"]
        # ... and the owner, who presents the established name, is never refused by them.
        assert verify(server, registrar, owner, "est-owner-2").status == VERIFIED

    def test_an_authority_mismatch_is_the_authoritys_verdict(
        self, registrar: Client, faceid: FakeTencent
    ) -> None:
        """A squatter through the authority learns only what the authority itself answers."""
        owner = known(faceid)
        answer = start(
            registrar, owner, "auth-sq", method="authority", consents=("identity",), name=false_name(owner)
        )
        assert (answer.status, answer.reason_code) == (REJECTED, "AUTHORITY_MISMATCH")


class TestNoOracle:
    def test_the_first_reply_is_the_same_for_every_document(
        self, server: ServerProcess, registrar: Client, faceid: FakeTencent
    ) -> None:
        """Wrong name for an established document, a document at its limit, an unknown one: alike."""
        established = known(faceid)
        assert (
            start(registrar, established, "or-est", method="authority", consents=("identity",)).status
            == VERIFIED
        )
        full = person()
        for n in range(5):
            assert verify(server, registrar, full, f"or-full-{n}").status == VERIFIED
        unknown = person()
        replies = [
            start(registrar, established, "or-1", name=false_name(established), phone_number=person().phone),
            start(registrar, full, "or-2", phone_number=person().phone),
            start(registrar, unknown, "or-3"),
        ]

        def shape(reply: verification_pb2.Verification) -> tuple[object, ...]:
            fields = sorted(descriptor.name for descriptor, _ in reply.ListFields())
            return (reply.status, reply.reason_code, reply.next_step, reply.attempts_left, tuple(fields))

        assert len({shape(reply) for reply in replies}) == 1, [shape(r) for r in replies]
        assert replies[0].status == CHALLENGE_SENT
        # The records' verdicts come only after the right code.
        outcomes = [
            submit(registrar, reply.verification_id, server.sms_code(reply.verification_id)).reason_code
            for reply in replies
        ]
        assert outcomes == ["NAME_MISMATCH", "BINDING_LIMIT_REACHED", ""]


class TestRaces:
    def test_low_bindings_racing_an_establishing_one_end_consistent(
        self, server: ServerProcess, registrar: Client, platform: Client, faceid: FakeTencent
    ) -> None:
        """Whatever the order, every account still bound carries the established name."""
        owner = known(faceid)
        rng = random.Random(19)  # noqa: S311 - a reproducible interleaving, not a secret
        squatters = [f"race-sq-{n}" for n in range(12)]
        owners = [f"race-own-{n}" for n in range(3)]
        started = {
            account_id: start(
                registrar, owner, account_id, name=false_name(owner), phone_number=person().phone
            )
            for account_id in squatters
        }
        started.update({account_id: start(registrar, owner, account_id) for account_id in owners})
        codes = {a: server.sms_code(s.verification_id) for a, s in started.items()}
        jobs: list[tuple[str, str]] = [("code", a) for a in started] + [("authority", "race-auth")]
        rng.shuffle(jobs)

        def run(job: tuple[str, str]) -> verification_pb2.Verification:
            kind, account_id = job
            if kind == "authority":
                return start(registrar, owner, account_id, method="authority", consents=("identity",))
            return submit(registrar, started[account_id].verification_id, codes[account_id])

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = dict(zip([a for _, a in jobs], pool.map(run, jobs), strict=True))
        assert answers["race-auth"].status == VERIFIED
        for account_id in squatters:
            assert not account(platform, account_id).verified, account_id
        for account_id in [*owners, "race-auth"]:
            assert account(platform, account_id).verified, (account_id, answers[account_id])


class TestReverification:
    def test_the_account_shows_the_latest_method_and_its_highest_assurance(
        self, server: ServerProcess, registrar: Client, platform: Client, faceid: FakeTencent
    ) -> None:
        """By sms (LOW), then the authority (SUBSTANTIAL), then sms again: assurance stays SUBSTANTIAL."""
        owner = known(faceid)
        assert verify(server, registrar, owner, "rv-1").status == VERIFIED
        first = account(platform, "rv-1")
        assert (first.method_id, first.assurance) == ("sms", 1)
        assert start(registrar, owner, "rv-1", method="authority", consents=("identity",)).status == VERIFIED
        second = account(platform, "rv-1")
        assert (second.method_id, second.assurance) == ("authority", 2)
        assert second.verified_at.ToMilliseconds() >= first.verified_at.ToMilliseconds()
        assert verify(server, registrar, owner, "rv-1").status == VERIFIED
        third = account(platform, "rv-1")
        assert (third.method_id, third.assurance) == ("sms", 2)


class TestCheckIdentity:
    def test_each_account_matches_the_name_it_bound_under(
        self, server: ServerProcess, registrar: Client, faceid: FakeTencent
    ) -> None:
        """Before a claim is established, an account matches its own name; after, only the true one."""
        owner = known(faceid)
        assert squat(server, registrar, owner, "ci-sq").status == VERIFIED
        assert verify(server, registrar, owner, "ci-own").status == VERIFIED

        def matches(account_id: str, name: str) -> bool:
            request = verification_pb2.CheckIdentityRequest(
                account_id=account_id, subject=owner.subject(name=name)
            )
            return registrar.verification.CheckIdentity(request).match

        assert matches("ci-sq", false_name(owner))
        assert not matches("ci-sq", owner.name)
        assert matches("ci-own", owner.name)
        assert not matches("ci-own", false_name(owner))
        assert (
            start(registrar, owner, "ci-auth", method="authority", consents=("identity",)).status == VERIFIED
        )
        assert not matches("ci-sq", false_name(owner))
        assert matches("ci-own", owner.name)

"""Binding rules: per-identity account limits, idempotent re-verification, and the race."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from idverify.testing import ServerProcess
from idverify.v1 import verification_pb2

from .conftest import person, start, start_as_told, submit, verify

# Serial: two hundred concurrent verifications must each finish within their deadline.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]
STATUS = verification_pb2.VerificationStatus
# Two accounts per identity; sms establishes names here (claim_assurance = low), so that
# another name of a bound document is refused.
LIMIT_TWO = '[verification]\nbinding_limit = 2\n\n[tenants.default]\nclaim_assurance = "low"\n'
LOOSE_LIMITS = """
[rate_limits]
per_principal_per_minute = 100000
per_identity_per_hour = 100000
code_sends_per_phone_per_hour = 100000
code_sends_per_phone_all_tenants_per_hour = 100000
code_sends_per_phone_all_tenants_per_day = 100000
"""


@pytest.fixture(scope="module")
def limit_two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server where an identity binds at most two accounts."""
    with ServerProcess(tmp_path_factory.mktemp("limit2"), config=LIMIT_TWO) as running:
        yield running


@pytest.fixture(scope="module")
def limit_one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server where an identity binds one account, with rate limits out of the way."""
    config = "[verification]\nbinding_limit = 1\n" + LOOSE_LIMITS
    with ServerProcess(tmp_path_factory.mktemp("limit1"), config=config) as running:
        yield running


class TestLimits:
    def test_the_account_past_the_limit_is_refused(self, limit_two: ServerProcess) -> None:
        """The third account of one identity gets REJECTED / BINDING_LIMIT_REACHED."""
        identity = person()
        with limit_two.client() as registrar:
            assert verify(limit_two, registrar, identity, "bind-a").status == STATUS.Value(
                "VERIFICATION_STATUS_VERIFIED"
            )
            assert verify(limit_two, registrar, identity, "bind-b").status == STATUS.Value(
                "VERIFICATION_STATUS_VERIFIED"
            )
            third = verify(limit_two, registrar, identity, "bind-c")
        assert third.status == STATUS.Value("VERIFICATION_STATUS_REJECTED")
        assert third.reason_code == "BINDING_LIMIT_REACHED"

    def test_reverifying_a_bound_account_is_idempotent(self, limit_two: ServerProcess) -> None:
        """The same identity on an already-bound account verifies again without using a slot."""
        identity = person()
        with limit_two.client() as registrar:
            for _ in range(3):
                again = verify(limit_two, registrar, identity, "bind-same")
                assert again.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")
            assert verify(limit_two, registrar, identity, "bind-same-2").status == STATUS.Value(
                "VERIFICATION_STATUS_VERIFIED"
            )

    def test_a_bound_account_refuses_another_identity(self, limit_two: ServerProcess) -> None:
        """An account bound to one identity cannot be verified as another."""
        with limit_two.client() as registrar:
            verify(limit_two, registrar, person(), "bind-owned")
            other = verify(limit_two, registrar, person(), "bind-owned")
        assert other.status == STATUS.Value("VERIFICATION_STATUS_REJECTED")
        assert other.reason_code == "ACCOUNT_BOUND_TO_OTHER_IDENTITY"

    def test_another_name_for_an_established_number_is_refused(self, limit_two: ServerProcess) -> None:
        """A document whose name is established cannot be claimed under another, after the code."""
        identity, impostor = person(), person()
        with limit_two.client() as registrar:
            verify(limit_two, registrar, identity, "bind-name-1")
            started = start(registrar, identity, "bind-name-2", name=impostor.name)
            assert started.status == STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT")
            refused = submit(registrar, started.verification_id, limit_two.sms_code(started.verification_id))
        assert refused.status == STATUS.Value("VERIFICATION_STATUS_REJECTED")
        assert refused.reason_code == "NAME_MISMATCH"


class TestRace:
    def test_two_hundred_concurrent_verifications_bind_exactly_one(self, limit_one: ServerProcess) -> None:
        """200 concurrent signups of one identity with a limit of 1 bind exactly one account."""
        identity = person()
        accounts = [f"race-{n}" for n in range(200)]
        with limit_one.client() as registrar, ThreadPoolExecutor(max_workers=32) as pool:
            phones = [person().phone for _ in accounts]
            started = list(
                pool.map(lambda a, p: start_as_told(registrar, identity, a, phone_number=p), accounts, phones)
            )
            assert all(s.status == STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT") for s in started)
            codes = [limit_one.sms_code(s.verification_id) for s in started]
            answers = list(
                pool.map(
                    lambda pair: submit(registrar, pair[0].verification_id, pair[1]),
                    zip(started, codes, strict=True),
                )
            )
        verified = [a for a in answers if a.status == STATUS.Value("VERIFICATION_STATUS_VERIFIED")]
        refused = [a for a in answers if a.reason_code == "BINDING_LIMIT_REACHED"]
        assert (len(verified), len(refused)) == (1, 199)

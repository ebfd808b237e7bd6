"""Financial consent end to end: a bank-card method asks for it, granted on its own, with its text.

`idverify serve` runs against the local fake FaceID, which answers the bank's four-factor check.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import grpc
import pytest

from idverify.client import Client
from idverify.domain.consent import text_version_of
from idverify.testing import ServerProcess
from idverify.v1 import consent_pb2, verification_pb2
from idverify.vendors.fakes import FakeTencent, Person

from .conftest import (
    Identity,
    embedded_redis,
    error_metadata,
    everything_stored,
    person,
    rich_error,
    start,
    submit,
    text_versions,
)
from .faceid import faceid_server

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
CARD_TEXT = text_version_of("我们将您的银行卡号发送至发卡行仅用于核验您的身份。")
_cards = itertools.count(1)

CONFIG = """
[verifiers.authority]
vendor = "tencent"

[verifiers.bank_card_4factor]
vendor = "tencent"

[tenants.default.methods.sms]
steps = ["document", "sms_otp"]

[tenants.default.methods.authority]
assurance = "substantial"
steps = ["document", "authority"]

[tenants.default.methods.card]
assurance = "substantial"
steps = ["document", "bank_card_4factor"]

[tenants.default.methods.card_sms]
assurance = "substantial"
steps = ["document", "bank_card_4factor", "sms_otp"]
"""


@pytest.fixture(scope="module")
def card_server(tmp_path_factory: pytest.TempPathFactory, faceid: FakeTencent) -> Iterator[ServerProcess]:
    with faceid_server(tmp_path_factory.mktemp("cards"), faceid, CONFIG) as server:
        yield server


@pytest.fixture(scope="module")
def client(card_server: ServerProcess) -> Iterator[Client]:
    with card_server.client("registrar") as registrar:
        yield registrar


CARDS: list[str] = []


def card_holder(faceid: FakeTencent) -> tuple[Identity, str]:
    """A fresh test person with a card the fake bank knows (the card is recorded for the scan)."""
    identity = person()
    card = f"6222{next(_cards):015d}"
    CARDS.append(card)
    faceid.people[identity.number] = Person(identity.name, identity.number, identity.phone, card)
    return identity, card


def bank_card_checks(faceid: FakeTencent) -> int:
    return faceid.actions().count("BankCard4EVerification")


def listed(client: Client, account: str) -> dict[str, consent_pb2.Consent]:
    consents = client.consent.ListConsents(consent_pb2.ListConsentsRequest(account_id=account)).consents
    return {c.purpose: c for c in consents}


def grant(client: Client, account: str, purpose: str, version: str) -> consent_pb2.Consent:
    return client.consent.GrantConsent(
        consent_pb2.GrantConsentRequest(account_id=account, purpose=purpose, text_version=version)
    ).consent


def withdraw(client: Client, account: str, purpose: str) -> consent_pb2.Consent:
    return client.consent.WithdrawConsent(
        consent_pb2.WithdrawConsentRequest(account_id=account, purpose=purpose)
    ).consent


class TestCardMethods:
    def test_without_financial_consent_the_start_is_refused_with_fallbacks(
        self, client: Client, faceid: FakeTencent
    ) -> None:
        """No financial consent: CONSENT_REQUIRED, methods without a card offered, no card sent."""
        identity, card = card_holder(faceid)
        checks = bank_card_checks(faceid)
        with pytest.raises(grpc.RpcError) as refused:
            start(client, identity, "fin-none", method="card", bank_card_number=card)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert rich_error(refused.value) == ("CONSENT_REQUIRED", "consents")
        assert "financial" in (refused.value.details() or "")
        # card_sms reads the card too: it would be refused the same way.
        assert error_metadata(refused.value)["fallback_method_ids"] == "sms,authority"
        assert bank_card_checks(faceid) == checks
        assert listed(client, "fin-none") == {}

    def test_with_financial_consent_the_card_method_verifies(
        self, client: Client, faceid: FakeTencent
    ) -> None:
        """Financial consent with its text version lets the bank check run; the grant is recorded."""
        identity, card = card_holder(faceid)
        verification = start(
            client,
            identity,
            "fin-given",
            method="card",
            consents=("identity", "phone", "financial"),
            bank_card_number=card,
        )
        assert verification.status == STATUS.VERIFICATION_STATUS_VERIFIED, verification
        records = listed(client, "fin-given")
        assert records["financial"].granted
        assert records["financial"].text_version == text_versions(["financial"])["financial"]
        assert not records["financial"].HasField("cooldown_until")

    def test_a_standing_financial_grant_covers_the_start(self, client: Client, faceid: FakeTencent) -> None:
        """A financial consent granted beforehand covers a card start that does not repeat it."""
        identity, card = card_holder(faceid)
        grant(client, "fin-standing", "financial", CARD_TEXT)
        verification = start(client, identity, "fin-standing", method="card", bank_card_number=card)
        assert verification.status == STATUS.VERIFICATION_STATUS_VERIFIED, verification

    def test_methods_without_a_card_need_no_financial_consent(
        self, client: Client, faceid: FakeTencent
    ) -> None:
        """Asking for financial consent where no card is read would bundle it: it is not needed."""
        identity, _ = card_holder(faceid)
        verification = start(client, identity, "fin-authority", method="authority", consents=("identity",))
        assert verification.status == STATUS.VERIFICATION_STATUS_VERIFIED, verification


class TestGrants:
    def test_financial_bundled_with_another_purpose_is_refused(
        self, client: Client, faceid: FakeTencent
    ) -> None:
        """'identity,financial' is refused by GrantConsent and by a start's consents alike."""
        with pytest.raises(grpc.RpcError) as granted:
            grant(client, "fin-bundle", "identity,financial", CARD_TEXT)
        assert granted.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert rich_error(granted.value) == ("BUNDLED_CONSENT", "purpose")
        identity, card = card_holder(faceid)
        with pytest.raises(grpc.RpcError) as started:
            start(
                client,
                identity,
                "fin-bundle",
                method="card",
                consents=("identity,financial", "phone"),
                bank_card_number=card,
            )
        assert started.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert rich_error(started.value) == ("BUNDLED_CONSENT", "consents[0]")
        assert listed(client, "fin-bundle") == {}

    def test_a_grant_without_its_text_version_is_refused(self, client: Client, faceid: FakeTencent) -> None:
        """GrantConsent and a start's inline consents both need the text's version; nothing is kept."""
        with pytest.raises(grpc.RpcError) as granted:
            grant(client, "fin-unversioned", "financial", "")
        assert granted.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert rich_error(granted.value) == ("TEXT_VERSION_REQUIRED", "text_version")
        identity, card = card_holder(faceid)
        checks = bank_card_checks(faceid)
        with pytest.raises(grpc.RpcError) as started:
            start(
                client,
                identity,
                "fin-unversioned",
                method="card",
                consents=("identity", "phone", "financial"),
                versions=text_versions(["identity", "phone"]),
                bank_card_number=card,
            )
        assert started.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert rich_error(started.value) == ("TEXT_VERSION_REQUIRED", "consent_text_versions[financial]")
        assert bank_card_checks(faceid) == checks
        assert listed(client, "fin-unversioned") == {}


class TestWithdrawal:
    def test_withdrawal_ends_a_pending_card_verification_and_refuses_the_next(
        self, card_server: ServerProcess, client: Client, faceid: FakeTencent
    ) -> None:
        """Withdrawn at once, with no cool-down; the waiting verification ends, a new start is refused."""
        identity, card = card_holder(faceid)
        account = "fin-withdrawn"
        grant(client, account, "financial", CARD_TEXT)
        waiting = start(client, identity, account, method="card_sms", bank_card_number=card)
        assert waiting.status == STATUS.VERIFICATION_STATUS_CHALLENGE_SENT, waiting
        code = card_server.sms_code(waiting.verification_id)
        taken_back = withdraw(client, account, "financial")
        assert not taken_back.granted
        assert taken_back.HasField("withdrawn_at")
        assert not taken_back.HasField("cooldown_until")
        ended = client.verification.GetVerification(
            verification_pb2.GetVerificationRequest(verification_id=waiting.verification_id)
        ).verification
        assert (ended.status, ended.reason_code) == (STATUS.VERIFICATION_STATUS_REJECTED, "CONSENT_WITHDRAWN")
        with pytest.raises(grpc.RpcError) as late:
            submit(client, waiting.verification_id, code)
        assert late.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as again:
            start(client, identity, account, method="card", bank_card_number=card)
        assert rich_error(again.value) == ("CONSENT_REQUIRED", "consents")
        assert error_metadata(again.value)["fallback_method_ids"] == "sms,authority"
        # No cool-down: the card methods are still offered, and a new grant lets them run again.
        methods = client.verification.ListMethods(verification_pb2.ListMethodsRequest(account_id=account))
        assert {"card", "card_sms"} <= {m.id for m in methods.methods}
        grant(client, account, "financial", CARD_TEXT)
        again_granted = start(client, identity, account, method="card", bank_card_number=card)
        assert again_granted.status == STATUS.VERIFICATION_STATUS_VERIFIED, again_granted


def test_no_card_number_is_stored_or_logged(card_server: ServerProcess) -> None:
    """After every card check above, neither Redis nor the server log holds a card number."""
    assert CARDS
    stored = b"\n".join(everything_stored(embedded_redis(card_server)))
    log = card_server.log_text()
    for card in CARDS:
        assert card.encode() not in stored
        assert card not in log

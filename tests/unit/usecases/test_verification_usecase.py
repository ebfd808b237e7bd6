"""VerificationFlow over the in-memory VerificationStore and ConsentStore: no Redis, no gRPC.

Each test shows one decision of the use case: a start bound at once or sent a code, a repeated
request id answered with its verification, answers right and wrong, a challenge expired, unknown
and malformed ids, a start given up releasing its request id, a minor completed by a guardian,
the binding limit and the claim refusals it counts, consents required, and a start pointed again
when key rotation moved its identity. Nothing here reaches Redis: the flow is given the in-memory
stores, and its deps an in-memory window limiter. ``tests/unit/flows/test_admission.py``,
``test_round_trips.py`` and ``tests/e2e/test_signup.py`` run the flow over Redis and through the
server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import re
import secrets
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pytest
from stdnum.cn import ric

from idverify.config import load_settings
from idverify.domain.buckets import bucket_of
from idverify.domain.consent import IDENTITY, PHONE, text_version_of
from idverify.domain.documents import Document
from idverify.domain.errors import ConsentRequired, FailedPrecondition, InvalidArgument, NotFound, RateLimited
from idverify.domain.subjects import DocumentType, Subject, SubjectKind
from idverify.flows.context import RequestInfo
from idverify.flows.identity_lookup import IdentityProbe, ResolvedIdentity
from idverify.flows.verification import (
    GuardianConsent,
    StartRequest,
    VerificationFlow,
    VerificationView,
    plan,
)
from idverify.flows.verification.flow import send_limits
from idverify.flows.verification.port import NewVerification, Point, Written
from idverify.flows.verification.record import VerificationRecord
from idverify.privacy.identity_index import IndexValue
from idverify.privacy.keyring import Keyring
from idverify.privacy.verification_ids import verification_id_bucket
from idverify.security.rate_limits import WindowLimiter
from idverify.testing.flow_deps import flow_deps_for_tests
from idverify.testing.memory_consents import MemoryConsentStore
from idverify.testing.memory_rate_limits import MemoryRateWindows
from idverify.testing.memory_verifications import MemoryVerificationStore
from idverify.testing.tenant_config import DOCUMENT_ONLY, Method, tenant_toml

T = "acme"
CONFIG = tenant_toml(
    T,
    {"doc": DOCUMENT_ONLY, "sms": Method("document and a code", "low", ("document", "sms_otp"))},
    claim_assurance="high",
)
TODAY = date(2030, 6, 1)
INFO = RequestInfo(principal="registrar01")
_n = itertools.count(1)


class Places:
    """Identity records, one per document number; ``moved`` is key rotation's forwarding."""

    def __init__(self) -> None:
        self.moved: dict[str, str] = {}

    def forward_ms(self, session_ttl_seconds: int) -> int:
        return session_ttl_seconds * 1000

    async def indexes(self, tenant: str, document: Document) -> tuple[IndexValue, ...]:
        del tenant, document
        return ()

    def probe(self, tenant: str, indexes: tuple[IndexValue, ...]) -> IdentityProbe:
        del tenant
        return IdentityProbe((), "", (), indexes)

    def settle(
        self, tenant: str, probe: IdentityProbe, name: str, stored_bindings: Sequence[bytes | str | None]
    ) -> ResolvedIdentity | None:
        del tenant, probe, name, stored_bindings
        raise AssertionError("the memory store reads no bindings with a code send")

    async def resolve(
        self, tenant: str, document: Document, name: str, *, forward_ms: int, indexes: tuple[IndexValue, ...]
    ) -> ResolvedIdentity:
        del tenant, forward_ms
        ref = f"id-{document.number}"
        while ref in self.moved:
            ref = self.moved[ref]
        return ResolvedIdentity(
            ref, f"binding-{name}", "", "phc", exists=False, mismatch=False, indexes=indexes
        )

    async def refresh_verification(
        self, tenant: str, verification_id: str, record: VerificationRecord
    ) -> bool:
        del tenant, verification_id, record
        return False


@dataclasses.dataclass
class World:
    flow: VerificationFlow
    store: MemoryVerificationStore
    consents: MemoryConsentStore
    places: Places
    keyring: Keyring


def world(
    tmp_path: Path, store_type: type[MemoryVerificationStore] = MemoryVerificationStore, **limits: int
) -> World:
    config = tmp_path / "idverify.toml"
    config.write_text(CONFIG, encoding="utf-8")
    settings = load_settings(config, environ={})
    settings = dataclasses.replace(
        settings,
        verification=dataclasses.replace(settings.verification, binding_limit=limits.pop("binding_limit", 5)),
        rate_limits=dataclasses.replace(settings.rate_limits, **limits),
    )
    keyring = Keyring.generate()
    deps = flow_deps_for_tests(settings, keyring, WindowLimiter(MemoryRateWindows()), today=lambda: TODAY)
    consents = MemoryConsentStore()
    store = store_type(consents, send_limits(settings))
    places = Places()
    return World(VerificationFlow(deps, store, consents, places), store, consents, places, keyring)


def person(birth: date = date(1990, 3, 4), name: str = "") -> Subject:
    n = next(_n)
    body = f"440106{birth:%Y%m%d}{n % 1000:03d}"
    return Subject(
        SubjectKind.PERSON,
        name or f"测试{n}",
        DocumentType.CN_RIC,
        body + ric.calc_check_digit(body + "0"),
        phone_number=f"139{n:08d}",
    )


def request(subject: Subject, account: str, method: str = "doc", request_id: str = "") -> StartRequest:
    consents = (IDENTITY, PHONE) if method == "sms" else (IDENTITY,)
    return StartRequest(
        request_id=request_id or f"r{next(_n)}",
        account_id=account,
        method_id=method,
        subject=subject,
        consents=consents,
        consent_text_versions={p: text_version_of(f"text of {p}") for p in consents},
    )


def code_sent(caplog: pytest.LogCaptureFixture, view: VerificationView) -> str:
    found = re.search(rf"code (\d+) for .* \(verification {view.verification_id}\)", caplog.text)
    assert found is not None
    return found.group(1)


async def test_a_document_start_binds_at_once_and_a_repeated_request_id_finds_it(tmp_path: Path) -> None:
    w = world(tmp_path)
    subject = person()
    started = await w.flow.start(T, request(subject, "user-1", request_id="once"), INFO)
    assert (started.status, started.account_id, started.method_id) == ("VERIFIED", "user-1", "doc")
    again = await w.flow.start(T, request(subject, "user-1", request_id="once"), INFO)
    assert again.verification_id == started.verification_id
    assert (await w.flow.get(T, started.verification_id, INFO)).status == "VERIFIED"
    assert len(w.store.verifications) == 1
    assert w.consents.lasting(T, w.keyring.pseudonym(T, "account", "user-1"))


async def test_a_code_answered_wrong_then_right(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    w = world(tmp_path)
    sent = await w.flow.start(T, request(person(), "user-1", "sms"), INFO)
    assert (sent.status, sent.next_step, sent.attempts_left) == ("CHALLENGE_SENT", "submit_challenge", 5)
    assert sent.masked_phone.startswith("139")
    code = code_sent(caplog, sent)
    wrong = await w.flow.submit(T, sent.verification_id, "1" if code != "1" else "2", INFO)
    assert (wrong.status, wrong.reason_code, wrong.attempts_left) == ("CHALLENGE_SENT", "OTP_MISMATCH", 4)
    account_ps = w.keyring.pseudonym(T, "account", "user-1")
    assert not w.consents.lasting(T, account_ps)  # the consents given expire with the start until it binds
    right = await w.flow.submit(T, sent.verification_id, code, INFO)
    assert right.status == "VERIFIED"
    assert w.consents.lasting(T, account_ps)
    with pytest.raises(FailedPrecondition) as late:
        await w.flow.submit(T, sent.verification_id, code, INFO)
    assert late.value.reason == "NOT_AWAITING_CHALLENGE"


async def test_a_challenge_past_its_time_expires(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    w = world(tmp_path)
    sent = await w.flow.start(T, request(person(), "user-1", "sms"), INFO)
    w.consents.now += 10 * 60_000
    expired = await w.flow.submit(T, sent.verification_id, code_sent(caplog, sent), INFO)
    assert (expired.status, expired.reason_code) == ("EXPIRED", "OTP_EXPIRED")
    assert (await w.flow.get(T, sent.verification_id, INFO)).status == "EXPIRED"
    w.consents.now += 3600_000  # the verification's own lifetime ended: it is gone
    with pytest.raises(NotFound):
        await w.flow.get(T, sent.verification_id, INFO)


async def test_a_started_verifications_id_names_its_accounts_bucket(tmp_path: Path) -> None:
    """Issue 26: the id of a new verification decodes, with the keyring, to its account's bucket."""
    w = world(tmp_path)
    for n in range(40):
        account = f"bucketed-{n}"
        started = await w.flow.start(T, request(person(), account), INFO)
        assert re.fullmatch(r"[0-9a-f]{32}", started.verification_id)
        expected = bucket_of(w.keyring.pseudonym(T, "account", account))
        assert verification_id_bucket(w.keyring, T, started.verification_id) == expected


async def test_a_verification_of_an_old_random_id_is_answered_as_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids made before they named a bucket (random 128 bits) are read and answered unchanged."""
    caplog.set_level(logging.WARNING)
    old_ids: list[str] = []

    def old_style(keyring: Keyring, tenant: str, bucket: int) -> str:
        del keyring, tenant, bucket
        old_ids.append(secrets.token_hex(16))
        return old_ids[-1]

    monkeypatch.setattr(plan, "new_verification_id", old_style)
    w = world(tmp_path)
    started = await w.flow.start(T, request(person(), "user-old", method="sms"), INFO)
    assert (started.verification_id, started.status) == (old_ids[0], "CHALLENGE_SENT")
    monkeypatch.undo()
    done = await w.flow.submit(T, started.verification_id, code_sent(caplog, started), INFO)
    assert done.status == "VERIFIED"
    assert (await w.flow.get(T, old_ids[0], INFO)).status == "VERIFIED"


async def test_unknown_and_malformed_verifications(tmp_path: Path) -> None:
    w = world(tmp_path)
    with pytest.raises(NotFound):
        await w.flow.get(T, "0" * 32, INFO)
    with pytest.raises(NotFound):
        await w.flow.submit(T, "0" * 32, "123456", INFO)
    with pytest.raises(InvalidArgument) as malformed:
        await w.flow.get(T, "not-an-id", INFO)
    assert malformed.value.reason == "BAD_ID"
    with pytest.raises(InvalidArgument) as bad_code:
        await w.flow.submit(T, "0" * 32, "12ab", INFO)
    assert bad_code.value.reason == "BAD_CODE"


class GivingUp(MemoryVerificationStore):
    """A store whose first commit never returns: the caller gave up (a cancelled call)."""

    async def commit(self, start: NewVerification, point: Point) -> Written:
        if not getattr(self, "gave_up", False):
            self.gave_up = True
            raise asyncio.CancelledError
        return await super().commit(start, point)


async def test_a_start_given_up_releases_its_request_id_for_the_retry(tmp_path: Path) -> None:
    w = world(tmp_path, GivingUp)
    subject = person()
    with pytest.raises(asyncio.CancelledError):
        await w.flow.start(T, request(subject, "user-1", request_id="retry-me"), INFO)
    assert w.store.requests == {}
    retried = await w.flow.start(T, request(subject, "user-1", request_id="retry-me"), INFO)
    assert retried.status == "VERIFIED"
    assert list(w.store.requests.values()) == [retried.verification_id]


async def test_a_minor_is_completed_by_a_verified_adult_guardian(tmp_path: Path) -> None:
    w = world(tmp_path)
    waiting = await w.flow.start(T, request(person(date(2020, 1, 2)), "child"), INFO)
    assert (waiting.status, waiting.next_step) == ("NEEDS_GUARDIAN_CONSENT", "guardian_consent")

    def consent(guardian: str, account: str = "child") -> GuardianConsent:
        return GuardianConsent(
            T, account, waiting.verification_id, guardian, text_version_of("g"), "parent", INFO
        )

    with pytest.raises(FailedPrecondition) as unverified:
        await w.flow.grant_guardian_consent(consent("parent"))
    assert unverified.value.reason == "GUARDIAN_NOT_VERIFIED"
    with pytest.raises(NotFound):
        await w.flow.grant_guardian_consent(consent("parent", account="someone-else"))
    assert (await w.flow.start(T, request(person(), "parent"), INFO)).status == "VERIFIED"
    granted = await w.flow.grant_guardian_consent(consent("parent"))
    assert granted.status == "VERIFIED"
    with pytest.raises(FailedPrecondition) as twice:
        await w.flow.grant_guardian_consent(consent("parent"))
    assert twice.value.reason == "NOT_AWAITING_GUARDIAN"


async def test_the_binding_limit_refuses_and_counts_the_claims_refused(tmp_path: Path) -> None:
    w = world(tmp_path, binding_limit=1, claim_refusals_per_day=1)
    subject = person()
    assert (await w.flow.start(T, request(subject, "user-1"), INFO)).status == "VERIFIED"
    refused = await w.flow.start(T, request(subject, "user-2"), INFO)
    assert (refused.status, refused.reason_code) == ("REJECTED", "BINDING_LIMIT_REACHED")
    with pytest.raises(RateLimited) as limited:
        await w.flow.start(T, request(subject, "user-3", request_id="third"), INFO)
    assert limited.value.reason == "CLAIM_REFUSALS_LIMIT_REACHED"
    assert len(w.store.requests) == 2  # the refused start released its request id


async def test_a_start_needs_its_consents_and_the_identity_window(tmp_path: Path) -> None:
    w = world(tmp_path, per_identity_per_hour=1)
    subject = person()
    bare = dataclasses.replace(request(subject, "user-1"), consents=(), consent_text_versions={})
    with pytest.raises(ConsentRequired):
        await w.flow.start(T, bare, INFO)
    assert w.store.requests == {}  # refused before anything was reserved
    assert (await w.flow.start(T, request(subject, "user-1"), INFO)).status == "VERIFIED"
    with pytest.raises(RateLimited) as limited:
        await w.flow.start(T, request(subject, "user-1"), INFO)
    assert limited.value.reason == "IDENTITY_RATE_LIMITED"


async def test_a_start_whose_identity_moved_is_pointed_at_where_it_lives_now(tmp_path: Path) -> None:
    w = world(tmp_path)
    subject = person()
    old = f"id-{subject.document_number}"
    w.store.move_identity(T, old, "id-rotated")
    w.places.moved[old] = "id-rotated"
    # The lookup found the old place first; the store answered "moved", and the start looked again.
    calls: list[str] = []
    resolve = w.places.resolve

    async def first_old(*args: object, **kwargs: object) -> ResolvedIdentity:
        found = await resolve(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(found.ref)
        return dataclasses.replace(found, ref=old) if len(calls) == 1 else found

    w.places.resolve = first_old  # type: ignore[method-assign]
    started = await w.flow.start(T, request(subject, "user-1"), INFO)
    assert started.status == "VERIFIED"
    assert calls == ["id-rotated", "id-rotated"]
    assert w.store.identities[(T, "id-rotated")].accounts == {w.keyring.pseudonym(T, "account", "user-1")}

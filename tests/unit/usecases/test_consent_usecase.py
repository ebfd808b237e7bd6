"""ConsentFlow over an in-memory ConsentStore: grants, withdrawals and a start's admission, no Redis or gRPC.

Each test shows one decision of the use case: a grant's checks and its refusal on a cancelled
account, a withdrawal (or refusal) and its retries, the biometric cool-down, which purposes a start
needs and which of those given with it are recorded, and a record that changed since it was judged
being judged again. ``tests/unit/flows/test_admission.py`` and ``tests/e2e/test_lifecycle_consent.py``
run it over Redis and through the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from idverify.config import ConsentSettings
from idverify.domain.consent import BIOMETRIC, IDENTITY, PHONE, text_version_of
from idverify.domain.errors import ConsentRequired, FailedPrecondition, InvalidArgument, StoreUnavailable
from idverify.domain.methods import MethodSpec
from idverify.domain.subjects import AssuranceLevel
from idverify.flows.consent import ConsentFlow
from idverify.flows.context import RequestInfo
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.testing.memory_consents import MemoryConsentStore

KEYRING = Keyring.generate()
INFO = RequestInfo(principal="registrar01", request_id="r1")
V1 = text_version_of("the consent text, first edition")
V2 = text_version_of("the consent text, second edition")
DAY_MS = 86_400_000
SMS = MethodSpec("sms", "SMS", AssuranceLevel.LOW, frozenset(), ("sms",))
FACE = MethodSpec("face", "Face", AssuranceLevel.HIGH, frozenset(), ("face",))


@dataclass(frozen=True, slots=True)
class Start:
    """A start's consents, as a StartPlan gives them."""

    purposes: frozenset[str]
    given: Mapping[str, str] = field(default_factory=dict)
    method: MethodSpec = SMS
    verification_id: str = "0" * 32
    tenant: str = "acme"
    account_id: str = "user-1"
    info: RequestInfo = INFO


def flow(store: MemoryConsentStore, cooldown_days: int = 30) -> ConsentFlow:
    return ConsentFlow(
        store,
        ConsentSettings(biometric_cooldown_days=cooldown_days),
        KEYRING,
        Sealer(KEYRING),
        lifetime_ms=90_000,
    )


def account(account_id: str = "user-1") -> str:
    return KEYRING.pseudonym("acme", "account", account_id)


async def test_a_grant_is_recorded_with_its_text_version_and_listed() -> None:
    store = MemoryConsentStore()
    consents = flow(store)
    state = await consents.grant("acme", "user-1", PHONE, V1, INFO)
    assert (state.purpose, state.text_version, state.granted) == (PHONE, V1, True)
    await consents.grant("acme", "user-1", IDENTITY, V1, INFO)
    assert [s.purpose for s in await consents.list("acme", "user-1")] == [IDENTITY, PHONE]
    assert store.lasting("acme", account())
    assert store.audit == [
        ("acme", "consent.granted", "granted", PHONE),
        ("acme", "consent.granted", "granted", IDENTITY),
    ]


@pytest.mark.parametrize(
    ("purpose", "version", "reason"),
    [
        ("identity,phone", V1, "BUNDLED_CONSENT"),
        ("marketing", V1, "UNKNOWN_PURPOSE"),
        (PHONE, "", "TEXT_VERSION_REQUIRED"),
        (PHONE, "v1", "BAD_TEXT_VERSION"),
    ],
)
async def test_a_malformed_grant_is_refused_before_the_store_is_touched(
    purpose: str, version: str, reason: str
) -> None:
    store = MemoryConsentStore()
    with pytest.raises(InvalidArgument) as refused:
        await flow(store).grant("acme", "user-1", purpose, version, INFO)
    assert refused.value.reason == reason
    assert store.audit == []


async def test_a_cancelled_account_may_not_grant() -> None:
    store = MemoryConsentStore()
    store.cancel("acme", account())
    with pytest.raises(FailedPrecondition) as refused:
        await flow(store).grant("acme", "user-1", PHONE, V1, INFO)
    assert (refused.value.reason, refused.value.field) == ("ACCOUNT_CANCELLED", "account_id")


async def test_a_withdrawal_of_a_grant_and_a_refusal_of_what_was_never_granted() -> None:
    store = MemoryConsentStore()
    consents = flow(store)
    await consents.grant("acme", "user-1", PHONE, V1, INFO)
    withdrawn = await consents.withdraw("acme", "user-1", PHONE, INFO)
    assert (withdrawn.granted, withdrawn.refused, withdrawn.text_version) == (False, True, V1)
    refused = await consents.withdraw("acme", "user-1", IDENTITY, INFO)
    assert (refused.granted_ms, refused.refused) == (0, True)
    assert [entry[2] for entry in store.audit[1:]] == ["withdrawn", "refused"]


async def test_a_withdrawal_is_tried_again_while_the_verifications_change_then_refused() -> None:
    store = MemoryConsentStore()
    consents = flow(store)
    store.stale_reads = 4
    assert (await consents.withdraw("acme", "user-1", PHONE, INFO)).refused
    store.stale_reads = 5
    with pytest.raises(StoreUnavailable) as refused:
        await consents.withdraw("acme", "user-1", IDENTITY, INFO)
    assert refused.value.reason == "CONTENDED"
    assert IDENTITY not in {s.purpose for s in await consents.list("acme", "user-1")}


async def test_the_biometric_cool_down_runs_from_a_withdrawal_by_the_stores_clock() -> None:
    store = MemoryConsentStore()
    consents = flow(store, cooldown_days=30)
    assert await consents.biometric_cooldown_until("acme", "user-1") == 0
    withdrawn_at = store.now
    await consents.withdraw("acme", "user-1", BIOMETRIC, INFO)
    assert await consents.biometric_cooldown_until("acme", "user-1") == withdrawn_at + 30 * DAY_MS
    store.now = withdrawn_at + 30 * DAY_MS
    assert await consents.biometric_cooldown_until("acme", "user-1") == 0
    # A grant, the user's own act, ends it at once.
    store.now = withdrawn_at + DAY_MS
    await consents.grant("acme", "user-1", BIOMETRIC, V1, INFO)
    assert await consents.biometric_cooldown_until("acme", "user-1") == 0


async def test_a_start_records_the_consents_given_with_it_until_it_binds() -> None:
    store = MemoryConsentStore()
    consents = flow(store)
    await consents.admit_start(Start(frozenset({IDENTITY, PHONE}), {IDENTITY: V1, PHONE: V1}))
    assert store.admitted("acme", account()) == ["0" * 32]
    assert {s.purpose for s in await consents.list("acme", "user-1") if s.granted} == {IDENTITY, PHONE}
    assert not store.lasting("acme", account())  # they expire with the verification
    await consents.keep("acme", account())
    assert store.lasting("acme", account())


async def test_a_standing_grant_covers_a_start_and_only_news_are_recorded() -> None:
    store = MemoryConsentStore()
    consents = flow(store)
    await consents.grant("acme", "user-1", IDENTITY, V1, INFO)
    await consents.grant("acme", "user-1", PHONE, V1, INFO)
    record = await store.read("acme", account())
    judged = await consents.judge_start(
        Start(frozenset({IDENTITY, PHONE}), {PHONE: V1, IDENTITY: V2}), record
    )
    assert judged.grants == ((IDENTITY, V2),)  # phone's grant under the same text is no news
    assert judged.revision == record.revision
    assert judged.account_pseudonym == account()
    assert judged.method_id == "sms"
    assert "user-1" not in judged.request_json
    assert (await consents.judge_start(Start(frozenset({IDENTITY, PHONE})), record)).grants == ()


async def test_a_start_without_a_needed_consent_is_refused_naming_it() -> None:
    store = MemoryConsentStore()
    consents = flow(store)
    await consents.grant("acme", "user-1", IDENTITY, V1, INFO)
    with pytest.raises(ConsentRequired, match="phone"):
        await consents.admit_start(Start(frozenset({IDENTITY, PHONE})))
    assert store.admitted("acme", account()) == []


async def test_a_biometric_start_in_the_cool_down_is_refused() -> None:
    store = MemoryConsentStore()
    consents = flow(store)
    await consents.withdraw("acme", "user-1", BIOMETRIC, INFO)
    start = Start(frozenset({IDENTITY, BIOMETRIC}), {IDENTITY: V1, BIOMETRIC: V1}, method=FACE)
    with pytest.raises(FailedPrecondition) as refused:
        await consents.admit_start(start)
    assert refused.value.reason == "BIOMETRIC_COOLDOWN"
    store.now += 30 * DAY_MS
    await consents.admit_start(start)  # asked again once it ran out
    assert store.admitted("acme", account()) == ["0" * 32]


async def test_a_cancelled_account_may_not_start() -> None:
    store = MemoryConsentStore()
    store.cancel("acme", account())
    with pytest.raises(FailedPrecondition) as refused:
        await flow(store).admit_start(Start(frozenset({IDENTITY}), {IDENTITY: V1}))
    assert refused.value.reason == "ACCOUNT_CANCELLED"


async def test_a_record_changed_since_it_was_judged_is_judged_again_then_refused() -> None:
    store = MemoryConsentStore()
    consents = flow(store)
    start = Start(frozenset({IDENTITY}), {IDENTITY: V1})
    store.stale_reads = 4
    await consents.admit_start(start)
    assert store.admitted("acme", account()) == ["0" * 32]
    store.stale_reads = 5
    with pytest.raises(StoreUnavailable) as refused:
        await consents.admit_start(Start(frozenset({IDENTITY}), {IDENTITY: V1}, verification_id="1" * 32))
    assert refused.value.reason == "CONTENDED"
    assert store.admitted("acme", account()) == ["0" * 32]


async def test_the_record_the_caller_read_is_judged_first() -> None:
    store = MemoryConsentStore()
    consents = flow(store)
    stale = await store.read("acme", account())  # before the grant below
    await consents.grant("acme", "user-1", IDENTITY, V1, INFO)
    # Judged on the stale record, the start needs its own consent: refused without reading again.
    with pytest.raises(ConsentRequired):
        await consents.admit_start(Start(frozenset({IDENTITY})), stale)
    await consents.admit_start(Start(frozenset({IDENTITY})))
    assert store.admitted("acme", account()) == ["0" * 32]


async def test_an_unreachable_store_is_store_unavailable() -> None:
    store = MemoryConsentStore()
    store.down = True
    with pytest.raises(StoreUnavailable):
        await flow(store).list("acme", "user-1")

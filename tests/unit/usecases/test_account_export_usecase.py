"""AccountExportFlow over in-memory ports: what a person's copy says, decided without Redis or gRPC.

The store, the audit log, the account views and the consents are the shared in-memory ones
(``idverify.testing.memory_account_export``); the log computes real RFC 6962 proofs, so each
bundle's entries are checked against its signed head here. ``tests/e2e/test_account_export.py``
runs the export through a server.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import merkle
from idverify.audit.checkpoint import verify_signed_head
from idverify.audit.events import EventType
from idverify.domain.consent import ConsentState
from idverify.domain.errors import InvalidArgument
from idverify.flows import account_export
from idverify.flows.account_export import (
    AccountBundle,
    AccountExportFlow,
    AccountRecord,
    ErasureState,
    HeldValue,
)
from idverify.flows.accounts import AccountView
from idverify.flows.context import RequestInfo
from idverify.privacy.keyring import Keyring
from idverify.testing.memory_account_export import (
    MemoryAccountExports,
    MemoryAccountViews,
    MemoryAuditLog,
    MemoryConsentLists,
)

KEY = Ed25519PrivateKey.generate()
KEYRING = Keyring.generate()
NOW_MS = 1_764_000_000_000
ACCOUNT = "acct-1"
INFO = RequestInfo(principal="acme/platform/p1", request_id="r1")
ACCOUNT_PS = KEYRING.pseudonym("acme", "account", ACCOUNT)
AUDIT_PS = KEYRING.pseudonym("acme", "audit", ACCOUNT)


@dataclass
class World:
    log: MemoryAuditLog
    store: MemoryAccountExports
    views: MemoryAccountViews
    consents: MemoryConsentLists
    flow: AccountExportFlow

    async def export(self, start_index: int = 0, account_id: str = ACCOUNT) -> AccountBundle:
        bundle = await self.flow.export("acme", account_id, start_index, INFO)
        verify_signed_head(bundle.head, KEY.public_key())
        for entry in bundle.entries:  # every entry proven against the bundle's head
            merkle.verify_inclusion(
                merkle.leaf_hash(entry.leaf),
                entry.index,
                bundle.head.head.size,
                entry.proof,
                bundle.head.head.root_hash,
            )
        return bundle


@pytest.fixture
def world() -> World:
    log = MemoryAuditLog(KEY, NOW_MS)
    store = MemoryAccountExports(log, NOW_MS)
    views, consents = MemoryAccountViews(), MemoryConsentLists()
    return World(log, store, views, consents, AccountExportFlow(store, KEYRING, views, consents, log))


BARE = AccountRecord(
    audit_pseudonym=AUDIT_PS, identity_ref="", name_tag=False, birth_sealed=False, erasure_due=False
)


def record(**fields: Any) -> AccountRecord:
    return dataclasses.replace(BARE, **fields)


def items(held: list[HeldValue]) -> list[tuple[str, str, str]]:
    return [(value.record, value.item, str(value.form)) for value in held]


async def test_an_unknown_account_proves_only_its_export(world: World) -> None:
    bundle = await world.export()
    assert not bundle.view.verified
    assert bundle.consents == []
    assert bundle.erasure is ErasureState.NOT_SCHEDULED
    assert bundle.held == []
    assert bundle.audit_pseudonyms == (AUDIT_PS,)
    [entry] = bundle.entries
    assert (entry.index, bundle.head.head.size, bundle.next_start_index) == (0, 1, 0)
    [(event, _)] = world.log.logs["acme"]
    assert (event.type, event.account, event.principal, event.request_id) == (
        EventType.ACCOUNT_EXPORTED,
        AUDIT_PS,
        INFO.principal,
        "r1",
    )
    assert event.attributes["start_index"] == "0"


async def test_the_view_and_consents_are_the_other_use_cases_answers(world: World) -> None:
    view = AccountView(
        account_id=ACCOUNT,
        verified=True,
        verified_ms=NOW_MS,
        method_id="id2",
        assurance="high",
        subject_kind="person",
        age_band="adult",
        location=None,
    )
    world.views.views["acme", ACCOUNT] = view
    world.consents.consents["acme", ACCOUNT] = [ConsentState("ip_location", "v1", NOW_MS)]
    bundle = await world.export()
    assert bundle.view is view
    assert bundle.consents == [ConsentState("ip_location", "v1", NOW_MS)]


async def test_what_is_held_is_named_by_the_records_that_exist(world: World) -> None:
    world.store.accounts["acme", ACCOUNT_PS] = record(identity_ref="ref1", name_tag=True, birth_sealed=True)
    world.store.identities.add(("acme", "ref1"))
    world.store.verifications["acme", ACCOUNT_PS] = [NOW_MS - 1, NOW_MS + 60_000]
    held = items((await world.export()).held)
    assert held == [
        ("account", "account_id", "keyed_hash"),
        ("account", "document_number", "keyed_hash"),
        ("account", "name", "keyed_hash"),
        ("account", "birth_date", "sealed"),
        ("identity", "document_number", "sealed"),
        ("identity", "name", "keyed_hash"),
        ("verification", "document_number", "sealed"),
        ("verification", "name", "keyed_hash"),
        ("verification", "birth_date", "sealed"),
        ("verification", "account_id", "sealed"),
        ("verification", "one_time_code", "keyed_hash"),
    ]


async def test_a_gone_identity_record_and_expired_verifications_are_not_held(world: World) -> None:
    world.store.accounts["acme", ACCOUNT_PS] = record(identity_ref="ref1")
    world.store.verifications["acme", ACCOUNT_PS] = [NOW_MS - 1]  # listed, its record expired
    held = items((await world.export()).held)
    assert held == [("account", "account_id", "keyed_hash"), ("account", "document_number", "keyed_hash")]


async def test_the_recorded_audit_pseudonym_is_searched_and_names_the_export(world: World) -> None:
    world.store.accounts["acme", ACCOUNT_PS] = record(audit_pseudonym="older-ps")
    world.log.append("acme", "account.bound", account="older-ps", outcome="verified")
    world.log.append("acme", "account.bound", account="someone-else", outcome="verified")
    world.log.append("other", "account.bound", account="older-ps", outcome="verified")
    bundle = await world.export()
    assert bundle.audit_pseudonyms == (AUDIT_PS, "older-ps")
    assert [entry.index for entry in bundle.entries] == [0, 2]  # its entry and the export's
    assert world.log.logs["acme"][-1][0].account == "older-ps"


@pytest.mark.parametrize(
    ("due", "erased_of", "state"),
    [
        (True, None, ErasureState.SCHEDULED),
        (False, None, ErasureState.NOT_SCHEDULED),
        (None, AUDIT_PS, ErasureState.ERASED),
        (None, "someone-else", ErasureState.NOT_SCHEDULED),
    ],
    # Named, not derived from the values: AUDIT_PS comes from a keyring made afresh by each
    # process, and pytest-xdist's processes must collect the same test ids.
    ids=["due", "not-due", "its-erasure-logged", "another-accounts-erasure-logged"],
)
async def test_the_erasure_state(
    world: World, due: bool | None, erased_of: str | None, state: ErasureState
) -> None:
    if due is not None:
        world.store.accounts["acme", ACCOUNT_PS] = record(erasure_due=due)
    if erased_of is not None:
        world.log.append("acme", EventType.ACCOUNT_ERASED.value, account=erased_of, outcome="erased")
    assert (await world.export()).erasure is state


async def test_entries_come_in_pages_each_export_audited(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(account_export, "MAX_ENTRIES", 3)
    for _ in range(5):
        world.log.append("acme", "consent.granted", account=AUDIT_PS, outcome="granted")
    first = await world.export()
    assert [e.index for e in first.entries] == [0, 1, 2]
    assert first.next_start_index == 3
    second = await world.export(first.next_start_index)
    # The rest, the first page's export (5) and this page's own (6).
    assert [e.index for e in second.entries] == [3, 4, 5]
    assert second.next_start_index == 6
    third = await world.export(second.next_start_index)
    assert ([e.index for e in third.entries], third.next_start_index) == ([6, 7], 0)
    assert [event.attributes["start_index"] for event, _ in world.log.logs["acme"][5:]] == ["0", "3", "6"]


async def test_a_malformed_account_id_is_refused_before_anything_is_written(world: World) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await world.flow.export("acme", "", 0, INFO)
    assert refused.value.field == "account_id"
    assert world.log.logs == {}

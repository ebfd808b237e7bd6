"""count_key_usage and Reindexer over in-memory ports, without Redis.

What each key version protects, and the resumable re-seal after a rotation.

``tests/unit/flows/test_ages_when_read.py`` and ``tests/e2e/test_keys_rotation.py`` run them
over Redis and through ``idverify keys``.
"""

from __future__ import annotations

from idverify.events.accounts import EVENT_ACCOUNT
from idverify.flows.account_age import BIRTH_DATE
from idverify.flows.identity_mover import IDENTITY_INDEX, NAME_BINDING, IdentityMover
from idverify.flows.reindex import (
    RecordKind,
    ReindexCheckpoint,
    Reindexer,
    SealedRecord,
    count_key_usage,
)
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer, associated_data, sealed_from_text, sealed_to_text, text_version
from idverify.testing.memory_identity_records import MemoryIdentityRecords
from idverify.testing.memory_sealed_records import MemorySealedRecords

OLD = Keyring.generate()
NEW = OLD.with_new_wrapping_key()
PHC = "$argon2id$v=19$m=8,t=1,p=1$p1"


def sealed(keyring: Keyring, value: str, tenant: str, purpose: str, *context: str) -> str:
    associated = associated_data(tenant, purpose, *context)
    return sealed_to_text(Sealer(keyring).seal(value.encode(), associated=associated))


def verification(store: MemorySealedRecords, tenant: str, vid: str, keyring: Keyring = OLD) -> SealedRecord:
    record = SealedRecord(RecordKind.VERIFICATION, tenant, vid)
    store.put(
        record,
        {
            "acct": "ps1",
            "acct_sealed": sealed(keyring, "user-1", tenant, "account-id", vid),
            "birth_sealed": sealed(keyring, "1990-01-01", tenant, BIRTH_DATE, "ps1"),
        },
    )
    return record


class World:
    def __init__(self) -> None:
        self.records = MemorySealedRecords(hash_page=2)
        self.identities = MemoryIdentityRecords()

    def identity(self, tenant: str = "acme") -> SealedRecord:
        """An identity record, listed as a SCAN finds it and held where the mover moves it."""
        ref = sealed(OLD, "index-digest", tenant, IDENTITY_INDEX)
        record = SealedRecord(RecordKind.IDENTITY, tenant, ref)
        fields = {"name_binding": sealed(OLD, "binding", tenant, NAME_BINDING), "pepper": PHC}
        self.records.put(record, fields)
        self.identities.identities[(tenant, ref)] = dict(fields)
        return record

    def reindexer(self, page_size: int = 200) -> Reindexer:
        mover = IdentityMover(self.identities, Sealer(NEW))
        return Reindexer(self.records, NEW, mover, page_size=page_size)


async def test_usage_counts_each_kind_by_version_and_tenant() -> None:
    world = World()
    world.identity()
    verification(world.records, "acme", "v1")
    verification(world.records, "globex", "v2", NEW)
    world.records.put(
        SealedRecord(RecordKind.ACCOUNT, "acme", "ps1"), {"birth_sealed": sealed(OLD, "x", "acme", "b")}
    )
    world.records.put(
        SealedRecord(RecordKind.EVENT_ACCOUNTS, "acme", "acct"),
        {f"ps{i}": sealed(OLD, "id", "acme", EVENT_ACCOUNT, f"ps{i}") for i in range(5)},
    )
    world.records.put(
        SealedRecord(RecordKind.WEBHOOK, "acme", "h1"), {"secret": sealed(NEW, "s", "acme", "w")}
    )
    forward = SealedRecord(RecordKind.IDENTITY, "acme", sealed(OLD, "old-index", "acme", IDENTITY_INDEX))
    world.records.put(forward, {"moved_to": "elsewhere"})
    usage = await count_key_usage(world.records)
    old, new = OLD.wrapping_current, NEW.wrapping_current
    acme = usage["acme"]
    assert (acme.identities[old], acme.forwarding[old], acme.peppers["p1"]) == (1, 1, 1)
    assert (acme.verifications[old], acme.accounts[old], acme.event_accounts[old]) == (1, 1, 5)
    assert acme.webhook_secrets[new] == 1
    assert acme.wrapping_total(old) == 9
    assert usage["globex"].verifications == {new: 1}


async def test_a_reindex_reseals_everything_under_the_current_key_once() -> None:
    world = World()
    identity = world.identity()
    record = verification(world.records, "acme", "v1")
    events = SealedRecord(RecordKind.EVENT_ACCOUNTS, "acme", "acct")
    world.records.put(
        events, {f"ps{i}": sealed(OLD, "id", "acme", EVENT_ACCOUNT, f"ps{i}") for i in range(5)}
    )
    report = await world.reindexer().run()
    assert (report.target, report.resealed, report.unreadable, report.finished) == (
        NEW.wrapping_current,
        3,
        0,
        True,
    )
    assert world.records.saved == ReindexCheckpoint(NEW.wrapping_current, "done", 0)
    stored = world.records.fields(record)
    assert {text_version(stored["acct_sealed"]), text_version(stored["birth_sealed"])} == {
        NEW.wrapping_current
    }
    assert stored["acct"] == "ps1"  # what is not sealed stays as it is
    opened = Sealer(NEW.without(OLD.wrapping_current)).unseal
    assert (
        opened(
            sealed_from_text(stored["acct_sealed"]), associated=associated_data("acme", "account-id", "v1")
        )
        == b"user-1"
    )
    assert {text_version(v) for v in world.records.fields(events).values()} == {NEW.wrapping_current}
    [(tenant, ref)] = list(world.identities.identities)
    assert (tenant, text_version(ref)) == ("acme", NEW.wrapping_current)
    assert ref != identity.name
    before = world.records.fields(record), world.records.fields(events)
    again = await world.reindexer().run()
    assert again.finished
    assert (world.records.fields(record), world.records.fields(events)) == before  # nothing left to do


async def test_a_limited_run_stops_at_a_page_and_the_next_resumes_there() -> None:
    world = World()
    for i in range(5):
        verification(world.records, "acme", f"v{i}")
    first = await world.reindexer(page_size=2).run(limit=1)
    assert (first.resealed, first.finished) == (2, False)
    assert world.records.saved == ReindexCheckpoint(NEW.wrapping_current, "vf", 2)
    progress: list[int] = []
    second = await world.reindexer(page_size=2).run(progress=progress.append)
    assert (second.resealed, second.finished, len(progress)) == (3, True, 3)


async def test_a_checkpoint_of_another_target_starts_over() -> None:
    world = World()
    verification(world.records, "acme", "v1")
    world.records.saved = ReindexCheckpoint("w-other", "webhooks", 7)
    report = await world.reindexer().run()
    assert report.resealed == 1


async def test_a_value_sealed_under_a_key_the_keyring_lacks_is_counted_and_left() -> None:
    world = World()
    stranger = Keyring.generate()
    record = verification(world.records, "acme", "v1", stranger)
    before = world.records.fields(record)
    report = await world.reindexer().run()
    assert (report.resealed, report.unreadable, report.finished) == (0, 1, True)
    assert world.records.fields(record) == before

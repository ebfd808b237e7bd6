"""IdentityLookup and IdentityMover over an in-memory IdentityRecords: no Redis.

Each test shows one decision of the key-rotation flows a signup meets: an identity not yet
known, one known under the current keys (its name matching or not), one under an older wrapping
key or pepper moved on the spot (a pepper move leaving a forwarding record), a stored
verification pointed at where its identity lives now, and a record that keeps changing.
``tests/unit/flows/test_round_trips.py``, ``test_ages_when_read.py`` and
``tests/e2e/test_keys_rotation.py`` run them over Redis and through the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from idverify.domain.documents import DocumentType, validate_document
from idverify.domain.errors import StoreUnavailable
from idverify.flows.identity_lookup import IdentityLookup, ResolvedIdentity
from idverify.flows.identity_mover import IdentityMove, IdentityMover
from idverify.privacy.identity_index import TEST_ONLY_FAST, IdentityIndexer
from idverify.privacy.keyring import Keyring, LiveKeyring
from idverify.privacy.sealing import Sealer, SealError
from idverify.testing.memory_identity_records import MemoryIdentityRecords

DOCUMENT = validate_document(DocumentType.PASSPORT, "E12345678", "CN", today=date(2026, 1, 1))
NAME = "张三"
FORWARD_MS = 90_000


class World:
    """A live keyring with the lookup and mover over it, on one in-memory store."""

    def __init__(self, records: MemoryIdentityRecords | None = None) -> None:
        self.keyring = LiveKeyring(Keyring.generate())
        self.records = records or MemoryIdentityRecords()
        self.indexer = IdentityIndexer(self.keyring, TEST_ONLY_FAST)
        sealer = Sealer(self.keyring)
        self.mover = IdentityMover(self.records, sealer)
        self.lookup = IdentityLookup(self.keyring, sealer, self.indexer, self.mover)

    async def resolve(self, name: str = NAME) -> ResolvedIdentity:
        return await self.lookup.resolve("acme", DOCUMENT, name, forward_ms=FORWARD_MS)

    async def stored(self, accounts: set[str] | None = None) -> ResolvedIdentity:
        """An identity a verification bound, as its commit stores it."""
        found = await self.resolve()
        self.records.identities[("acme", found.ref)] = {"name_binding": found.binding, "pepper": found.phc}
        for account in accounts or set():
            self.records.accounts.setdefault(("acme", found.ref), set()).add(account)
            self.records.account_identity[("acme", account)] = found.ref
        return found


@pytest.fixture
def world() -> Iterator[World]:
    made = World()
    yield made
    made.indexer.close()


async def test_an_unknown_identity_is_looked_up_in_one_read(world: World) -> None:
    found = await world.resolve()
    assert (found.exists, found.mismatch, found.seen) == (False, False, "")
    assert found.ref == world.lookup.probe("acme", found.indexes).target
    assert world.records.calls == 1
    assert world.records.identities == {}  # a lookup writes nothing


async def test_a_known_identity_is_found_and_its_binding_seen_when_the_name_matches(world: World) -> None:
    stored = await world.stored()
    found = await world.resolve()
    assert (found.ref, found.exists, found.mismatch) == (stored.ref, True, False)
    assert found.seen == stored.binding
    other = await world.resolve("李四")
    assert (other.ref, other.exists, other.mismatch, other.seen) == (stored.ref, True, True, "")


async def test_an_identity_under_an_older_wrapping_key_moves_to_the_current_one(world: World) -> None:
    stored = await world.stored({"acct-1"})
    world.keyring.replace(world.keyring.with_new_wrapping_key())
    found = await world.resolve()
    assert found.ref != stored.ref
    assert (found.exists, found.mismatch) == (True, False)
    assert found.ref.startswith(world.keyring.wrapping_current)
    assert ("acme", stored.ref) not in world.records.identities
    assert world.records.account_identity[("acme", "acct-1")] == found.ref
    assert world.records.accounts[("acme", found.ref)] == {"acct-1"}


async def test_an_identity_under_an_older_pepper_moves_when_the_name_matches_and_leaves_a_forward(
    world: World,
) -> None:
    stored = await world.stored()
    world.keyring.replace(world.keyring.with_new_pepper())
    mismatch = await world.resolve("李四")
    assert (mismatch.ref, mismatch.mismatch) == (stored.ref, True)  # not moved: the name does not match
    found = await world.resolve()
    assert found.ref != stored.ref
    assert found.phc == world.records.identities[("acme", found.ref)]["pepper"] != stored.phc
    forward = world.records.identities[("acme", stored.ref)]
    assert forward == {"moved_to": found.ref, "binding_was": stored.binding}
    # A verification started before the move follows it, and its seen binding carries over.
    world.records.verifications[("acme", "v1")] = {
        "identity": stored.ref,
        "name_binding": stored.binding,
        "name_binding_seen": stored.binding,
    }
    assert await world.mover.follow("acme", stored.ref) == (
        found.ref,
        [world.mover.open_binding("acme", stored.binding)],
    )
    record = dict(world.records.verifications[("acme", "v1")])
    assert await world.mover.refresh_verification("acme", "v1", record)
    refreshed = world.records.verifications[("acme", "v1")]
    assert refreshed["identity"] == found.ref
    assert refreshed["name_binding_seen"] == world.records.identities[("acme", found.ref)]["name_binding"]
    assert not await world.mover.refresh_verification("acme", "v1", dict(refreshed))  # nothing left to do


async def test_a_verification_whose_identity_did_not_move_is_left_alone(world: World) -> None:
    stored = await world.stored()
    world.records.verifications[("acme", "v1")] = {"identity": stored.ref, "name_binding": stored.binding}
    assert not await world.mover.refresh_verification(
        "acme", "v1", {"identity": stored.ref, "name_binding": stored.binding}
    )
    assert not await world.mover.refresh_verification("acme", "v2", {})  # bound to no identity


async def test_a_record_sealed_under_a_key_the_keyring_lacks_cannot_move(world: World) -> None:
    stored = await world.stored()
    rotated = world.keyring.with_new_wrapping_key()
    world.keyring.replace(rotated)
    stranger = World()
    with pytest.raises(SealError):
        stranger.mover.current_ref("acme", stored.ref)
    stranger.indexer.close()
    assert await world.mover.move("acme", "nowhere", "elsewhere") == "GONE"


class AlwaysChanged(MemoryIdentityRecords):
    """Another request changes the record between every read and move."""

    async def move(self, tenant: str, move: IdentityMove) -> str:
        await super().location(tenant, move.old_ref)
        return "RETRY"


async def test_a_record_that_keeps_changing_is_given_up_on() -> None:
    world = World(AlwaysChanged())
    try:
        stored = await world.stored()
        world.keyring.replace(world.keyring.with_new_wrapping_key())
        with pytest.raises(StoreUnavailable) as contended:
            await world.resolve()
        assert contended.value.reason == "CONTENDED"
        assert ("acme", stored.ref) in world.records.identities
    finally:
        world.indexer.close()


async def test_an_unreachable_store_is_store_unavailable(world: World) -> None:
    world.records.down = True
    with pytest.raises(StoreUnavailable):
        await world.resolve()

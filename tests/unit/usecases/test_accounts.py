"""AccountFlow over the in-memory AccountStore: GetAccount, RecordLoginIp, GetIpLocations, no Redis or gRPC.

Each test shows one decision of the use case: what an account's view says (ages on the day
asked, a superseded or cancelled account), what a login label stores and audits (never the
address), and how a batch of labels is answered and its read recorded.
``test_accounts_store.py`` holds the in-memory store to the Redis one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import pytest

from idverify.domain.errors import InvalidArgument, StoreUnavailable
from idverify.flows.account_age import AccountAges
from idverify.flows.accounts import MAX_BATCH, AccountFlow, AccountRecord, Located, StoredLocation
from idverify.flows.context import RequestInfo
from idverify.flows.read_accounting import Reader
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.testing.memory_accounts import BOUND_ACCOUNT, MemoryAccounts

TENANT = "acme"
TODAY = date(2026, 12, 6)
NOW_MS = 1_800_000_000_000
READER = Reader("c1", "platform1", "GetIpLocations")


@dataclass(frozen=True, slots=True)
class Place:
    display: str
    display_en: str
    country_code: str
    region_code: str
    source: str
    source_build_date: str


class Locator:
    """Resolves "10.0.0.x" to a place; anything else is malformed, as the real one says."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def locate(self, ip: str, *, field: str = "ip") -> Located:
        self.asked.append(ip)
        if not ip.startswith("10.0.0."):
            raise InvalidArgument("not an IP address", reason="INVALID_IP", field=field)
        return Place("广东", "Guangdong", "CN", "CN-GD", "xdb", "2026-11-01")


def wire(location: Located) -> bytes:
    return f"{location.display}|{location.source}".encode()


@dataclass
class World:
    flow: AccountFlow
    store: MemoryAccounts
    keyring: Keyring
    sealer: Sealer
    locator: Locator

    def ps(self, account_id: str) -> str:
        return self.keyring.pseudonym(TENANT, "account", account_id)

    def put(self, account_id: str, record: AccountRecord) -> None:
        self.store.put(TENANT, self.ps(account_id), record)

    def born(self, account_id: str, birth: date) -> str:
        return AccountAges(self.sealer).seal(TENANT, self.ps(account_id), birth)


@pytest.fixture
def world() -> World:
    keyring = Keyring.generate()
    sealer = Sealer(keyring)
    store = MemoryAccounts(clock_ms=lambda: NOW_MS)
    locator = Locator()
    flow = AccountFlow(
        store, keyring=keyring, sealer=sealer, locator=locator, encode_label=wire, today=lambda: TODAY
    )
    return World(flow, store, keyring, sealer, locator)


async def test_an_unknown_account_reads_as_not_verified(world: World) -> None:
    view = await world.flow.get_account(TENANT, "nobody")
    assert (view.verified, view.verified_ms, view.method_id, view.age_band, view.age_source) == (
        False,
        0,
        "",
        "",
        "",
    )
    assert view.location is None


@pytest.mark.parametrize(
    ("birth", "band"),
    [(date(2013, 12, 7), "under_14"), (date(2012, 12, 6), "14_to_17"), (date(2008, 12, 6), "adult")],
)
async def test_the_age_band_is_the_one_on_the_day_asked(world: World, birth: date, band: str) -> None:
    world.put("u1", replace(BOUND_ACCOUNT, birth_sealed=world.born("u1", birth)))
    view = await world.flow.get_account(TENANT, "u1")
    assert (view.verified, view.age_band, view.age_source) == (True, band, "document")
    assert (view.method_id, view.assurance, view.subject_kind) == ("ric_phone", "substantial", "person")


async def test_a_birth_date_sealed_for_another_account_is_unknown(world: World) -> None:
    world.put("u1", replace(BOUND_ACCOUNT, birth_sealed=world.born("u2", date(2000, 1, 1))))
    view = await world.flow.get_account(TENANT, "u1")
    assert (view.age_band, view.age_source) == ("unknown", "document")


async def test_legacy_and_unreadable_sources(world: World) -> None:
    world.put("old", replace(BOUND_ACCOUNT, age_source=None, age_band="adult"))
    world.put("odd", replace(BOUND_ACCOUNT, age_source="astrology"))
    assert (await world.flow.get_account(TENANT, "old")).age_source == "legacy"
    assert (await world.flow.get_account(TENANT, "old")).age_band == "adult"
    odd = await world.flow.get_account(TENANT, "odd")
    assert (odd.age_band, odd.age_source) == ("unknown", "none")


async def test_superseded_and_cancelled_accounts(world: World) -> None:
    world.put("lost", replace(BOUND_ACCOUNT, identity="", superseded_ms=5, erase_due_ms=9))
    world.put("kept", replace(BOUND_ACCOUNT, superseded_ms=5))  # bound again since: no longer superseded
    lost = await world.flow.get_account(TENANT, "lost")
    assert (lost.verified, lost.superseded_ms, lost.erasure_due_ms, lost.age_band) == (False, 5, 9, "")
    assert (await world.flow.get_account(TENANT, "kept")).superseded_ms == 0


async def test_a_malformed_account_id_is_refused(world: World) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await world.flow.get_account(TENANT, "")
    assert refused.value.field == "account_id"


async def test_a_login_label_is_stored_and_audited_never_the_address(world: World) -> None:
    info = RequestInfo(principal="platform1", request_id="r9")
    located = await world.flow.record_login_ip(TENANT, "u1", "10.0.0.7", info)
    assert located.display == "广东"
    view = await world.flow.get_account(TENANT, "u1")
    assert view.location == StoredLocation("广东", "Guangdong", "CN", "CN-GD", "xdb", "2026-11-01", NOW_MS)
    assert not view.verified  # a label alone binds nothing
    (entry,) = world.store.entries
    assert (entry.source, entry.source_build_date) == ("xdb", "2026-11-01")
    assert entry.fields["account"] == world.keyring.pseudonym(TENANT, "audit", "u1")
    assert (entry.fields["principal"], entry.fields["request_id"]) == ("platform1", "r9")
    assert "10.0.0.7" not in repr(world.store)


async def test_an_internal_login_label_is_audited_as_the_service(world: World) -> None:
    await world.flow.record_login_ip(TENANT, "u1", "10.0.0.7")
    assert world.store.entries[0].fields["principal"] == "idverify"


async def test_a_bad_account_id_is_refused_before_the_address_is_looked_up(world: World) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await world.flow.record_login_ip(TENANT, "", "10.0.0.7")
    assert refused.value.field == "account_id"
    assert world.locator.asked == []
    with pytest.raises(InvalidArgument) as malformed:
        await world.flow.record_login_ip(TENANT, "u1", "999.1")
    assert malformed.value.field == "ip"
    assert world.store.entries == []
    assert world.store.records == {}


async def test_lookup_ip_stores_nothing(world: World) -> None:
    assert (await world.flow.lookup_ip("10.0.0.1")).source == "xdb"
    assert world.store.records == {}
    assert world.store.entries == []


async def test_a_batch_answers_each_labelled_account_once_and_records_the_read(world: World) -> None:
    await world.flow.record_login_ip(TENANT, "a", "10.0.0.1")
    beijing = StoredLocation("北京", "Beijing", "CN", "CN-BJ", "mmdb", "2026-01-01", 7)
    world.put("b", replace(BOUND_ACCOUNT, location=beijing))
    found, unknown = await world.flow.ip_locations(TENANT, ["a", "b", "a", "c"], READER)
    assert found == [("a", b"\xe5\xb9\xbf\xe4\xb8\x9c|xdb"), ("b", "北京|mmdb".encode())]
    assert unknown == ["c"]
    (read,) = world.store.reads
    assert read.reader == READER
    assert read.accounts == (world.ps("a"), world.ps("b"))
    assert read.identities == ("v1.ref",)  # b is bound; a is not


async def test_a_read_the_service_makes_for_itself_is_not_recorded(world: World) -> None:
    await world.flow.ip_locations(TENANT, ["a"])
    assert world.store.reads == []


@pytest.mark.parametrize(
    ("ids", "reason", "field"),
    [
        ([], "EMPTY", "account_ids"),
        (["x"] * (MAX_BATCH + 1), "TOO_MANY", "account_ids"),
        (["a", "a", ""], "EMPTY", "account_ids[2]"),
    ],
)
async def test_a_malformed_batch_is_refused_and_nothing_read(
    world: World, ids: list[str], reason: str, field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await world.flow.ip_locations(TENANT, ids, READER)
    assert (refused.value.reason, refused.value.field) == (reason, field)
    assert world.store.reads == []


async def test_no_answer_without_the_store(world: World) -> None:
    world.store.down = True
    with pytest.raises(StoreUnavailable):
        await world.flow.get_account(TENANT, "u1")
    with pytest.raises(StoreUnavailable):
        await world.flow.record_login_ip(TENANT, "u1", "10.0.0.1")
    with pytest.raises(StoreUnavailable):
        await world.flow.ip_locations(TENANT, ["u1"], READER)

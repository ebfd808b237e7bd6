"""DisplayNameFlow over the in-memory DisplayNameStore: CheckDisplayName, SetApprovedNames; no Redis or gRPC.

Each test shows one decision of the use case: a display name carrying the account's own
verified or approved name, another organization's name or a reserved one, an account not
established; the day's calls of a client; the approval of short names and brands and its
refusals. ``test_display_names_store.py`` holds the in-memory store to the Redis one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from idverify.config import Settings, load_settings
from idverify.domain.display_names import NameVerdict, fold, protected_forms
from idverify.domain.errors import FailedPrecondition, InvalidArgument, RateLimited, StoreUnavailable
from idverify.flows.context import RequestInfo
from idverify.flows.display_names import DisplayNameFlow, name_hashes
from idverify.privacy.keyring import Keyring
from idverify.testing.memory_display_names import MemoryDisplayNames, StoredAccount

TENANT = "acme"
CLIENT = "c1"
CHECKS_PER_DAY = 4
NOW_MS = 1_800_000_000_000
ADMIN = RequestInfo(principal="admin1", request_id="r1")
CONFIG = """
[rate_limits]
display_name_checks_per_principal_per_day = {checks}

[tenants.{tenant}.display_names]
reserved_names = ["官方客服"]
"""
ORG = StoredAccount(
    bound=True, kind="organization", assurance="substantial", name_tag="tagA", audit="audit-a"
)


@dataclass
class World:
    flow: DisplayNameFlow
    store: MemoryDisplayNames
    keyring: Keyring
    now: list[int]

    def ps(self, account_id: str) -> str:
        return self.keyring.pseudonym(TENANT, "account", account_id)

    def put(self, account_id: str, stored: StoredAccount) -> None:
        self.store.put(TENANT, self.ps(account_id), stored)

    def verify(self, tag: str, registered: str) -> None:
        """Indexes an organization's registered name, as the verification that establishes it does."""
        self.store.verify(TENANT, tag, name_hashes(self.keyring, TENANT, sorted(protected_forms(registered))))

    async def verdict(self, account_id: str, display: str) -> tuple[NameVerdict, str]:
        judged = await self.flow.check(TENANT, CLIENT, account_id, display)
        return judged.verdict, judged.reason


def settings(tmp_path: Path) -> Settings:
    config = tmp_path / "idverify.toml"
    config.write_text(CONFIG.format(checks=CHECKS_PER_DAY, tenant=TENANT), encoding="utf-8")
    return load_settings(config, environ={})


@pytest.fixture
def world(tmp_path: Path) -> World:
    keyring = Keyring.generate()
    now = [NOW_MS]
    store = MemoryDisplayNames(clock_ms=lambda: now[0])
    return World(DisplayNameFlow(store, keyring=keyring, settings=settings(tmp_path)), store, keyring, now)


async def test_an_organization_carrying_its_own_name_is_consistent(world: World) -> None:
    world.put("org", ORG)
    world.verify("tagA", "深圳市腾讯计算机系统有限公司")
    assert await world.verdict("org", "腾讯计算机系统官方店") == (NameVerdict.CONSISTENT, "VERIFIED_NAME")
    assert await world.verdict("org", "小明的店") == (NameVerdict.INCONSISTENT, "NAME_NOT_CONTAINED")


async def test_another_organizations_name_is_an_impersonation_whoever_asks(world: World) -> None:
    world.verify("tagA", "深圳市腾讯计算机系统有限公司")
    world.put("person", StoredAccount(bound=True, kind="person", assurance="substantial", name_tag="tagP"))
    expected = (NameVerdict.IMPERSONATION, "OTHER_ORGANIZATION_NAME")
    assert await world.verdict("person", "腾讯计算机系统客服") == expected
    assert await world.verdict("nobody", "腾讯计算机系统客服") == expected


async def test_a_reserved_name_is_an_impersonation(world: World) -> None:
    assert await world.verdict("nobody", "官方客服小王") == (NameVerdict.IMPERSONATION, "RESERVED_NAME")


async def test_accounts_without_an_established_name(world: World) -> None:
    world.put("person", StoredAccount(bound=True, kind="person", assurance="high", name_tag="tagP"))
    world.put("low", StoredAccount(bound=True, kind="organization", assurance="low", name_tag="tagL"))
    world.put("unindexed", ORG)  # established before names were indexed: nothing in the index
    world.verify("tagL", "北京低保障科技有限公司")
    assert await world.verdict("nobody", "随便") == (NameVerdict.UNVERIFIED, "NO_VERIFIED_IDENTITY")
    assert await world.verdict("person", "随便") == (NameVerdict.NOT_APPLICABLE, "PERSON_ACCOUNT")
    assert await world.verdict("low", "随便") == (NameVerdict.UNVERIFIED, "NAME_NOT_ESTABLISHED")
    assert await world.verdict("unindexed", "随便") == (NameVerdict.UNVERIFIED, "NAME_NOT_ESTABLISHED")


async def test_a_client_is_refused_past_its_checks_of_the_day(world: World) -> None:
    for _ in range(CHECKS_PER_DAY):
        await world.verdict("nobody", "随便")
    world.now[0] += 1000
    with pytest.raises(RateLimited) as refused:
        await world.verdict("nobody", "随便")
    assert refused.value.reason == "DISPLAY_NAME_CHECKS_RATE_LIMITED"
    assert refused.value.retry_after == (86_400_000 - 1000) / 1000
    judged = await world.flow.check(TENANT, "c2", "nobody", "随便")  # another client is not refused
    assert judged.verdict is NameVerdict.UNVERIFIED
    world.now[0] = NOW_MS + 86_400_000
    await world.verdict("nobody", "随便")  # the next day


@pytest.mark.parametrize(
    ("account_id", "display", "field"), [("", "随便", "account_id"), ("a", "!!", "display_name")]
)
async def test_malformed_input_is_refused_before_the_store(
    world: World, account_id: str, display: str, field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await world.flow.check(TENANT, CLIENT, account_id, display)
    assert refused.value.field == field
    world.store.down = True  # nothing reached the store: the refusal came first
    with pytest.raises(InvalidArgument):
        await world.flow.check(TENANT, CLIENT, account_id, display)


async def test_approved_names_stand_for_the_organization_and_replace_earlier_ones(world: World) -> None:
    world.put("org", ORG)
    world.verify("tagA", "深圳市腾讯计算机系统有限公司")
    assert await world.flow.set_approved(TENANT, "org", ["微信", "QQ音乐"], ADMIN) == 2
    assert await world.verdict("org", "微信支付") == (NameVerdict.CONSISTENT, "APPROVED_NAME")
    assert (await world.verdict("nobody", "微信红包"))[0] is NameVerdict.IMPERSONATION
    # A verified form named again stays verified and is not counted as approved.
    assert await world.flow.set_approved(TENANT, "org", ["腾讯计算机系统", "ＱＱ音乐"], ADMIN) == 1
    assert (await world.verdict("nobody", "微信红包"))[0] is NameVerdict.UNVERIFIED  # 微信 was replaced
    entries = [(e.outcome, e.approved_count, e.fields["account"]) for e in world.store.entries]
    assert entries == [("approved", "2", "audit-a"), ("approved", "1", "audit-a")]


async def test_another_organizations_name_is_refused_and_audited(world: World) -> None:
    world.put("org", ORG)
    world.verify("tagA", "深圳市腾讯计算机系统有限公司")
    world.verify("tagB", "北京百度网讯科技有限公司")
    with pytest.raises(FailedPrecondition) as refused:
        await world.flow.set_approved(TENANT, "org", ["好百度网讯科技"], ADMIN)  # contains the other's
    assert refused.value.reason == "NAME_TAKEN"
    assert [(e.outcome, e.reason) for e in world.store.entries] == [("refused", "NAME_TAKEN")]
    assert world.store.own[(TENANT, "tagA")] == dict.fromkeys(world.store.own[TENANT, "tagA"], "v")


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        (None, "NOT_BOUND"),
        (StoredAccount(bound=True, kind="person", assurance="high", name_tag="tagP"), "NOT_ORGANIZATION"),
        (StoredAccount(bound=True, kind="organization", assurance="low", name_tag="tagA"), "NOT_ESTABLISHED"),
        (
            StoredAccount(bound=True, kind="organization", assurance="high", name_tag="tagX"),
            "NOT_ESTABLISHED",
        ),
    ],
)
async def test_only_an_established_organization_may_approve_names(
    world: World, stored: StoredAccount | None, reason: str
) -> None:
    world.verify("tagA", "深圳市腾讯计算机系统有限公司")
    if stored is not None:
        world.put("acct", stored)
    with pytest.raises(FailedPrecondition) as refused:
        await world.flow.set_approved(TENANT, "acct", ["微信"], ADMIN)
    assert refused.value.reason == reason
    assert world.store.entries == []  # these refusals tell nothing of other organizations


@pytest.mark.parametrize(
    ("names", "reason", "field"),
    [
        (["微信", "!"], "EMPTY", "names[1]"),
        (["微信", "q"], "TOO_SHORT", "names[1]"),
        (["x" + str(n) for n in range(1000)], "TOO_MANY", "names"),
    ],
)
async def test_malformed_names_are_refused_naming_the_entry(
    world: World, names: list[str], reason: str, field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await world.flow.set_approved(TENANT, "org", names, ADMIN)
    assert (refused.value.reason, refused.value.field) == (reason, field)


async def test_a_reserved_name_is_refused_naming_the_entry(world: World) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        await world.flow.set_approved(TENANT, "org", ["微信", "官方客服热线"], ADMIN)
    assert (refused.value.reason, refused.value.field) == ("NAME_RESERVED", "names[1]")


async def test_no_answer_without_the_store(world: World) -> None:
    world.store.down = True
    with pytest.raises(StoreUnavailable):
        await world.verdict("org", "随便")
    with pytest.raises(StoreUnavailable):
        await world.flow.set_approved(TENANT, "org", ["微信"], ADMIN)


def test_folding_is_what_the_index_hashes() -> None:
    assert fold("ＱＱ音乐") == fold("qq音乐")

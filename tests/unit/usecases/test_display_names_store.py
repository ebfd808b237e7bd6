"""The DisplayNameStore contract: the in-memory store and Redis answer alike.

Each assertion runs on ``idverify.testing.memory_display_names.MemoryDisplayNames`` and on
``store.display_names.RedisDisplayNames`` over the session's real redis-server (each test under
its own tenant), so what ``test_display_names_usecase.py`` shows the use case doing on the in-memory
store it does over Redis too.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from idverify.domain.errors import StoreUnavailable
from idverify.domain.subjects import AssuranceLevel
from idverify.flows.display_names import (
    Approval,
    ChecksLimited,
    DisplayNameStore,
    NameHit,
    NameLookup,
    NameQuery,
    NamesApproval,
)
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text, connect
from idverify.store.display_names import RedisDisplayNames
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing.memory_display_names import MemoryDisplayNames, StoredAccount
from tests.unit.usecases.contract import audit_rows

_tenants = itertools.count()
ORG = StoredAccount(
    bound=True, kind="organization", assurance="substantial", name_tag="tagA", audit="audit-a"
)
AUDIT = {"principal": "admin1", "request_id": "r1", "trace_id": "", "span": "", "account": ""}
NOTHING = NameLookup(bound=False, kind="", assurance="", name_tag="", names_indexed=False, hits=())
Entry = tuple[str, str, str, str]  # outcome, reason, approved_count, account


@dataclass
class Port:
    store: DisplayNameStore
    tenant: str
    put: Callable[[str, StoredAccount], Awaitable[None]]
    verify: Callable[[str, list[str]], Awaitable[None]]
    entries: Callable[[], Awaitable[list[Entry]]]

    def query(self, account: str, hashes: list[str], *, caller: str = "c1", limit: int = 100) -> NameQuery:
        return NameQuery(self.tenant, account, caller, tuple(hashes), limit, 400)

    def approval(self, account: str, names: list[str], parts: tuple[str, ...] = ()) -> NamesApproval:
        return NamesApproval(self.tenant, account, tuple(names), parts, AssuranceLevel.SUBSTANTIAL, AUDIT)


@pytest.fixture(params=["memory", "redis", "redis-steps"])
async def port(request: pytest.FixtureRequest, redis: RedisClient) -> AsyncIterator[Port]:
    tenant = f"names{next(_tenants)}"
    if request.param == "memory":
        memory = MemoryDisplayNames()

        async def put_memory(account: str, stored: StoredAccount) -> None:
            memory.put(tenant, account, stored)

        async def verify_memory(tag: str, hashes: list[str]) -> None:
            memory.verify(tenant, tag, hashes)

        async def memory_entries() -> list[Entry]:
            return [(e.outcome, e.reason, e.approved_count, e.fields["account"]) for e in memory.entries]

        yield Port(memory, tenant, put_memory, verify_memory, memory_entries)
        return
    keys = TenantKeys(tenant)

    async def put_redis(account: str, stored: StoredAccount) -> None:
        fields = {"kind": stored.kind, "assurance": stored.assurance, "name_tag": stored.name_tag}
        fields |= {"identity": "v1.ref"} if stored.bound else {}
        fields |= {"audit": stored.audit} if stored.audit else {}
        await redis.hset(keys.account(account), mapping=fields)  # type: ignore[arg-type]

    async def verify_redis(tag: str, hashes: list[str]) -> None:
        # What the prelude's add_org_name writes when a verification establishes the organization.
        for name in hashes:
            owners = await redis.hget(keys.organization_names(), name)
            held = as_text(owners).split() if owners else []
            if tag not in held:
                await redis.hset(keys.organization_names(), name, " ".join([*held, tag]))
            await redis.hset(keys.organization_own_names(tag), name, "v")

    async def redis_entries() -> list[Entry]:
        rows = await audit_rows(redis, tenant)
        return [
            (r["outcome"], r["reason"], r["attributes"].get("approved_count", ""), r["account"]) for r in rows
        ]

    scripts = Scripts(redis)
    # redis-steps: the account read, then the tenant's step, one by one as on a Cluster (§3.5).
    steps = StepRunner(scripts, step_by_step=request.param == "redis-steps")
    yield Port(RedisDisplayNames(scripts, steps=steps), tenant, put_redis, verify_redis, redis_entries)


async def test_contract_an_empty_index(port: Port) -> None:
    assert await port.store.look_up(port.query("a", ["h1", "h2"])) == NOTHING
    assert await port.store.look_up(port.query("a", [])) == NOTHING


async def test_contract_lookups(port: Port) -> None:
    await port.put("org", ORG)
    await port.put("other", StoredAccount(bound=True, kind="organization", assurance="high", name_tag="tagB"))
    await port.verify("tagA", ["h1", "h2"])
    await port.verify("tagB", ["h2"])
    looked = await port.store.look_up(port.query("org", ["h0", "h1", "h2"]))
    assert looked == NameLookup(
        bound=True,
        kind="organization",
        assurance="substantial",
        name_tag="tagA",
        names_indexed=True,
        hits=(NameHit(1, frozenset({"tagA"}), "v"), NameHit(2, frozenset({"tagA", "tagB"}), "v")),
    )
    other = await port.store.look_up(port.query("other", ["h1"]))
    assert isinstance(other, NameLookup)
    assert other.hits == (NameHit(0, frozenset({"tagA"}), ""),)
    await port.put("fresh", StoredAccount(bound=True, kind="organization", assurance="high", name_tag="tagC"))
    fresh = await port.store.look_up(port.query("fresh", ["h1"]))
    assert isinstance(fresh, NameLookup)
    assert not fresh.names_indexed


async def test_contract_a_callers_window(port: Port) -> None:
    for _ in range(2):
        assert isinstance(await port.store.look_up(port.query("a", ["h1"], limit=2)), NameLookup)
    limited = await port.store.look_up(port.query("a", ["h1"], limit=2))
    assert isinstance(limited, ChecksLimited)
    assert 0 < limited.retry_after_ms <= 400
    assert isinstance(await port.store.look_up(port.query("a", ["h1"], caller="c2", limit=2)), NameLookup)
    await asyncio.sleep(0.45)
    assert isinstance(await port.store.look_up(port.query("a", ["h1"], limit=2)), NameLookup)


async def test_contract_refused_approvals(port: Port) -> None:
    await port.verify("tagA", ["h1"])
    await port.put("person", StoredAccount(bound=True, kind="person", assurance="high", name_tag="tagP"))
    await port.put("low", StoredAccount(bound=True, kind="organization", assurance="low", name_tag="tagA"))
    await port.put("new", StoredAccount(bound=True, kind="organization", assurance="high", name_tag="tagN"))
    await port.put(
        "unbound", StoredAccount(bound=False, kind="organization", assurance="high", name_tag="tagA")
    )
    assert await port.store.approve(port.approval("absent", ["n1"])) == (Approval.NOT_BOUND, 0)
    assert await port.store.approve(port.approval("unbound", ["n1"])) == (Approval.NOT_BOUND, 0)
    assert await port.store.approve(port.approval("person", ["n1"])) == (Approval.NOT_ORGANIZATION, 0)
    assert await port.store.approve(port.approval("low", ["n1"])) == (Approval.NOT_ESTABLISHED, 0)
    assert await port.store.approve(port.approval("new", ["n1"])) == (Approval.NOT_ESTABLISHED, 0)
    assert await port.entries() == []


async def test_contract_approvals(port: Port) -> None:
    await port.put("org", ORG)
    await port.verify("tagA", ["h1"])
    await port.verify("tagB", ["hb"])
    assert await port.store.approve(port.approval("org", ["n1", "n2"], ("p1",))) == (Approval.APPROVED, 2)
    assert await port.store.approve(port.approval("org", ["h1", "n2"])) == (Approval.APPROVED, 1)
    looked = await port.store.look_up(port.query("org", ["h1", "n1", "n2"]))
    assert isinstance(looked, NameLookup)
    assert looked.hits == (NameHit(0, frozenset({"tagA"}), "v"), NameHit(2, frozenset({"tagA"}), "a"))
    assert await port.store.approve(port.approval("org", ["n3"], ("hb",))) == (Approval.NAME_TAKEN, 0)
    assert await port.store.approve(port.approval("org", ["hb"])) == (Approval.NAME_TAKEN, 0)
    assert await port.entries() == [
        ("approved", "", "2", "audit-a"),
        ("approved", "", "1", "audit-a"),
        ("refused", "NAME_TAKEN", "", "audit-a"),
        ("refused", "NAME_TAKEN", "", "audit-a"),
    ]


async def test_an_unreachable_redis_is_store_unavailable(tmp_path: Path) -> None:
    client = connect(f"unix://{tmp_path}/absent.sock")
    store = RedisDisplayNames(Scripts(client))
    with pytest.raises(StoreUnavailable):
        await store.look_up(NameQuery("acme", "a", "c1", ("h1",), 5, 1000))
    with pytest.raises(StoreUnavailable):
        await store.approve(NamesApproval("acme", "a", ("n1",), (), AssuranceLevel.SUBSTANTIAL, AUDIT))

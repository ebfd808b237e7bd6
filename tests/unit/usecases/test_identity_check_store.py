"""The IdentityCheckStore contract: the in-memory store and Redis answer alike.

Each assertion runs on ``idverify.testing.memory_identity_checks.MemoryIdentityChecks`` and on
``store.identity_checks.RedisIdentityChecks`` over the session's real redis-server (each test
under its own tenant), so what ``test_identity_check.py`` shows the use case doing on the
in-memory store it does over Redis too.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from idverify.domain.errors import StoreUnavailable
from idverify.flows.identity_check import (
    BoundIdentity,
    CheckLimited,
    CheckStep,
    CheckTally,
    IdentityCheckStore,
)
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, connect
from idverify.store.identity_checks import RedisIdentityChecks
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing.memory_identity_checks import MemoryIdentityChecks
from tests.unit.usecases.contract import audit_rows

WINDOW_MS = 400  # short, so a window's end is waited for
_tenants = itertools.count()

Entry = tuple[str, str, str, str]  # outcome, reason, principal, account


@dataclass
class Port:
    store: IdentityCheckStore
    tenant: str
    bind: Callable[[str, BoundIdentity], Awaitable[None]]  # no name binding: no identity record
    entries: Callable[[], Awaitable[list[Entry]]]

    def tally(
        self, account: str = "acct1", principal: str = "caller1", *, limits: tuple[int, int] = (2, 3)
    ) -> CheckTally:
        return tally_of(self.tenant, account, principal, limits)


def tally_of(tenant: str, account: str, principal: str, limits: tuple[int, int]) -> CheckTally:
    audit = {
        "principal": principal,
        "request_id": "r1",
        "trace_id": "",
        "span": "",
        "account": f"audit-{account}",
    }
    return CheckTally(tenant, account, principal, limits[0], limits[1], WINDOW_MS, audit)


@pytest.fixture(params=["memory", "redis", "redis-step-by-step"])
async def port(request: pytest.FixtureRequest, redis: RedisClient) -> AsyncIterator[Port]:
    tenant = f"idcheck{next(_tenants)}"
    if request.param == "memory":
        memory = MemoryIdentityChecks()

        async def bind_memory(account: str, bound: BoundIdentity) -> None:
            memory.bind(tenant, account, bound)

        async def memory_entries() -> list[Entry]:
            return [(e.outcome, e.reason, e.fields["principal"], e.fields["account"]) for e in memory.entries]

        yield Port(memory, tenant, bind_memory, memory_entries)
        return
    keys = TenantKeys(tenant)

    async def bind_redis(account: str, bound: BoundIdentity) -> None:
        fields = {"identity": bound.identity_ref, **({"name_tag": bound.name_tag} if bound.name_tag else {})}
        await redis.hset(keys.account(account), mapping=fields)  # type: ignore[arg-type]
        if bound.name_binding is not None:
            record = {"name_binding": bound.name_binding, "pepper": bound.index_params}
            await redis.hset(keys.identity(bound.identity_ref), mapping=record)  # type: ignore[arg-type]

    async def redis_entries() -> list[Entry]:
        rows = await audit_rows(redis, tenant)
        return [(r["outcome"], r["reason"], r["principal"], r["account"]) for r in rows]

    scripts = Scripts(redis)
    # Step by step: each counter's step at once, as on a Cluster where they are two slots.
    steps = StepRunner(scripts, step_by_step=request.param == "redis-step-by-step")
    yield Port(RedisIdentityChecks(redis, scripts, steps=steps), tenant, bind_redis, redis_entries)


BOUND = BoundIdentity(
    identity_ref="v1.sealedref",
    name_tag="tag1",
    name_binding="v1.sealedbinding",
    index_params="$argon2id$v=19$m=8,t=1,p=1$p1",
)


async def test_contract_bindings(port: Port) -> None:
    assert await port.store.bound_identity(port.tenant, "acct1") is None
    await port.bind("acct1", BOUND)
    assert await port.store.bound_identity(port.tenant, "acct1") == BOUND
    untagged = BoundIdentity(BOUND.identity_ref + "2", None, "v1.other", "$argon2id$v=19$m=8,t=1,p=1$p2")
    await port.bind("acct2", untagged)
    assert await port.store.bound_identity(port.tenant, "acct2") == untagged
    # A ref whose identity record is gone: the binding has no name binding and no parameters.
    gone = BoundIdentity("v1.gone", "tag3", None, "")
    await port.bind("acct3", gone)
    assert await port.store.bound_identity(port.tenant, "acct3") == gone
    assert await port.store.bound_identity("another", "acct1") is None


async def test_contract_admits_and_audits_answers(port: Port) -> None:
    tally = port.tally()
    assert await port.store.tally(tally, CheckStep.ADMIT) is None
    assert await port.store.tally(tally, CheckStep.MATCH) is None
    assert await port.store.tally(tally, CheckStep.MISMATCH) is None
    assert await port.entries() == [
        ("match", "", "caller1", "audit-acct1"),
        ("mismatch", "", "caller1", "audit-acct1"),
    ]


async def test_contract_the_account_limit(port: Port) -> None:
    tally = port.tally()
    for _ in range(2):
        assert await port.store.tally(tally, CheckStep.MISMATCH) is None
    for step in CheckStep:  # the right answer too
        limited = await port.store.tally(tally, step)
        assert isinstance(limited, CheckLimited)
        assert limited.reached == "CHECK_LIMIT_REACHED"
        assert 0 < limited.retry_after_ms <= WINDOW_MS
    assert (await port.entries())[2:] == [("refused", "CHECK_LIMIT_REACHED", "caller1", "audit-acct1")] * 3
    # Another account of the same caller is not refused; the caller's count still grows.
    assert await port.store.tally(port.tally("acct2"), CheckStep.MISMATCH) is None
    limited = await port.store.tally(port.tally("acct3"), CheckStep.ADMIT)
    assert limited is not None
    assert limited.reached == "PRINCIPAL_CHECK_LIMIT_REACHED"
    assert await port.store.tally(port.tally("acct3", "caller2"), CheckStep.ADMIT) is None


async def test_contract_both_limits_name_the_account(port: Port) -> None:
    tally = port.tally(limits=(1, 1))
    assert await port.store.tally(tally, CheckStep.MISMATCH) is None
    limited = await port.store.tally(tally, CheckStep.ADMIT)
    assert limited is not None
    assert limited.reached == "CHECK_LIMIT_REACHED"


async def test_contract_a_limit_of_zero_waits_a_whole_window(port: Port) -> None:
    assert await port.store.tally(port.tally(limits=(0, 5)), CheckStep.ADMIT) == CheckLimited(
        "CHECK_LIMIT_REACHED", WINDOW_MS
    )


async def test_contract_a_window_ends_after_its_first_mismatch(port: Port) -> None:
    tally = port.tally(limits=(1, 5))
    assert await port.store.tally(tally, CheckStep.MISMATCH) is None
    assert await port.store.tally(tally, CheckStep.ADMIT) is not None
    await asyncio.sleep(WINDOW_MS / 1000 + 0.05)
    assert await port.store.tally(tally, CheckStep.ADMIT) is None
    assert await port.store.tally(tally, CheckStep.MISMATCH) is None  # a new window's first


async def test_contract_tenants_are_apart(port: Port) -> None:
    tally = port.tally(limits=(1, 1))
    assert await port.store.tally(tally, CheckStep.MISMATCH) is None
    assert await port.store.tally(tally, CheckStep.ADMIT) is not None
    assert await port.store.tally(replace(tally, tenant=port.tenant + "b"), CheckStep.ADMIT) is None


async def test_an_unreachable_redis_is_store_unavailable(tmp_path: Path) -> None:
    client = connect(f"unix://{tmp_path}/absent.sock")
    store = RedisIdentityChecks(client, Scripts(client))
    with pytest.raises(StoreUnavailable):
        await store.bound_identity("acme", "acct1")
    with pytest.raises(StoreUnavailable):
        await store.tally(tally_of("acme", "acct1", "caller1", (2, 3)), CheckStep.ADMIT)

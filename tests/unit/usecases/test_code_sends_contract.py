"""The CodeSendStore port's contract, on the in-memory counters and on Redis alike.

``testing.memory_code_sends.MemoryCodeSends`` (what ``test_code_sends_usecase.py`` runs the
counter on) and ``store.code_sends.RedisCodeSends`` over a real redis-server (``send_budget.lua``,
``phone_send.lua``, ``phone_guess.lua``, ``rate_limit.lua``), its counts chained as on one server
or made one by one as on Cluster, answer every assertion here the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Protocol

from idverify.security.code_sends import (
    AnswerCount,
    CodeSendStore,
    Count,
    PhoneCount,
    SendCounts,
    SendPseudonyms,
    SendToCount,
    TenantCount,
)
from idverify.store.code_sends import RedisCodeSends
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing.memory_code_sends import MemoryCodeSends, send_limits
from tests.unit.usecases.contract import Contract, audit_rows, port_on_each

REQUEST = {"principal": "registrar01", "request_id": "r1", "trace_id": ""}
HOUR_MS = 3_600_000
LIMITS = send_limits(
    per_phone_per_hour=3,
    per_phone_all_tenants_per_hour=4,
    per_principal_per_minute=5,
    phone_failure_limit=2,
    failure_window_ms=300,
)
OK = PhoneCount(Count.OK)


class World(Protocol):
    """What the port does not write itself (the tenant's wrong codes), time, and the audit log."""

    async def fail(self, tenant: str, account_phone: str) -> None: ...

    async def wait(self, ms: int) -> None: ...

    async def audited(self, tenant: str) -> list[str]: ...


class MemoryWorld:
    def __init__(self, sends: MemoryCodeSends) -> None:
        self._sends = sends

    async def fail(self, tenant: str, account_phone: str) -> None:
        self._sends.fail(tenant, account_phone)

    async def wait(self, ms: int) -> None:
        self._sends.advance(ms)

    async def audited(self, tenant: str) -> list[str]:
        return [limit for t, limit in self._sends.audit if t == tenant]


class RedisWorld:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def fail(self, tenant: str, account_phone: str) -> None:
        await self._redis.incr(TenantKeys(tenant).otp_failures(account_phone))

    async def wait(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000)

    async def audited(self, tenant: str) -> list[str]:
        rows = await audit_rows(self._redis, tenant)
        assert {row["type"] for row in rows} <= {"rate_limit.hit"}
        return [row["attributes"]["limit"] for row in rows]


Port = Contract[CodeSendStore, World]


class StepByStep(Scripts):
    """Scripts that run each count alone, as on Cluster where the phone's slot is another server's."""

    @property
    def one_node(self) -> bool:
        return False


def memory_port() -> Port:
    memory = MemoryCodeSends(LIMITS)
    return Port(memory, MemoryWorld(memory))


def redis_port(redis: RedisClient, scripts: Scripts | None = None) -> Port:
    return Port(RedisCodeSends(scripts or Scripts(redis), LIMITS), RedisWorld(redis))


port = port_on_each(memory_port, redis_port, step_by_step=lambda redis: redis_port(redis, StepByStep(redis)))


def hexed(phone: str) -> str:
    """A phone's deployment pseudonym, as the keyring makes it: 32 hex digits."""
    return hashlib.md5(phone.encode(), usedforsecurity=False).hexdigest()


def send(
    tenant: str = "acme", account: str = "a1", phone: str = "ph1", principal: str = "registrar01"
) -> SendToCount:
    names = SendPseudonyms(f"{account}:{phone}", f"{tenant}:{phone}", hexed(phone))
    return SendToCount(tenant, names, principal, 3, REQUEST)


async def test_contract_a_tenants_per_phone_window_refuses_and_audits_once(port: Port) -> None:
    sends, world = port.store, port.world
    for _ in range(3):
        assert await sends.count_send(send()) == SendCounts(TenantCount(Count.OK), OK)
    refused = [await sends.count_send(send()) for _ in range(2)]
    for counts in refused:
        assert counts.phone is None  # the phone's count is not made
        assert (counts.tenant.outcome, counts.tenant.window) == (Count.LIMITED, "phone")
        assert HOUR_MS - 60_000 < counts.tenant.ttl_ms <= HOUR_MS
    assert await world.audited("acme") == ["phone"]
    assert (await sends.count_send(send(account="a2", phone="ph2"))).tenant.outcome is Count.OK


async def test_contract_a_principals_budget_spans_phones(port: Port) -> None:
    sends, world = port.store, port.world
    for n in range(5):
        assert (await sends.count_send(send(phone=f"ph{n}"))).tenant.outcome is Count.OK
    counts = await sends.count_send(send(phone="ph9"))
    assert (counts.tenant.outcome, counts.tenant.window) == (Count.LIMITED, "principal_sends_minute")
    assert 0 < counts.tenant.ttl_ms <= 60_000
    assert (await sends.count_send(send(phone="ph9", principal="other"))).tenant.outcome is Count.OK
    assert await world.audited("acme") == ["principal_sends_minute"]


async def test_contract_the_account_and_phones_wrong_codes_lock_it(port: Port) -> None:
    sends, world = port.store, port.world
    await world.fail("acme", "a1:ph1")
    assert await sends.count_send(send()) == SendCounts(TenantCount(Count.OK, failures=1), OK)
    await world.fail("acme", "a1:ph1")
    await world.fail("acme", "a1:ph1")
    assert await sends.count_send(send()) == SendCounts(TenantCount(Count.LOCKED, failures=3))
    assert await world.audited("acme") == []


async def test_contract_a_phones_shared_window_counts_every_tenant(port: Port) -> None:
    sends, world = port.store, port.world
    for tenant in ("acme", "acme", "globex", "globex"):
        assert (await sends.count_send(send(tenant))).phone == OK
    counts = await sends.count_send(send("initech"))
    assert counts.tenant == TenantCount(Count.OK)  # the tenant's budget is spent all the same
    assert counts.phone is not None
    assert counts.phone.outcome is Count.LIMITED
    assert HOUR_MS - 60_000 < counts.phone.ttl_ms <= HOUR_MS
    await sends.audit_phone_limited(send("initech"), counts.phone.ttl_ms)
    await sends.audit_phone_limited(send("initech"), counts.phone.ttl_ms)
    assert await world.audited("initech") == ["phone_all_tenants"]
    assert await world.audited("acme") == []


async def test_contract_wrong_codes_lock_the_phone_for_a_window(port: Port) -> None:
    sends, world = port.store, port.world
    for _ in range(3):
        assert await sends.count_answer(hexed("ph1"), wrong=False) == AnswerCount(locked=False)  # right ones
    assert await sends.count_answer("", wrong=True) is None  # no phone: nothing to count
    assert await sends.count_answer(hexed("ph1"), wrong=True) == AnswerCount(locked=False)
    assert await sends.count_answer(hexed("ph1"), wrong=True) == AnswerCount(locked=False)  # the second locks
    locked = await sends.count_answer(hexed("ph1"), wrong=False)
    assert locked is not None
    assert locked.locked
    assert 0 < locked.ttl_ms <= LIMITS.failure_window_ms
    assert (await sends.count_send(send("globex"))).phone == PhoneCount(Count.LOCKED)
    assert await sends.count_answer(hexed("ph2"), wrong=False) == AnswerCount(locked=False)
    await world.wait(LIMITS.failure_window_ms + 200)
    assert await sends.count_answer(hexed("ph1"), wrong=False) == AnswerCount(locked=False)


async def test_contract_a_locked_phones_answers_are_audited_once_per_account(port: Port) -> None:
    sends, world = port.store, port.world
    await sends.audit_phone_locked("acme", "a1:ph1", 1000, REQUEST)
    await sends.audit_phone_locked("acme", "a1:ph1", 1000, REQUEST)
    await sends.audit_phone_locked("acme", "a2:ph1", 1000, REQUEST)
    assert await world.audited("acme") == ["phone_locked", "phone_locked"]

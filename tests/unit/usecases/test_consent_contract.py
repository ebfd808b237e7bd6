"""The ConsentStore port's contract, on the in-memory store and on Redis alike.

``testing.memory_consents.MemoryConsentStore`` (what ``test_consent_usecase.py`` runs the flow on)
and ``store.consents.RedisConsentStore`` over a real redis-server (``consent_grant.lua``,
``consent_withdraw.lua``, ``consent_start.lua``) answer every assertion here the same way.
"""

from __future__ import annotations

import json
from typing import Protocol

from idverify.domain.consent import IDENTITY, PHONE, text_version_of
from idverify.flows.consent import (
    AdmitOutcome,
    ConsentAdmission,
    ConsentGrant,
    ConsentRecord,
    ConsentStore,
    ConsentWithdrawal,
)
from idverify.flows.context import RequestInfo
from idverify.store.connection import RedisClient, as_text
from idverify.store.consents import RedisConsentStore
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing.memory_consents import MemoryConsentStore
from tests.unit.usecases.contract import Contract, port_on_each

REQUEST = json.dumps(RequestInfo(principal="registrar01").audit_fields())
V1 = text_version_of("first")
V2 = text_version_of("second")


class World(Protocol):
    """What the port does not write itself (a cancellation), and what it leaves behind."""

    async def cancel(self, tenant: str, account_ps: str) -> None: ...

    async def lasting(self, tenant: str, account_ps: str) -> bool: ...

    async def admitted(self, tenant: str, account_ps: str) -> list[str]: ...


class MemoryWorld:
    def __init__(self, store: MemoryConsentStore) -> None:
        self._store = store

    async def cancel(self, tenant: str, account_ps: str) -> None:
        self._store.cancel(tenant, account_ps)

    async def lasting(self, tenant: str, account_ps: str) -> bool:
        return self._store.lasting(tenant, account_ps)

    async def admitted(self, tenant: str, account_ps: str) -> list[str]:
        return self._store.admitted(tenant, account_ps)


class RedisWorld:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def cancel(self, tenant: str, account_ps: str) -> None:
        await self._redis.hset(TenantKeys(tenant).account(account_ps), "cancelled_ms", 1)

    async def lasting(self, tenant: str, account_ps: str) -> bool:
        return bool(await self._redis.pttl(TenantKeys(tenant).consent(account_ps)) == -1)

    async def admitted(self, tenant: str, account_ps: str) -> list[str]:
        return [
            as_text(v)
            for v in await self._redis.zrange(TenantKeys(tenant).account_verifications(account_ps), 0, -1)
        ]


Port = Contract[ConsentStore, World]


def memory_port() -> Port:
    memory = MemoryConsentStore()
    return Port(memory, MemoryWorld(memory))


def redis_port(redis: RedisClient) -> Port:
    return Port(RedisConsentStore(redis, Scripts(redis)), RedisWorld(redis))


port = port_on_each(memory_port, redis_port)


def grant(purpose: str, version: str = V1, account_ps: str = "a1", *, audit: bool = True) -> ConsentGrant:
    return ConsentGrant(account_ps, f"audit-{account_ps}", purpose, version, REQUEST, audit)


def withdrawal(purpose: str, account_ps: str = "a1") -> ConsentWithdrawal:
    return ConsentWithdrawal(account_ps, f"audit-{account_ps}", purpose, REQUEST)


def admission(
    record: ConsentRecord,
    grants: tuple[tuple[str, str], ...] = (),
    verification_id: str = "v1",
    account_ps: str = "a1",
) -> ConsentAdmission:
    return ConsentAdmission(
        account_ps, f"audit-{account_ps}", verification_id, 90_000, record.revision, grants, REQUEST, "sms"
    )


async def test_contract_an_empty_record(port: Port) -> None:
    store = port.store
    assert await store.now_ms() > 0
    assert await store.read("acme", "a1") == ConsentRecord({}, "", cancelled=False)
    await store.keep("acme", "a1")  # nothing to keep
    assert await store.read("acme", "a1") == ConsentRecord({}, "", cancelled=False)


async def test_contract_grants_and_withdrawals_move_the_revision_on(port: Port) -> None:
    store, world = port.store, port.world
    granted = await store.grant("acme", grant(PHONE))
    assert granted is not None
    assert (granted.purpose, granted.text_version, granted.granted) == (PHONE, V1, True)
    first = await store.read("acme", "a1")
    assert first.states == {PHONE: granted}
    assert first.revision != ""
    assert await world.lasting("acme", "a1")
    withdrawn = await store.withdraw("acme", withdrawal(PHONE))
    assert withdrawn is not None
    assert (withdrawn.granted, withdrawn.refused, withdrawn.text_version) == (False, True, V1)
    assert withdrawn.granted_ms == granted.granted_ms
    second = await store.read("acme", "a1")
    assert second.revision not in {"", first.revision}
    refused = await store.withdraw("acme", withdrawal(IDENTITY))
    assert refused is not None
    assert (refused.granted_ms, refused.refused) == (0, True)
    regranted = await store.grant("acme", grant(PHONE, V2))
    assert regranted is not None
    assert (regranted.granted, regranted.withdrawn_ms, regranted.text_version) == (True, 0, V2)
    assert (await store.read("globex", "a1")).states == {}  # another tenant's record


async def test_contract_a_cancelled_account(port: Port) -> None:
    store, world = port.store, port.world
    await store.grant("acme", grant(PHONE))
    await world.cancel("acme", "a1")
    record = await store.read("acme", "a1")
    assert record.cancelled
    assert await store.grant("acme", grant(IDENTITY)) is None
    assert (await store.admit("acme", admission(record))).outcome is AdmitOutcome.CANCELLED
    assert await world.admitted("acme", "a1") == []


async def test_contract_an_admission_records_its_grants_for_the_verification_only(port: Port) -> None:
    store, world = port.store, port.world
    record = await store.read("acme", "a1")
    reply = await store.admit("acme", admission(record, ((IDENTITY, V1), (PHONE, V2))))
    assert reply.outcome is AdmitOutcome.ADMITTED
    assert await world.admitted("acme", "a1") == ["v1"]
    after = await store.read("acme", "a1")
    assert {p: (s.text_version, s.granted) for p, s in after.states.items()} == {
        IDENTITY: (V1, True),
        PHONE: (V2, True),
    }
    assert after.revision != record.revision
    assert not await world.lasting("acme", "a1")  # expires with the verification
    await store.keep("acme", "a1")
    assert await world.lasting("acme", "a1")


async def test_contract_an_admission_without_grants_leaves_the_record_as_it_was(port: Port) -> None:
    store, world = port.store, port.world
    await store.grant("acme", grant(IDENTITY))
    record = await store.read("acme", "a1")
    assert (await store.admit("acme", admission(record))).outcome is AdmitOutcome.ADMITTED
    assert await store.read("acme", "a1") == record
    assert await world.lasting("acme", "a1")
    assert (
        await store.admit("acme", admission(record, verification_id="v2"))
    ).outcome is AdmitOutcome.ADMITTED
    assert sorted(await world.admitted("acme", "a1")) == ["v1", "v2"]


async def test_contract_an_admission_on_a_changed_record_answers_it(port: Port) -> None:
    store, world = port.store, port.world
    judged = await store.read("acme", "a1")
    await store.grant("acme", grant(PHONE))
    reply = await store.admit("acme", admission(judged, ((IDENTITY, V1),)))
    assert reply.outcome is AdmitOutcome.CHANGED
    assert reply.record == await store.read("acme", "a1")
    assert reply.record is not None
    assert set(reply.record.states) == {PHONE}  # nothing of the refused admission was written
    assert await world.admitted("acme", "a1") == []
    again = await store.admit("acme", admission(reply.record, ((IDENTITY, V1),)))
    assert again.outcome is AdmitOutcome.ADMITTED

"""The AccountExportStore port's contract: the in-memory store and Redis answer alike.

Each test runs on ``idverify.testing.memory_account_export.MemoryAccountExports`` and on
``store.account_exports.RedisAccountExports`` over the suite's redis-server (a tenant of its own
per test). A test writes the records through ``Seed``, which writes Redis's fields (as the
signup's scripts write them) or the memory store's typed values, and reads the appended entries
back from either log.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.flows.account_export import AccountExportStore, AccountRecord, HeldRecords
from idverify.store.account_exports import RedisAccountExports
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing.memory_account_export import MemoryAccountExports, MemoryAuditLog
from tests.unit.usecases.contract import audit_events

_tenants = itertools.count()
HOUR_MS = 3_600_000
# type, account, outcome, principal, request id, start_index
Exported = tuple[str, str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class Seed:
    """How a test writes an implementation's records and reads its log."""

    account: Callable[[str, str, AccountRecord], Awaitable[None]]
    identity: Callable[[str, str], Awaitable[None]]
    verification: Callable[[str, str, str, int], Awaitable[None]]  # tenant, ps, id, expiry from now
    entries: Callable[[str], Awaitable[list[Exported]]]


@pytest.fixture
def tenant() -> str:
    return f"export-contract-{next(_tenants)}"


def memory_port() -> tuple[AccountExportStore, Seed]:
    log = MemoryAuditLog(Ed25519PrivateKey.generate())
    memory = MemoryAccountExports(log)

    async def account(tenant: str, ps: str, record: AccountRecord) -> None:
        memory.accounts[tenant, ps] = record

    async def identity(tenant: str, ref: str) -> None:
        memory.identities.add((tenant, ref))

    async def verification(tenant: str, ps: str, _: str, ms_from_now: int) -> None:
        # The memory store's clock is the wall clock unless set.
        memory.verifications.setdefault((tenant, ps), []).append(time.time_ns() // 1_000_000 + ms_from_now)

    async def entries(tenant: str) -> list[Exported]:
        return [
            (e.type, e.account, e.outcome, e.principal, e.request_id, e.attributes["start_index"])
            for e, _ in log.logs.get(tenant, [])
        ]

    return memory, Seed(account, identity, verification, entries)


def redis_port(redis: RedisClient) -> tuple[AccountExportStore, Seed]:
    scripts = Scripts(redis)

    async def account(tenant: str, ps: str, record: AccountRecord) -> None:
        fields = {
            "audit": record.audit_pseudonym,
            "identity": record.identity_ref,
            "name_tag": "w1:tag" if record.name_tag else "",
            "birth_sealed": "w1:sealed" if record.birth_sealed else "",
            "erase_due_ms": "1764000000000" if record.erasure_due else "",
            "method": "id2",  # a field the export does not read
        }
        await redis.hset(TenantKeys(tenant).account(ps), mapping={k: v for k, v in fields.items() if v})

    async def identity(tenant: str, ref: str) -> None:
        await redis.hset(TenantKeys(tenant).identity(ref), mapping={"pepper": "p1"})

    async def verification(tenant: str, ps: str, vid: str, ms_from_now: int) -> None:
        # Listed with its record's expiry, as the signup lists it.
        now = await scripts.clock.now_ms()
        await redis.zadd(TenantKeys(tenant).account_verifications(ps), {vid: now + ms_from_now})

    async def entries(tenant: str) -> list[Exported]:
        return [
            (e.type, e.account, e.outcome, e.principal, e.request_id, e.attributes["start_index"])
            for e in await audit_events(redis, tenant)
        ]

    return RedisAccountExports(redis, scripts), Seed(account, identity, verification, entries)


@pytest.fixture(params=["memory", "redis"])
def port(request: pytest.FixtureRequest, redis: RedisClient) -> tuple[AccountExportStore, Seed]:
    return memory_port() if request.param == "memory" else redis_port(redis)


BARE = AccountRecord(
    audit_pseudonym="", identity_ref="", name_tag=False, birth_sealed=False, erasure_due=False
)


async def test_contract_no_record_is_none(port: tuple[AccountExportStore, Seed], tenant: str) -> None:
    store, _ = port
    assert await store.account(tenant, "ps1") is None


@pytest.mark.parametrize(
    "record",
    [
        BARE,  # an account with no field the export reads (only its method, say)
        AccountRecord("aud1", "ref1", name_tag=True, birth_sealed=True, erasure_due=True),
        AccountRecord("aud1", "", name_tag=False, birth_sealed=True, erasure_due=False),
    ],
)
async def test_contract_the_account_record(
    port: tuple[AccountExportStore, Seed], tenant: str, record: AccountRecord
) -> None:
    store, seed = port
    await seed.account(tenant, "ps1", record)
    assert await store.account(tenant, "ps1") == record
    assert await store.account(tenant + "-other", "ps1") is None  # another tenant's is not read


async def test_contract_held_records(port: tuple[AccountExportStore, Seed], tenant: str) -> None:
    store, seed = port
    assert await store.held_records(tenant, "ps1", "") == HeldRecords(identity=False, verifications=False)
    assert await store.held_records(tenant, "ps1", "ref1") == HeldRecords(identity=False, verifications=False)
    await seed.identity(tenant, "ref1")
    await seed.identity(tenant + "-other", "ref2")
    await seed.verification(tenant, "ps1", "v-old", -HOUR_MS)  # listed, its record expired
    assert await store.held_records(tenant, "ps1", "ref1") == HeldRecords(identity=True, verifications=False)
    assert await store.held_records(tenant, "ps1", "ref2") == HeldRecords(identity=False, verifications=False)
    await seed.verification(tenant, "ps1", "v-live", HOUR_MS)
    assert await store.held_records(tenant, "ps1", "") == HeldRecords(identity=False, verifications=True)
    assert await store.held_records(tenant, "ps2", "") == HeldRecords(identity=False, verifications=False)


async def test_contract_the_export_entry(port: tuple[AccountExportStore, Seed], tenant: str) -> None:
    store, seed = port
    request = json.dumps(
        {"principal": f"{tenant}/platform/p1", "request_id": "r1", "trace_id": "", "span": ""}
    )
    await store.append_export(tenant, request, "aud1", 0)
    await store.append_export(tenant, request, "aud1", 17)
    assert await seed.entries(tenant) == [
        ("account.exported", "aud1", "exported", f"{tenant}/platform/p1", "r1", "0"),
        ("account.exported", "aud1", "exported", f"{tenant}/platform/p1", "r1", "17"),
    ]
    assert await seed.entries(tenant + "-other") == []

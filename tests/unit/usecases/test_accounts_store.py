"""The AccountStore contract: the in-memory store and Redis answer alike.

Each assertion runs on ``idverify.testing.memory_accounts.MemoryAccounts`` and on
``store.accounts.RedisAccounts`` over the session's real redis-server (each test under its own
tenant; in one script and step by step, as on a Cluster), so what ``test_accounts.py`` shows the
use case doing on the in-memory store it does over Redis too. The reads ``ip_labels.lua``
records are the read accounting's, tested with it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from idverify.domain.errors import StoreUnavailable
from idverify.flows.accounts import AccountRecord, AccountStore, LoginLabel, StoredLocation
from idverify.flows.read_accounting import Reader
from idverify.store.accounts import RedisAccounts
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, connect
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing.memory_accounts import BOUND_ACCOUNT, MemoryAccounts
from tests.unit.usecases.contract import audit_rows

_tenants = itertools.count()
READER = Reader("c1", "platform1", "GetIpLocations")
LABEL = LoginLabel("广东", "Guangdong", "CN", "CN-GD", "xdb", "2026-11-01", b"\x0a\x06wire")
# Every field a bound account may leave empty set as well, so a round trip shows each one kept.
RECORD = replace(BOUND_ACCOUNT, age_band="adult", birth_sealed="v1.birth", erase_due_ms=3, superseded_ms=4)
AUDIT = {"principal": "platform1", "request_id": "r1", "trace_id": "", "span": "", "account": "audit-a"}

Entry = tuple[str, str, str, str]  # source, build date, principal, account


@dataclass
class Port:
    store: AccountStore
    tenant: str
    put: Callable[[str, AccountRecord], Awaitable[None]]
    entries: Callable[[], Awaitable[list[Entry]]]


@pytest.fixture(params=["memory", "redis", "redis-step-by-step"])
async def port(request: pytest.FixtureRequest, redis: RedisClient) -> AsyncIterator[Port]:
    tenant = f"accounts{next(_tenants)}"
    if request.param == "memory":
        memory = MemoryAccounts()

        async def put_memory(account: str, record: AccountRecord) -> None:
            memory.put(tenant, account, record)

        async def memory_entries() -> list[Entry]:
            return [
                (e.source, e.source_build_date, e.fields["principal"], e.fields["account"])
                for e in memory.entries
            ]

        yield Port(memory, tenant, put_memory, memory_entries)
        return
    keys = TenantKeys(tenant)

    async def put_redis(account: str, record: AccountRecord) -> None:
        fields = {
            "identity": record.identity,
            "verified_ms": str(record.verified_ms),
            "method": record.method,
            "assurance": record.assurance,
            "kind": record.kind,
            "age_band": record.age_band,
            "birth_sealed": record.birth_sealed,
            "erase_due_ms": str(record.erase_due_ms),
            "superseded_ms": str(record.superseded_ms),
        }
        if record.age_source is not None:
            fields["age_source"] = record.age_source
        if record.location is not None:
            where = record.location
            fields |= {
                "ip_display": where.display,
                "ip_display_en": where.display_en,
                "ip_country": where.country_code,
                "ip_region": where.region_code,
                "ip_source": where.source,
                "ip_build": where.source_build_date,
                "ip_ms": str(where.recorded_ms),
            }
        await redis.hset(keys.account(account), mapping=fields)  # type: ignore[arg-type]

    async def redis_entries() -> list[Entry]:
        rows = await audit_rows(redis, tenant)
        attributes = [(r["attributes"], r) for r in rows]
        return [(a["source"], a["source_build_date"], r["principal"], r["account"]) for a, r in attributes]

    scripts = Scripts(redis)
    steps = StepRunner(scripts, step_by_step=request.param == "redis-step-by-step")
    store = RedisAccounts(redis, scripts, retention_days=1, steps=steps)
    yield Port(store, tenant, put_redis, redis_entries)


async def test_contract_accounts(port: Port) -> None:
    assert await port.store.account(port.tenant, "a") is None
    await port.put("a", RECORD)
    assert await port.store.account(port.tenant, "a") == RECORD
    legacy = replace(RECORD, age_source=None, birth_sealed="", identity="")
    await port.put("b", legacy)
    assert await port.store.account(port.tenant, "b") == legacy
    assert await port.store.account(port.tenant + "x", "a") is None


async def test_contract_a_login_label(port: Port) -> None:
    await port.put("a", RECORD)
    before = time.time_ns() // 1_000_000
    await port.store.record_login_label(port.tenant, "a", LABEL, AUDIT)
    after = time.time_ns() // 1_000_000
    record = await port.store.account(port.tenant, "a")
    assert record is not None
    assert record.location is not None
    assert before - 1000 <= record.location.recorded_ms <= after + 1000  # the store's clock
    assert replace(record, location=None) == RECORD  # the rest of the account is untouched
    assert record.location == StoredLocation(
        "广东", "Guangdong", "CN", "CN-GD", "xdb", "2026-11-01", record.location.recorded_ms
    )
    assert await port.entries() == [("xdb", "2026-11-01", "platform1", "audit-a")]
    # An account with no record yet gets one holding the label only.
    await port.store.record_login_label(port.tenant, "new", LABEL, AUDIT)
    fresh = await port.store.account(port.tenant, "new")
    assert fresh is not None
    assert (fresh.identity, fresh.verified_ms, fresh.age_source) == ("", 0, None)


async def test_contract_labels_in_a_batch(port: Port) -> None:
    where = StoredLocation("北京", "Beijing", "CN", "CN-BJ", "mmdb", "2026-01-01", 7)
    await port.put("parts", replace(RECORD, location=where))  # stored before wire forms were
    await port.put("bare", RECORD)
    await port.store.record_login_label(port.tenant, "wired", LABEL, AUDIT)
    for reader in (READER, None):
        labels = await port.store.ip_labels(port.tenant, ["wired", "parts", "bare", "absent"], reader)
        assert labels == [LABEL.wire, where, None, None]


async def test_an_unreachable_redis_is_store_unavailable(tmp_path: Path) -> None:
    client = connect(f"unix://{tmp_path}/absent.sock")
    store = RedisAccounts(client, Scripts(client), retention_days=1)
    with pytest.raises(StoreUnavailable):
        await store.account("acme", "a")
    with pytest.raises(StoreUnavailable):
        await store.record_login_label("acme", "a", LABEL, AUDIT)
    with pytest.raises(StoreUnavailable):
        await store.ip_labels("acme", ["a"], READER)

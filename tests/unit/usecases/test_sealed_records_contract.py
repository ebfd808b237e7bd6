"""The SealedRecords port's contract, on the in-memory store and on Redis alike.

``testing.memory_sealed_records.MemorySealedRecords`` (what ``test_reindex_usecase.py`` runs the
re-indexer on) and ``store.sealed_records.RedisSealedRecords`` over a real redis-server (SCAN,
HSCAN, the pipelined HMGETs, ``reseal_verification.lua``) answer every assertion here the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from idverify.flows.reindex import RecordKind, ReindexCheckpoint, SealedRecord, SealedRecords
from idverify.store.connection import RedisClient, as_text
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.sealed_records import RedisSealedRecords
from idverify.testing.memory_sealed_records import MemorySealedRecords
from tests.unit.usecases.contract import Contract, port_on_each

VF = SealedRecord(RecordKind.VERIFICATION, "acme", "v1")
ACCT = SealedRecord(RecordKind.ACCOUNT, "globex", "ps1")
IDENT = SealedRecord(RecordKind.IDENTITY, "acme", "w1:abc:def")
HOOK = SealedRecord(RecordKind.WEBHOOK, "acme", "h1")
EVENTS = SealedRecord(RecordKind.EVENT_ACCOUNTS, "acme", "acct")


class World(Protocol):
    async def put(self, record: SealedRecord, fields: Mapping[str, str]) -> None: ...

    async def fields(self, record: SealedRecord) -> dict[str, str]: ...


class MemoryWorld:
    def __init__(self, store: MemorySealedRecords) -> None:
        self._s = store

    async def put(self, record: SealedRecord, fields: Mapping[str, str]) -> None:
        self._s.put(record, fields)

    async def fields(self, record: SealedRecord) -> dict[str, str]:
        return self._s.fields(record)


def key_of(record: SealedRecord) -> str:
    """The record's key as the rest of the store names it."""
    keys = TenantKeys(record.tenant)
    return {
        RecordKind.VERIFICATION: lambda: keys.verification(record.name),
        RecordKind.ACCOUNT: lambda: keys.account(record.name),
        RecordKind.IDENTITY: lambda: keys.identity(record.name),
        RecordKind.WEBHOOK: lambda: keys.webhook(record.name),
        RecordKind.EVENT_ACCOUNTS: keys.events_accounts,
    }[record.kind]()


class RedisWorld:
    def __init__(self, redis: RedisClient) -> None:
        self._r = redis

    async def put(self, record: SealedRecord, fields: Mapping[str, str]) -> None:
        await self._r.hset(key_of(record), mapping=dict(fields))

    async def fields(self, record: SealedRecord) -> dict[str, str]:
        return {as_text(k): as_text(v) for k, v in (await self._r.hgetall(key_of(record))).items()}


Port = Contract[SealedRecords, World]


def memory_port() -> Port:
    memory = MemorySealedRecords(hash_page=3)
    return Port(memory, MemoryWorld(memory))


def redis_port(redis: RedisClient) -> Port:
    return Port(RedisSealedRecords(redis, Scripts(redis)), RedisWorld(redis))


port = port_on_each(memory_port, redis_port)


async def every(store: SealedRecords, kind: RecordKind, count: int = 500) -> list[SealedRecord]:
    found: list[SealedRecord] = []
    async for _, page in store.records(kind, count=count):
        found.extend(page)
    return found


async def test_contract_records_of_each_kind_across_tenants(port: Port) -> None:
    store, world = port.store, port.world
    for record in (VF, ACCT, IDENT, HOOK, EVENTS):
        await world.put(record, {"f": "x"})
    others = [SealedRecord(RecordKind.VERIFICATION, f"t{i}", f"v{i}") for i in range(25)]
    for record in others:
        await world.put(record, {"f": "x"})
    assert set(await every(store, RecordKind.VERIFICATION, count=4)) == {VF, *others}
    for record in (ACCT, IDENT, HOOK, EVENTS):
        assert await every(store, record.kind) == [record]


async def test_contract_fields_read_together_in_order(port: Port) -> None:
    store, world = port.store, port.world
    await world.put(VF, {"identity": "i1", "acct": "a1"})
    await world.put(ACCT, {"birth_sealed": "b1"})
    rows = await store.read_fields([VF, ACCT], ["acct", "missing", "identity"])
    assert rows == [["a1", None, "i1"], [None, None, None]]
    assert await store.read_fields([], ["acct"]) == []


async def test_contract_a_large_record_comes_in_pages(port: Port) -> None:
    store, world = port.store, port.world
    fields = {f"ps{i}": f"w1:{i}" for i in range(10)}
    await world.put(EVENTS, fields)
    seen: dict[str, str] = {}
    async for page in store.hash_pages(EVENTS):
        seen.update(page)
    assert seen == fields


async def test_contract_reseal_writes_only_what_was_read(port: Port) -> None:
    store, world = port.store, port.world
    assert not await store.reseal(VF, {"identity": ("", "x")})  # gone
    await world.put(VF, {"identity": "i1", "name_binding": "b1"})
    assert not await store.reseal(VF, {"identity": ("i1", "i2"), "name_binding": ("other", "b2")})
    assert await world.fields(VF) == {"identity": "i1", "name_binding": "b1"}
    assert await store.reseal(VF, {"identity": ("i1", "i2"), "acct_sealed": ("", "s2")})
    assert await world.fields(VF) == {"identity": "i2", "name_binding": "b1", "acct_sealed": "s2"}


async def test_contract_the_checkpoint(port: Port) -> None:
    store = port.store
    assert await store.checkpoint() is None
    await store.save_checkpoint(ReindexCheckpoint("w2", "vf", 1234))
    await store.save_checkpoint(ReindexCheckpoint("w2", "acct", 56))
    assert await store.checkpoint() == ReindexCheckpoint("w2", "acct", 56)

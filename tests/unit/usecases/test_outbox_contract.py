"""The OutboxStore port's contract, on the in-memory outbox and on Redis alike.

``testing.memory_outbox.MemoryOutbox`` (what ``test_outbox_usecase.py`` runs the Outbox on) and
``store.outbox.RedisOutbox`` over a real redis-server (the outbox stream, the audit log's
entries, the trimmed marker, ``events_trim.lua``) answer every assertion here the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from idverify.events.outbox import OutboxBounds, OutboxRecord, OutboxStore
from idverify.store.connection import RedisClient
from idverify.store.outbox import RedisOutbox
from idverify.store.scripts import Scripts
from idverify.testing.memory_outbox import MemoryOutbox
from tests.unit.usecases.contract import outbox_appender, port_on_each, sleep_ms


@dataclass(frozen=True, slots=True)
class Port:
    store: OutboxStore
    # Appends a record naming an entry (None: one gone with its log), its sealed account and span.
    append: Callable[[str, bytes | None, str, str], Awaitable[str]]
    wait: Callable[[int], Awaitable[None]]


def memory_port() -> Port:
    memory = MemoryOutbox()

    async def append(tenant: str, entry: bytes | None, sealed: str, span: str) -> str:
        return memory.append(tenant, entry, sealed, span)

    async def advance(ms: int) -> None:
        memory.advance(ms)

    return Port(memory, append, advance)


def redis_port(redis: RedisClient, *, shared: bool) -> Port:
    scripts = Scripts(redis)
    return Port(RedisOutbox(redis, scripts if shared else None), outbox_appender(redis), sleep_ms)


port = port_on_each(
    memory_port,
    lambda redis: redis_port(redis, shared=False),
    shared_connection=lambda redis: redis_port(redis, shared=True),
)


async def test_contract_an_empty_outbox(port: Port) -> None:
    store = port.store
    assert await store.last_cursor("acme") == ""
    assert await store.bounds("acme") == OutboxBounds("", None)
    assert await store.records("acme", "", 10) == []
    assert await store.trim("acme", 0) == 0


async def test_contract_records_in_order_after_a_cursor(port: Port) -> None:
    store = port.store
    cursors = [
        await port.append("acme", b"entry-%d" % n, "sealed" if n else "", "span" if n else "")
        for n in range(4)
    ]
    assert cursors == sorted(cursors, key=lambda c: tuple(int(p) for p in c.split("-")))
    assert await store.records("acme", "", 10) == [
        OutboxRecord(cursors[0], b"entry-0"),
        *(OutboxRecord(c, b"entry-%d" % n, "sealed", "span") for n, c in enumerate(cursors) if n),
    ]
    assert [r.cursor for r in await store.records("acme", cursors[1], 10)] == cursors[2:]
    assert [r.cursor for r in await store.records("acme", "", 2)] == cursors[:2]
    assert await store.records("acme", cursors[-1], 10) == []
    assert await store.last_cursor("acme") == cursors[-1]
    assert await store.bounds("acme") == OutboxBounds(cursors[0], None)
    assert await store.records("globex", "", 10) == []


async def test_contract_a_record_whose_entry_is_gone(port: Port) -> None:
    cursor = await port.append("acme", None, "", "")
    assert await port.store.records("acme", "", 10) == [OutboxRecord(cursor, None)]


async def test_contract_a_trim_drops_the_old_and_remembers_the_newest_dropped(port: Port) -> None:
    store = port.store
    old = [await port.append("acme", b"old", "", "") for _ in range(2)]
    await port.wait(20)  # the cut is by millisecond: the records must be older than now
    assert await store.trim("acme", 3_600_000) == 0
    assert await store.trim("acme", 0) == 2
    assert await store.bounds("acme") == OutboxBounds("", old[-1])
    new = await port.append("acme", b"new", "", "")
    assert await store.bounds("acme") == OutboxBounds(new, old[-1])
    assert [r.cursor for r in await store.records("acme", "", 10)] == [new]

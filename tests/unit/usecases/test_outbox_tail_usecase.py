"""The outbox's tail over an in-memory outbox: waiting streams woken by new records; no Redis.

``events.tail.OutboxTail`` reads where a tenant's outbox ends through ``Outbox`` over
``MemoryOutbox`` (``test_outbox_contract.py`` holds that and ``store.outbox.RedisOutbox``'s
``last_cursor`` to the same assertions). Each test shows one decision: a waiter wakes once a
record lies past its cursor, or when its time runs out; one poll per tenant however many wait,
and none once nobody waits; an unreachable store keeps waiters waiting, not failing.
"""

from __future__ import annotations

import asyncio

from idverify.events.outbox import Outbox
from idverify.events.tail import OutboxTail
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.testing.memory_outbox import MemoryOutbox

POLL = 0.01


class CountedOutbox(Outbox):
    """The Outbox, counting the reads of where each tenant's outbox ends."""

    def __init__(self, store: MemoryOutbox) -> None:
        super().__init__(store, Sealer(Keyring.generate()))
        self.reads = 0

    async def last_cursor(self, tenant: str) -> str:
        self.reads += 1
        return await super().last_cursor(tenant)


async def test_a_waiter_wakes_once_a_record_lies_past_its_cursor() -> None:
    store = MemoryOutbox()
    first = store.append("acme", b"e0")
    tail = OutboxTail(CountedOutbox(store), POLL)
    waiting = asyncio.create_task(tail.wait_past("acme", first, 5.0))
    await asyncio.sleep(5 * POLL)
    assert not waiting.done()  # nothing past its cursor yet
    store.advance(1)
    store.append("acme", b"e1")
    async with asyncio.timeout(1.0):
        assert await waiting
    await tail.aclose()


async def test_a_waiter_behind_the_newest_record_returns_at_once() -> None:
    store = MemoryOutbox()
    first = store.append("acme", b"e0")
    store.append("acme", b"e1")
    tail = OutboxTail(CountedOutbox(store), POLL)
    async with asyncio.timeout(1.0):
        assert await tail.wait_past("acme", first, 5.0)
        assert await tail.wait_past("acme", "", 5.0)
    await tail.aclose()


async def test_a_waiter_whose_time_runs_out_returns_false() -> None:
    store = MemoryOutbox()
    cursor = store.append("acme", b"e0")
    tail = OutboxTail(CountedOutbox(store), POLL)
    assert not await tail.wait_past("acme", cursor, 5 * POLL)
    await tail.aclose()


async def test_one_poll_per_tenant_however_many_wait_and_none_once_nobody_does() -> None:
    store = MemoryOutbox()
    cursor = store.append("acme", b"e0")
    outbox = CountedOutbox(store)
    tail = OutboxTail(outbox, POLL)
    waits = [tail.wait_past("acme", cursor, 20 * POLL) for _ in range(20)]
    assert not any(await asyncio.gather(*waits))
    assert 0 < outbox.reads <= 25  # about one per interval, not one per waiter
    await asyncio.sleep(3 * POLL)  # the poller sees nobody waits and ends
    reads = outbox.reads
    await asyncio.sleep(10 * POLL)
    assert outbox.reads == reads
    await tail.aclose()


async def test_an_unreachable_store_keeps_waiters_waiting_until_it_answers() -> None:
    store = MemoryOutbox()
    cursor = store.append("acme", b"e0")
    tail = OutboxTail(CountedOutbox(store), POLL)
    store.down = True
    waiting = asyncio.create_task(tail.wait_past("acme", cursor, 5.0))
    await asyncio.sleep(5 * POLL)
    assert not waiting.done()
    store.down = False
    store.advance(1)
    store.append("acme", b"e1")
    async with asyncio.timeout(1.0):
        assert await waiting
    await tail.aclose()


async def test_closing_stops_every_poller() -> None:
    store = MemoryOutbox()
    cursor = store.append("acme", b"e0")
    outbox = CountedOutbox(store)
    tail = OutboxTail(outbox, POLL)
    waiters = [asyncio.create_task(tail.wait_past(tenant, cursor, 5.0)) for tenant in ("acme", "beta")]
    await asyncio.sleep(3 * POLL)
    await tail.aclose()
    reads = outbox.reads
    await asyncio.sleep(5 * POLL)
    assert outbox.reads == reads
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)

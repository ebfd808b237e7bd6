"""The DeliveryStore port's contract, on the in-memory store and on Redis alike.

``testing.memory_webhook_deliveries.MemoryDeliveryStore`` (what ``test_webhook_delivery_usecase.py``
delivers on) and ``store.webhook_deliveries.RedisDeliveryStore`` over a real redis-server
(``webhook_delivery.lua``: the lease key, the subscription's hash, the outbox stream and the audit
log's entries) answer every assertion here the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from idverify.events.outbox import OutboxRecord
from idverify.store.connection import RedisClient
from idverify.store.scripts import Scripts
from idverify.store.webhook_deliveries import RedisDeliveryStore
from idverify.store.webhook_subscriptions import RedisSubscriptionStore
from idverify.testing.memory_outbox import MemoryOutbox
from idverify.testing.memory_webhook_deliveries import MemoryDeliveryStore
from idverify.testing.memory_webhook_subscriptions import MemorySubscriptionStore
from idverify.webhooks.delivery_port import DeliveryStore, Lease
from idverify.webhooks.subscriptions import NewSubscription, Subscription, SubscriptionStore
from tests.unit.usecases.contract import outbox_appender, sleep_ms

REQUEST = {"principal": "admin01", "request_id": "r1", "trace_id": ""}
W1 = "0123456789abcdef"
MINE, THEIRS = Lease("acme", W1, "t-mine"), Lease("acme", W1, "t-theirs")


@dataclass(frozen=True, slots=True)
class Port:
    store: DeliveryStore
    subscriptions: SubscriptionStore
    # Appends an outbox record naming an entry (None: one gone with its log), its sealed account and span.
    append: Callable[[str, bytes | None, str, str], Awaitable[str]]
    elapse: Callable[[int], Awaitable[None]]


def memory_port() -> Port:
    subscriptions, outbox = MemorySubscriptionStore(), MemoryOutbox()
    store = MemoryDeliveryStore(subscriptions, outbox)

    async def append(tenant: str, entry: bytes | None, sealed: str, span: str) -> str:
        return outbox.append(tenant, entry, sealed, span)

    async def elapse(ms: int) -> None:
        store.elapse(ms)

    return Port(store, subscriptions, append, elapse)


def redis_port(redis: RedisClient) -> Port:
    # Numbered past the subscriptions' own audit entries.
    append = outbox_appender(redis, after=1000)
    scripts = Scripts(redis)
    return Port(RedisDeliveryStore(scripts), RedisSubscriptionStore(redis, scripts), append, sleep_ms)


@pytest.fixture(params=["memory", "redis"])
def port(request: pytest.FixtureRequest, own_client: RedisClient) -> Port:
    return memory_port() if request.param == "memory" else redis_port(own_client)


async def subscribed(port: Port) -> Subscription:
    new = NewSubscription(W1, "https://hooks.example.com/in", frozenset(), "w1:sealed", 5000, "", 1)
    await port.subscriptions.create("acme", new, REQUEST)
    return await read(port)


async def read(port: Port) -> Subscription:
    found = await port.subscriptions.read("acme", W1)
    assert found is not None
    return found


async def test_contract_no_lease_on_a_subscription_that_is_not_there(port: Port) -> None:
    store = port.store
    assert not await store.take(MINE, 5000)
    assert not await store.renew(MINE, 5000)
    await store.give(MINE)
    assert not await store.advance(MINE, "1", "1-0")
    assert await store.failed(MINE, "1", "timeout") is None
    assert await store.next_batch(MINE, "1", "", "", 10) is None


async def test_contract_one_token_holds_the_lease_until_it_gives_it(port: Port) -> None:
    store = port.store
    await subscribed(port)
    assert await store.take(MINE, 5000)
    assert await store.take(MINE, 5000)  # taking it again renews it
    assert not await store.take(THEIRS, 5000)
    assert not await store.renew(THEIRS, 5000)
    await store.give(THEIRS)  # not theirs to give
    assert not await store.take(THEIRS, 5000)
    assert await store.renew(MINE, 5000)
    await store.give(MINE)
    assert not await store.renew(MINE, 5000)
    assert await store.take(THEIRS, 5000)


async def test_contract_a_lease_not_renewed_ends_by_itself(port: Port) -> None:
    store = port.store
    await subscribed(port)
    assert await store.take(MINE, 60)
    await port.elapse(150)
    assert not await store.renew(MINE, 5000)
    assert await store.take(THEIRS, 5000)


async def test_contract_a_disabled_or_failing_subscription_is_not_taken(port: Port) -> None:
    store = port.store
    subscription = await subscribed(port)
    assert await port.subscriptions.mark_failing(subscription, "timeout", 5, REQUEST)
    assert not await store.take(MINE, 5000)
    assert await port.subscriptions.update("acme", W1, "enable", "", REQUEST)
    assert await store.take(MINE, 5000)
    await store.give(MINE)
    assert await port.subscriptions.update("acme", W1, "disable", "", REQUEST)
    assert not await store.take(MINE, 5000)


async def test_contract_the_cursor_moves_only_under_the_lease_and_generation(port: Port) -> None:
    store = port.store
    generation = (await subscribed(port)).generation
    assert await store.take(MINE, 5000)
    assert not await store.advance(THEIRS, generation, "5-0")
    assert not await store.advance(MINE, "99", "5-0")
    assert (await read(port)).cursor == ""
    assert await store.advance(MINE, generation, "5-0")
    assert (await read(port)).cursor == "5-0"
    assert await port.subscriptions.replay("acme", W1, "2-0", REQUEST)  # moves the generation on
    assert not await store.advance(MINE, generation, "6-0")
    assert (await read(port)).cursor == "2-0"


async def test_contract_a_failure_is_kept_from_the_first_until_the_cursor_moves(port: Port) -> None:
    store = port.store
    generation = (await subscribed(port)).generation
    assert await store.take(MINE, 5000)
    assert await store.failed(THEIRS, generation, "timeout") is None
    assert await store.failed(MINE, "99", "timeout") is None
    first = await store.failed(MINE, generation, "timeout")
    assert first is not None
    assert first.first_failure_ms == first.now_ms > 0
    await port.elapse(5)
    again = await store.failed(MINE, generation, "http_503")
    assert again is not None
    assert again.first_failure_ms == first.first_failure_ms
    assert again.now_ms >= first.now_ms
    held = await read(port)
    assert (held.first_failure_ms, held.last_error) == (first.first_failure_ms, "http_503")
    assert held.state == "active"  # recording failures does not mark it failing
    assert await store.advance(MINE, generation, "5-0")
    held = await read(port)
    assert (held.first_failure_ms, held.last_error) == (0, "")
    third = await store.failed(MINE, generation, "timeout")
    assert third is not None
    assert third.first_failure_ms == third.now_ms >= again.now_ms


async def test_contract_a_batch_stores_the_last_progress_and_reads_the_next_records(port: Port) -> None:
    store = port.store
    generation = (await subscribed(port)).generation
    assert await store.take(MINE, 5000)
    cursors = [
        await port.append("acme", b"entry-0", "", ""),
        await port.append("acme", b"entry-1", "sealed-1", "span-1"),
        await port.append("acme", None, "", ""),
    ]
    first = await store.next_batch(MINE, generation, "", "", 2)
    assert first == [
        OutboxRecord(cursors[0], b"entry-0"),
        OutboxRecord(cursors[1], b"entry-1", "sealed-1", "span-1"),
    ]
    assert (await read(port)).cursor == ""  # nothing acknowledged yet
    second = await store.next_batch(MINE, generation, cursors[1], cursors[1], 2)
    assert second == [OutboxRecord(cursors[2], None)]  # its entry gone with its log
    assert (await read(port)).cursor == cursors[1]
    assert await store.next_batch(MINE, generation, cursors[2], cursors[2], 2) == []
    assert (await read(port)).cursor == cursors[2]


async def test_contract_a_stale_batch_stores_nothing(port: Port) -> None:
    store = port.store
    generation = (await subscribed(port)).generation
    assert await store.take(MINE, 5000)
    cursor = await port.append("acme", b"entry-0", "", "")
    assert await store.next_batch(THEIRS, generation, cursor, "", 10) is None
    assert await store.next_batch(MINE, "99", cursor, "", 10) is None
    assert (await read(port)).cursor == ""

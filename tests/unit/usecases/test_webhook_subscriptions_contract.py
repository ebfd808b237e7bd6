"""The SubscriptionStore port's contract, on the in-memory store and on Redis alike.

``testing.memory_webhook_subscriptions.MemorySubscriptionStore`` (what
``test_webhook_subscriptions_usecase.py`` runs the subscriptions on) and
``store.webhook_subscriptions.RedisSubscriptionStore`` over a real redis-server
(``webhook_manage.lua``, the tenant's set of ids and each subscription's hash) answer every
assertion here the same way.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from idverify.store.connection import RedisClient
from idverify.store.scripts import Scripts
from idverify.store.webhook_subscriptions import RedisSubscriptionStore
from idverify.testing.memory_webhook_subscriptions import MemorySubscriptionStore
from idverify.webhooks.subscriptions import NewSubscription, Subscription, SubscriptionStore
from tests.unit.usecases.contract import AuditTrail, Contract, MemoryAuditTrail, RedisAuditTrail, port_on_each

REQUEST = {"principal": "admin01", "request_id": "r1", "trace_id": ""}
W1, W2 = "0123456789abcdef", "fedcba9876543210"
GHOST = Subscription(
    "0000000000000000",
    "acme",
    "https://x.example",
    frozenset(),
    "",
    enabled=True,
    cursor="",
    created_ms=1,
    generation="1",
    timeout_ms=1000,
)

Port = Contract[SubscriptionStore, AuditTrail]


def memory_port() -> Port:
    memory = MemorySubscriptionStore()
    return Port(memory, MemoryAuditTrail(memory.audit))


def redis_port(redis: RedisClient) -> Port:
    return Port(RedisSubscriptionStore(redis, Scripts(redis)), RedisAuditTrail(redis, webhook_outcome))


def webhook_outcome(entry: dict[str, Any]) -> tuple[str, ...]:
    """A webhook entry as the in-memory store keeps it: type, outcome, webhook id."""
    return entry["type"], entry["outcome"], entry["attributes"]["webhook_id"]


port = port_on_each(memory_port, redis_port)


def new(
    webhook_id: str = W1, types: frozenset[str] = frozenset({"verification.finished", "account.bound"})
) -> NewSubscription:
    return NewSubscription(webhook_id, "https://hooks.example.com/in", types, "w1:sealed", 5000, "17-0", 4)


async def created(store: SubscriptionStore, webhook_id: str = W1) -> Subscription:
    await store.create("acme", new(webhook_id), REQUEST)
    found = await store.read("acme", webhook_id)
    assert found is not None
    return found


async def test_contract_nothing_stored(port: Port) -> None:
    store = port.store
    assert await store.count("acme") == 0
    assert await store.read("acme", W1) is None
    assert await store.read_all("acme") == []
    assert not await store.update("acme", W1, "disable", "", REQUEST)
    assert not await store.delete("acme", W1, REQUEST)
    assert not await store.replay("acme", W1, "1-0", REQUEST)
    ghost = replace(GHOST, webhook_id=W1)
    assert not await store.mark_failing(ghost, "TIMEOUT", 5, REQUEST)
    assert await port.world.audited("acme") == []


async def test_contract_a_created_subscription_reads_back(port: Port) -> None:
    store, world = port.store, port.world
    found = await created(store)
    assert found.created_ms > 0
    assert found == Subscription(
        webhook_id=W1,
        tenant="acme",
        url="https://hooks.example.com/in",
        types=frozenset({"verification.finished", "account.bound"}),
        sealed_secret="w1:sealed",  # noqa: S106 - a stand-in for a sealed value
        enabled=True,
        cursor="17-0",
        created_ms=found.created_ms,
        generation="1",
        timeout_ms=5000,
        concurrency=4,
    )
    assert found.state == "active"
    await store.create("acme", new(W2, types=frozenset()), REQUEST)
    every = await store.read("acme", W2)
    assert every is not None
    assert every.types == frozenset()
    assert await store.count("acme") == 2
    assert sorted(s.webhook_id for s in await store.read_all("acme")) == [W1, W2]
    assert await store.read_all("globex") == []
    assert await store.read("globex", W1) is None
    assert await world.audited("acme") == [
        ("webhook.created", "created", W1),
        ("webhook.created", "created", W2),
    ]


async def test_contract_updates_move_the_generation_on(port: Port) -> None:
    store, world = port.store, port.world
    await created(store)
    assert await store.update("acme", W1, "disable", "", REQUEST)
    disabled = await store.read("acme", W1)
    assert disabled is not None
    assert (disabled.enabled, disabled.generation, disabled.state) == (False, "2", "disabled")
    assert await store.update("acme", W1, "rotate_secret", "w1:other", REQUEST)
    rotated = await store.read("acme", W1)
    assert rotated is not None
    assert (rotated.sealed_secret, rotated.enabled, rotated.generation) == ("w1:other", False, "3")
    assert await store.update("acme", W1, "enable", "", REQUEST)
    enabled = await store.read("acme", W1)
    assert enabled is not None
    assert (enabled.enabled, enabled.generation) == (True, "4")
    assert [outcome for _, outcome, _ in await world.audited("acme")] == [
        "created",
        "disable",
        "rotate_secret",
        "enable",
    ]


async def test_contract_failing_is_marked_once_under_the_generation_read(port: Port) -> None:
    store, world = port.store, port.world
    read = await created(store)
    assert await store.mark_failing(read, "HTTP_500", 1_000, REQUEST)
    failing = await store.read("acme", W1)
    assert failing is not None
    assert (failing.failing_ms, failing.last_error, failing.state, failing.generation) == (
        1_000,
        "HTTP_500",
        "failing",
        "1",
    )
    assert not await store.mark_failing(read, "HTTP_500", 2_000, REQUEST)  # failing already
    assert await store.replay("acme", W1, "9-0", REQUEST)
    replayed = await store.read("acme", W1)
    assert replayed is not None
    assert (replayed.cursor, replayed.failing_ms, replayed.last_error, replayed.generation) == (
        "9-0",
        0,
        "",
        "2",
    )
    assert not await store.mark_failing(read, "HTTP_500", 3_000, REQUEST)  # read before the replay
    assert await store.mark_failing(replayed, "TIMEOUT", 3_000, REQUEST)
    assert await store.update("acme", W1, "enable", "", REQUEST)
    healthy = await store.read("acme", W1)
    assert healthy is not None
    assert (healthy.failing_ms, healthy.last_error, healthy.state) == (0, "", "active")
    assert [kind for kind, _, _ in await world.audited("acme")] == [
        "webhook.created",
        "webhook.failing",
        "webhook.replayed",
        "webhook.failing",
        "webhook.updated",
    ]


async def test_contract_a_deleted_subscription_is_gone(port: Port) -> None:
    store, world = port.store, port.world
    read = await created(store)
    assert await store.delete("acme", W1, REQUEST)
    assert await store.read("acme", W1) is None
    assert await store.count("acme") == 0
    assert await store.read_all("acme") == []
    assert not await store.delete("acme", W1, REQUEST)
    assert not await store.mark_failing(replace(read, generation="2"), "TIMEOUT", 1, REQUEST)
    assert (await world.audited("acme"))[-1] == ("webhook.deleted", "deleted", W1)

"""Webhook delivery over in-memory stores and a local HTTP receiver: no Redis.

The dispatcher runs on ``MemoryDeliveryStore`` (leases, cursor, failures, batches), in-memory
subscriptions and outbox; each test shows one decision of ``webhooks.delivery``: events posted in
order, signed, the cursor moved past what the receiver acknowledged; a failed event retried (the
same one, the order kept) until a 2xx; a subscription failing for ``retry_hours`` marked failing;
a lease another worker holds left alone; and the lease given back at shutdown.
``test_webhook_deliveries_contract.py`` holds the in-memory store to what Redis does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from idverify.config import WebhookSettings
from idverify.events.outbox import Outbox
from idverify.events.tail import OutboxTail
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.testing.memory_outbox import MemoryOutbox
from idverify.testing.memory_webhook_deliveries import MemoryDeliveryStore
from idverify.testing.memory_webhook_subscriptions import MemorySubscriptionStore
from idverify.webhooks.delivery import WebhookDispatcher
from idverify.webhooks.delivery_port import Lease
from idverify.webhooks.subscriptions import Subscription, Subscriptions
from tests.unit.webhooks.test_http_client import Receiver

SEALER = Sealer(Keyring.generate())
REQUEST = {"principal": "acme/admin/a1", "request_id": "", "trace_id": ""}
FAST = WebhookSettings(
    allow_private_destinations=True,
    scan_seconds=0.02,
    lease_seconds=0.6,
    retry_initial_seconds=0.02,
    retry_max_seconds=0.04,
)


def entry(seq: int, kind: str = "account.bound") -> bytes:
    """An audit entry as stored (``audit.events.parse_entry`` reads it)."""
    fields = {
        "v": 1,
        "seq": seq,
        "time_ms": 1_000 + seq,
        "type": kind,
        "verification_id": f"v{seq}",
        "account": "",
        "method": "sms",
        "outcome": "ok",
        "reason": "",
        "steps": [],
        "principal": "acme/registrar/r1",
        "request_id": "",
        "trace_id": "",
        "attributes": {},
    }
    return json.dumps(fields).encode()


@dataclass
class World:
    subscriptions_store: MemorySubscriptionStore
    outbox_store: MemoryOutbox
    deliveries: MemoryDeliveryStore
    subscriptions: Subscriptions
    dispatcher: WebhookDispatcher

    async def subscription(self, webhook_id: str) -> Subscription:
        return await self.subscriptions.get("acme", webhook_id)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    world = make_world(FAST)
    yield world
    await world.dispatcher.aclose()


def make_world(settings: WebhookSettings) -> World:
    subscriptions_store, outbox_store = MemorySubscriptionStore(), MemoryOutbox()
    deliveries = MemoryDeliveryStore(subscriptions_store, outbox_store)
    outbox = Outbox(outbox_store, SEALER)
    subscriptions = Subscriptions(subscriptions_store, SEALER, outbox, settings, development=True)

    async def tenants() -> list[str]:
        return ["acme"]

    dispatcher = WebhookDispatcher(
        subscriptions,
        outbox,
        OutboxTail(outbox, 0.01),
        deliveries,
        tenants,
        settings=settings,
        development=True,
    )
    return World(subscriptions_store, outbox_store, deliveries, subscriptions, dispatcher)


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


def answers(*statuses: int) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A receiver's handler answering these statuses in turn, then 204."""
    left = list(statuses)

    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(status=left.pop(0) if left else 204)

    return handler


async def subscribe(world: World, receiver: Receiver) -> tuple[Subscription, str]:
    url = f"http://127.0.0.1:{receiver.port}/in"
    return await world.subscriptions.create("acme", url, [], 5, dict(REQUEST), from_oldest=True)


def delivered(receiver: Receiver) -> list[tuple[str, dict[str, Any]]]:
    return [(request.headers["webhook-id"], json.loads(body)) for request, body, _ in receiver.requests]


async def test_events_are_posted_in_order_signed_and_the_cursor_moves_past_them(world: World) -> None:
    cursors = [world.outbox_store.append("acme", entry(n)) for n in range(3)]
    async with Receiver() as receiver:
        subscription, secret = await subscribe(world, receiver)
        running = asyncio.create_task(world.dispatcher.run())
        try:
            await until(lambda: _cursor_is(world, subscription.webhook_id, cursors[-1]))
        finally:
            running.cancel()
    ids = [message_id for message_id, _ in delivered(receiver)]
    assert ids == [f"{subscription.webhook_id}_{cursor}" for cursor in cursors]
    assert [body["data"]["auditIndex"] for _, body in delivered(receiver)] == ["0", "1", "2"]
    for request, body, _ in receiver.requests:
        Webhook(secret).verify(body, dict(request.headers))  # raises unless signed with its secret


async def test_a_failed_event_is_posted_again_until_a_2xx_and_the_order_is_kept(world: World) -> None:
    cursors = [world.outbox_store.append("acme", entry(n)) for n in range(2)]
    async with Receiver(answers(503, 500)) as receiver:
        subscription, _ = await subscribe(world, receiver)
        running = asyncio.create_task(world.dispatcher.run())
        try:
            await until(lambda: _cursor_is(world, subscription.webhook_id, cursors[-1]))
        finally:
            running.cancel()
    ids = [message_id.rsplit("_", 1)[1] for message_id, _ in delivered(receiver)]
    assert ids == [cursors[0], cursors[0], cursors[0], cursors[1]]
    held = await world.subscription(subscription.webhook_id)
    assert (held.state, held.first_failure_ms, held.last_error) == ("active", 0, "")


async def test_a_subscription_failing_for_retry_hours_is_marked_failing_and_left() -> None:
    world = make_world(replace(FAST, retry_hours=0.0))
    world.outbox_store.append("acme", entry(0))
    async with Receiver(answers(*[500] * 50)) as receiver:
        subscription, _ = await subscribe(world, receiver)
        running = asyncio.create_task(world.dispatcher.run())
        try:

            async def failing() -> bool:
                return (await world.subscription(subscription.webhook_id)).state == "failing"

            await until(failing)
            await asyncio.sleep(0.1)  # a few scans: none takes it again
        finally:
            running.cancel()
            await world.dispatcher.aclose()
    assert len(receiver.requests) == 1
    held = await world.subscription(subscription.webhook_id)
    assert (held.last_error, held.cursor) == ("http_500", "")
    assert ("acme", "webhook.failing", "failing", subscription.webhook_id) in world.subscriptions_store.audit


async def test_a_subscription_another_worker_holds_is_left_until_its_lease_is_given(world: World) -> None:
    cursor = world.outbox_store.append("acme", entry(0))
    async with Receiver() as receiver:
        subscription, _ = await subscribe(world, receiver)
        other = Lease("acme", subscription.webhook_id, "another-worker")
        assert await world.deliveries.take(other, 60_000)
        running = asyncio.create_task(world.dispatcher.run())
        try:
            await asyncio.sleep(0.1)
            assert receiver.requests == []
            await world.deliveries.give(other)
            await until(lambda: _cursor_is(world, subscription.webhook_id, cursor))
        finally:
            running.cancel()
    assert len(receiver.requests) == 1


async def test_closing_the_dispatcher_gives_its_leases_back(world: World) -> None:
    async with Receiver() as receiver:
        subscription, _ = await subscribe(world, receiver)
        running = asyncio.create_task(world.dispatcher.run())
        other = Lease("acme", subscription.webhook_id, "another-worker")
        try:
            await asyncio.sleep(0.1)  # taken, waiting for events
            assert not await world.deliveries.take(other, 60_000)
        finally:
            running.cancel()
            await world.dispatcher.aclose()
    assert await world.deliveries.take(other, 60_000)


async def _cursor_is(world: World, webhook_id: str, cursor: str) -> bool:
    return (await world.subscription(webhook_id)).cursor == cursor

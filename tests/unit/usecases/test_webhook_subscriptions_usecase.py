"""Subscriptions over an in-memory SubscriptionStore: checks, secrets, replays; no Redis or gRPC.

Each test shows one decision of ``webhooks.subscriptions``: the checks a creation makes and the
cap per tenant, where a new subscription's cursor starts, a secret shown once and kept sealed,
the actions an update takes, and where a replay moves the cursor. ``tests/e2e/test_webhooks.py``
runs it over Redis and through the server.
"""

from __future__ import annotations

import pytest

from idverify.config import WebhookSettings
from idverify.domain.errors import InvalidArgument, NotFound, OutOfRange
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.testing.memory_webhook_subscriptions import MemorySubscriptionStore
from idverify.webhooks.subscriptions import MAX_SUBSCRIPTIONS, Subscriptions

REQUEST = {"principal": "admin01", "request_id": "r1", "trace_id": ""}
URL = "https://8.8.8.8/hooks"  # an address literal: nothing to resolve
KEYRING = Keyring.generate()


class Cursors:
    """The outbox's cursors as a subscription sees them: the newest event, and how far back it keeps.

    One tenant's: the tenant named is not looked at.
    """

    def __init__(self, last: str = "42-0", oldest_kept: int = 0) -> None:
        self.last = last
        self.oldest_kept = oldest_kept

    async def last_cursor(self, tenant: str) -> str:
        del tenant
        return self.last

    async def check_kept(self, tenant: str, after: str) -> None:
        del tenant
        if int(after.split("-", maxsplit=1)[0]) < self.oldest_kept:
            raise OutOfRange("the outbox no longer keeps those events", field="after")


def subscriptions(store: MemorySubscriptionStore, cursors: Cursors | None = None) -> Subscriptions:
    return Subscriptions(
        store, Sealer(KEYRING), cursors or Cursors(), WebhookSettings(timeout_seconds=7), development=False
    )


async def test_a_subscription_starts_at_the_newest_event_with_its_secret_sealed() -> None:
    store = MemorySubscriptionStore()
    hooks = subscriptions(store)
    made, secret = await hooks.create("acme", URL, ["verification.verified"], 0, REQUEST)
    assert (made.cursor, made.timeout_ms, made.concurrency, made.state) == ("42-0", 7000, 1, "active")
    assert made.types == frozenset({"verification.verified"})
    assert secret not in made.sealed_secret
    assert hooks.secret_of(made) == secret
    oldest, _ = await hooks.create("acme", URL, [], 30, REQUEST, from_oldest=True, concurrency=16)
    assert (oldest.cursor, oldest.timeout_ms, oldest.concurrency, oldest.types) == (
        "",
        30_000,
        16,
        frozenset(),
    )


@pytest.mark.parametrize(
    ("url", "types", "timeout_seconds", "concurrency", "reason", "field"),
    [
        ("http://8.8.8.8/hooks", [], 0, 0, "PLAIN_HTTP", "url"),
        ("https://10.0.0.1/hooks", [], 0, 0, "PRIVATE_DESTINATION", "url"),
        (URL, ["verification.verified", "nope"], 0, 0, "UNKNOWN_EVENT_TYPE", "event_types[1]"),
        (URL, [], 31, 0, "BAD_TIMEOUT", "timeout_seconds"),
        (URL, [], 0, 17, "BAD_CONCURRENCY", "concurrency"),
    ],
)
async def test_a_creation_is_checked_before_anything_is_stored(
    url: str, types: list[str], timeout_seconds: int, concurrency: int, reason: str, field: str
) -> None:
    store = MemorySubscriptionStore()
    with pytest.raises(InvalidArgument) as refused:
        await subscriptions(store).create(
            "acme", url, types, timeout_seconds, REQUEST, concurrency=concurrency
        )
    assert (refused.value.reason, refused.value.field) == (reason, field)
    assert store.audit == []


async def test_a_tenant_holds_at_most_16_subscriptions() -> None:
    store = MemorySubscriptionStore()
    hooks = subscriptions(store)
    for _ in range(MAX_SUBSCRIPTIONS):
        await hooks.create("acme", URL, [], 0, REQUEST)
    with pytest.raises(InvalidArgument) as refused:
        await hooks.create("acme", URL, [], 0, REQUEST)
    assert refused.value.reason == "TOO_MANY"
    await hooks.create("globex", URL, [], 0, REQUEST)


async def test_the_list_is_oldest_first() -> None:
    store = MemorySubscriptionStore()
    hooks = subscriptions(store)
    made = []
    for step in range(3):
        store.now = 1_000 - step  # each made earlier than the one before
        made.append((await hooks.create("acme", URL, [], 0, REQUEST))[0].webhook_id)
    assert [s.webhook_id for s in await hooks.list("acme")] == made[::-1]


async def test_a_rotated_secret_is_shown_once_and_replaces_the_old() -> None:
    store = MemorySubscriptionStore()
    hooks = subscriptions(store)
    made, first = await hooks.create("acme", URL, [], 0, REQUEST)
    rotated, second = await hooks.update("acme", made.webhook_id, "rotate_secret", REQUEST)
    assert second not in {"", first}
    assert hooks.secret_of(rotated) == second
    disabled, none = await hooks.update("acme", made.webhook_id, "disable", REQUEST)
    assert (disabled.state, none) == ("disabled", "")
    with pytest.raises(InvalidArgument) as unknown:
        await hooks.update("acme", made.webhook_id, "pause", REQUEST)
    assert unknown.value.reason == "UNKNOWN_ACTION"
    with pytest.raises(InvalidArgument) as bad_id:
        await hooks.update("acme", "not-an-id", "disable", REQUEST)
    assert bad_id.value.reason == "BAD_ID"
    with pytest.raises(NotFound):
        await hooks.update("acme", "0" * 16, "disable", REQUEST)
    await hooks.delete("acme", made.webhook_id, REQUEST)
    with pytest.raises(NotFound):
        await hooks.get("acme", made.webhook_id)
    with pytest.raises(NotFound):
        await hooks.delete("acme", made.webhook_id, REQUEST)


async def test_a_replay_moves_the_cursor_to_a_kept_event() -> None:
    store = MemorySubscriptionStore()
    cursors = Cursors(oldest_kept=1_000)
    hooks = subscriptions(store, cursors)
    made, _ = await hooks.create("acme", URL, [], 0, REQUEST)
    replayed = await hooks.replay("acme", made.webhook_id, "", 5_000, REQUEST)
    # Every event of 5000 ms or later: after the last possible one of 4999 ms.
    assert replayed.cursor == "4999-18446744073709551615"
    assert (await hooks.replay("acme", made.webhook_id, "2000-3", 0, REQUEST)).cursor == "2000-3"
    with pytest.raises(OutOfRange):
        await hooks.replay("acme", made.webhook_id, "999-0", 0, REQUEST)
    for after, since in (("", 0), ("2000-3", 5_000)):
        with pytest.raises(InvalidArgument) as refused:
            await hooks.replay("acme", made.webhook_id, after, since, REQUEST)
        assert refused.value.reason == "MISSING"
    with pytest.raises(NotFound):
        await hooks.replay("acme", "0" * 16, "2000-3", 0, REQUEST)


async def test_a_failing_mark_is_the_services_own_and_made_once() -> None:
    store = MemorySubscriptionStore()
    hooks = subscriptions(store)
    made, _ = await hooks.create("acme", URL, [], 0, REQUEST)
    assert await hooks.fail(made, "HTTP_503", 1_234)
    assert not await hooks.fail(made, "HTTP_503", 2_000)
    failing = await hooks.get("acme", made.webhook_id)
    assert (failing.state, failing.failing_ms, failing.last_error) == ("failing", 1_234, "HTTP_503")
    assert store.audit[-1] == ("acme", "webhook.failing", "failing", made.webhook_id)

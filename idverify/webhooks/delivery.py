"""Delivering each subscription's events, in order, at least once, from any worker of any replica.

A worker takes a subscription's lease (``delivery_port.DeliveryStore``) and, while it holds it,
reads the tenant's outbox after the subscription's cursor, posts each event of its types to the URL,
and moves the cursor past an event only once the receiver answered it with a 2xx. A failure is
retried with exponential backoff and jitter, the same event again, so the order is strict per
subscription (hence per account); after ``webhooks.retry_hours`` without a 2xx the subscription
is marked failing (audited) and waits, its events kept for a replay. A worker that dies stops
renewing its lease; another takes the subscription over from the cursor once it ends, so an
event acknowledged is never sent again by the next worker, and one not acknowledged is.

Every delivery runs in this worker's background tasks, never on a caller's request: a slow or
hanging receiver holds only its own subscription's task (and one of the worker's
``max_concurrent_deliveries`` slots, for at most its timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Final, Self

from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from idverify.config import WebhookSettings
from idverify.domain.errors import NotFound, StoreUnavailable
from idverify.events.outbox import Event, Outbox
from idverify.events.tail import OutboxTail
from idverify.observability import telemetry
from idverify.observability.telemetry import Instruments, instruments
from idverify.privacy.sealing import SealError
from idverify.webhooks.delivery_port import DeliveryStore, Lease
from idverify.webhooks.destinations import DestinationRefused, resolve
from idverify.webhooks.http_client import Poster, PostError
from idverify.webhooks.signing import Signer
from idverify.webhooks.subscriptions import Subscription, Subscriptions

__all__ = ["WebhookDispatcher", "payload"]

log = logging.getLogger("idverify.webhooks")
BATCH: Final = 200
_SUCCESS = range(200, 300)


def payload(event: Event) -> bytes:
    """The JSON body of an event's delivery: Standard Webhooks' ``type``/``timestamp``/``data``.

    ``data`` has the fields of the proto ``Event`` (their JSON names); no personal data.
    """
    time_text = datetime.fromtimestamp(event.time_ms / 1000, UTC).isoformat(timespec="milliseconds")
    data = {
        "cursor": event.cursor,
        "type": event.type,
        "time": time_text.replace("+00:00", "Z"),
        "auditIndex": str(event.audit_index),
        "verificationId": event.verification_id,
        "accountId": event.account_id,
        "methodId": event.method,
        "outcome": event.outcome,
        "reasonCode": event.reason,
        "attributes": dict(event.attributes),
    }
    body = {"type": event.type, "timestamp": data["time"], "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def message_id(subscription: Subscription, event: Event) -> str:
    """``webhook-id``: the same for every attempt of one event to one subscription."""
    return f"{subscription.webhook_id}_{event.cursor}"


def _change_link(event: Event) -> list[trace.Link]:
    """A link to the span of the change the event reflects (kept in its outbox record).

    A record written before records kept it names the trace only (its entry's trace id): the
    link then names that trace with a span id of our own.
    """
    trace_text, _, rest = event.span_context.partition("-")
    span_text, _, flags_text = rest.partition("-")
    try:
        if trace_text:
            trace_id, span_id, flags = int(trace_text, 16), int(span_text, 16), int(flags_text, 16)
        else:
            # Not a secret (the SDK's ids come from random too); SystemRandom cost a syscall each.
            trace_id, span_id, flags = int(event.trace_id or "0", 16), random.getrandbits(63) + 1, 1
    except ValueError:
        return []
    if not trace_id or not span_id or trace_id >> 128 or span_id >> 64 or flags >> 8:
        return []
    return [trace.Link(SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags)))]


class _Pending:
    """The pending-events metric of one batch: up by what was read, down as each is acknowledged."""

    def __init__(self, subscription: Subscription, count: int) -> None:
        self._attributes = telemetry.cached_safe_attributes(
            {"idverify.tenant": subscription.tenant, "idverify.webhook_id": subscription.webhook_id}
        )
        self._left = count

    def __enter__(self) -> Self:
        instruments.webhook_pending.add(self._left, self._attributes)
        return self

    def done(self) -> None:
        self._left -= 1
        instruments.webhook_pending.add(-1, self._attributes)

    def __exit__(self, *_: object) -> None:
        instruments.webhook_pending.add(-self._left, self._attributes)


class _Stale(Exception):
    """A lane's subscription changed or failed: the batch's other lanes stop too."""


class _Progress:
    """Which events of a batch delivered side by side are acknowledged, and how far the cursor may move."""

    def __init__(self, events: list[Event]) -> None:
        self._events = events
        self._acknowledged = [False] * len(events)
        self._prefix = 0  # events[:_prefix] are all acknowledged
        self._recorded = 0  # the cursor is stored past events[:_recorded]
        self._lock = asyncio.Lock()

    def acknowledge(self, index: int) -> None:
        self._acknowledged[index] = True
        while self._prefix < len(self._events) and self._acknowledged[self._prefix]:
            self._prefix += 1

    async def record(self, dispatcher: WebhookDispatcher, subscription: Subscription, lease: Lease) -> bool:
        """Moves the cursor past the acknowledged prefix, if it grew; False when stale.

        One lane at a time: two advances racing could otherwise store the smaller cursor last.
        """
        async with self._lock:
            prefix = self._prefix
            if prefix <= self._recorded:
                return True
            if not await dispatcher.advance(subscription, lease, self._events[prefix - 1].cursor):
                return False
            self._recorded = prefix
            return True


class WebhookDispatcher:
    """The subscriptions one worker delivers."""

    def __init__(
        self,
        subscriptions: Subscriptions,
        outbox: Outbox,
        tail: OutboxTail,
        store: DeliveryStore,
        tenants: Callable[[], Awaitable[Collection[str]]],
        *,
        settings: WebhookSettings,
        development: bool,
    ) -> None:
        self._subscriptions = subscriptions
        self._outbox = outbox
        self._tail = tail
        self._store = store
        self._tenants = tenants
        self._settings = settings
        self._development = development
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.max_concurrent_deliveries)
        self._lease_ms = int(settings.lease_seconds * 1000)
        # Kept-alive connections, at most one idle per delivery slot for each checked address.
        self._poster = Poster(keep=settings.max_concurrent_deliveries)

    async def run(self) -> None:
        """Takes over every deliverable subscription no worker delivers, every ``scan_seconds``."""
        while True:
            try:
                await self._scan()
            except StoreUnavailable:
                pass
            except Exception as error:  # noqa: BLE001 - the loop must outlive any one bad round
                log.error("webhook scan failed: %s", type(error).__name__)  # noqa: TRY400
            await asyncio.sleep(self._settings.scan_seconds)

    async def _scan(self) -> None:
        for tenant in sorted(await self._tenants()):
            for subscription in await self._subscriptions.list(tenant):
                key = (tenant, subscription.webhook_id)
                if key in self._running or subscription.state != "active":
                    continue
                lease = Lease(tenant, subscription.webhook_id, secrets.token_hex(8))
                if await self._store.take(lease, self._lease_ms):
                    task = asyncio.create_task(
                        self._deliver_subscription(lease),
                        name=f"webhook-{subscription.webhook_id}",
                    )
                    self._running[key] = task
                    task.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._running.pop(key, None)
        # The next scan takes the subscription again; a delivery that keeps failing the same way
        # would otherwise stall it with nothing in the log (the task's exception is its only trace).
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error(
                "webhook %s: delivery stopped on %s; it resumes from the cursor at the next scan",
                key[1],
                type(error).__name__,
            )

    async def _keep_lease(self, lease: Lease, holder: asyncio.Task[None]) -> None:
        """Renews the lease; when it is lost (another worker took over), stops the holder."""
        while True:
            await asyncio.sleep(self._settings.lease_seconds / 3)
            try:
                kept = await self._store.renew(lease, self._lease_ms)
            except StoreUnavailable:
                continue  # the lease may end meanwhile: then another worker goes on from the cursor
            if not kept:
                holder.cancel()
                return

    async def _deliver_subscription(self, lease: Lease) -> None:
        tenant, webhook_id = lease.tenant, lease.webhook_id
        current = asyncio.current_task()
        assert current is not None  # noqa: S101 - called as a task
        keeper: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    subscription = await self._subscriptions.get(tenant, webhook_id)
                except NotFound:
                    return
                if keeper is None:
                    keeper = asyncio.create_task(self._keep_lease(lease, current))
                if subscription.state != "active":
                    return
                try:
                    await self._deliver_generation(subscription, lease)
                except StoreUnavailable:
                    await asyncio.sleep(self._settings.retry_initial_seconds)
        except SealError:
            log.error("webhook %s: its secret does not open with this keyring", webhook_id)  # noqa: TRY400
        finally:
            if keeper is not None:
                keeper.cancel()
            with contextlib.suppress(Exception):
                await self._store.give(lease)

    async def _deliver_generation(self, subscription: Subscription, lease: Lease) -> None:
        """Delivers batch after batch while the subscription stays as loaded; returns to reload it.

        The subscription, its opened secret and its keyed HMAC are kept until the delivery script
        refuses the generation (a change bumps it: webhook_manage.lua), and each round trip
        records the previous batch's progress and reads the next batch (``next``).
        """
        sign = Signer(self._subscriptions.secret_of(subscription))
        cursor, acknowledged = subscription.cursor, ""
        while True:
            batch = await self._next(subscription, lease, acknowledged, cursor)
            if batch is None:
                return  # changed (replayed, disabled, re-keyed, deleted) or the lease lost
            acknowledged = ""
            events, next_cursor = batch
            if next_cursor == cursor:
                await self._tail.wait_past(subscription.tenant, cursor, self._settings.lease_seconds / 3)
                continue
            if not await self._deliver_batch(subscription, sign, lease, events):
                return
            # Past the records of other types read with them too.
            cursor = acknowledged = next_cursor

    async def _next(
        self, subscription: Subscription, lease: Lease, acknowledged: str, after: str
    ) -> tuple[list[Event], str] | None:
        """Records ``acknowledged`` (unless empty) and reads the batch after ``after``; None when stale."""
        records = await self._store.next_batch(
            lease,
            subscription.generation,
            acknowledged,
            after,
            BATCH,
        )
        if records is None:
            return None
        if not records:
            return [], after
        events = self._outbox.events_of(subscription.tenant, records, subscription.types)
        return events, records[-1].cursor

    async def _deliver_batch(
        self, subscription: Subscription, sign: Signer, lease: Lease, events: list[Event]
    ) -> bool:
        """Delivers a batch in order; False when the subscription changed or failed meanwhile."""
        if subscription.concurrency > 1:
            return await self._deliver_side_by_side(subscription, sign, lease, events)
        # The cursor moves once per batch (with the next read), and before any retry: a crash
        # repeats at most one batch.
        acknowledged = ""
        with _Pending(subscription, len(events)) as pending:
            for event in events:
                error = await self._attempt(subscription, sign, event)
                if error:
                    if acknowledged and not await self.advance(subscription, lease, acknowledged):
                        return False
                    if not await self._retry(subscription, sign, event, lease, error):
                        return False
                acknowledged = event.cursor
                pending.done()
        return True

    async def _deliver_side_by_side(
        self, subscription: Subscription, sign: Signer, lease: Lease, events: list[Event]
    ) -> bool:
        """Delivers a batch ``concurrency`` accounts at a time, each account's events in order.

        The events are split by account (``Event.order_key``); up to ``concurrency`` accounts'
        deliveries run at once, each one event after the other. The batch ends when every account's
        events are acknowledged. Before a failed event is retried, the cursor is moved past the
        events acknowledged without a gap before it (``_Progress``), never past one not acknowledged.
        """
        lanes: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            lanes.setdefault(event.order_key, []).append(index)
        progress = _Progress(events)
        slots = asyncio.Semaphore(subscription.concurrency)

        async def deliver_lane(indexes: list[int]) -> None:
            async with slots:
                for index in indexes:
                    event = events[index]
                    error = await self._attempt(subscription, sign, event)
                    if error:
                        if not await progress.record(self, subscription, lease):
                            raise _Stale
                        if not await self._retry(subscription, sign, event, lease, error):
                            raise _Stale
                    progress.acknowledge(index)
                    pending.done()

        with _Pending(subscription, len(events)) as pending:
            try:
                async with asyncio.TaskGroup() as group:
                    for indexes in lanes.values():
                        group.create_task(deliver_lane(indexes))
            except ExceptionGroup as stopped:
                # A stale lane cancels the others; anything else (Redis gone) goes on up as itself.
                others = [error for error in stopped.exceptions if not isinstance(error, _Stale)]
                if others:
                    raise others[0] from stopped
                return False
        return True

    async def advance(self, subscription: Subscription, lease: Lease, cursor: str) -> bool:
        """Stores the cursor (under the lease and generation loaded); False when stale."""
        return await self._store.advance(lease, subscription.generation, cursor)

    async def _retry(
        self, subscription: Subscription, sign: Signer, event: Event, lease: Lease, error: str
    ) -> bool:
        """Posts a failed event again until a 2xx (True), or until the subscription changed or failed."""
        retry_ms = self._settings.retry_hours * 3_600_000
        attempt = 0
        while True:
            failing = await self._store.failed(lease, subscription.generation, error)
            if failing is None:
                return False  # changed (replayed, disabled, re-keyed) or lost: reload
            if failing.now_ms - failing.first_failure_ms >= retry_ms:
                if await self._subscriptions.fail(subscription, error, failing.first_failure_ms):
                    Instruments.add(instruments.webhook_failing, tenant=subscription.tenant)
                    log.warning("webhook %s is failing (%s): deliveries stop", subscription.webhook_id, error)
                return False
            ceiling = min(self._settings.retry_max_seconds, self._settings.retry_initial_seconds * 2**attempt)
            attempt += 1
            # Equal jitter: at least half the backoff, so receivers coming back are not stormed.
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - not a secret
            if not await self._sleep_unless_changed(subscription, delay):
                return False
            error = await self._attempt(subscription, sign, event)
            if not error:
                return True

    async def _sleep_unless_changed(self, subscription: Subscription, seconds: float) -> bool:
        """Waits ``seconds``; False as soon as the subscription's generation changes (a replay...)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self._settings.scan_seconds))
            try:
                current = await self._subscriptions.get(subscription.tenant, subscription.webhook_id)
            except NotFound:
                return False
            except StoreUnavailable:
                continue
            if current.generation != subscription.generation:
                return False
        return True

    async def _attempt(self, subscription: Subscription, sign: Signer, event: Event) -> str:
        """One POST of the event, in its span when spans are exported; empty on a 2xx, else a short code."""
        if not telemetry.tracing():
            # No span to make, no link to build: with tracing off, about a sixth of the delivery
            # task's own samples in a py-spy profile went to them.
            return await self._measured_post(subscription, sign, event)
        attributes = {"idverify.tenant": subscription.tenant, "idverify.webhook_id": subscription.webhook_id}
        with telemetry.tracer().start_as_current_span(
            "webhook.deliver",
            kind=SpanKind.CLIENT,
            links=_change_link(event),
            attributes=telemetry.safe_attributes({**attributes, "idverify.event": event.type}),
        ) as current:
            error = await self._measured_post(subscription, sign, event)
            if error:
                current.set_status(trace.Status(trace.StatusCode.ERROR))
            return error

    async def _measured_post(self, subscription: Subscription, sign: Signer, event: Event) -> str:
        """One POST of the event and its metrics."""
        began = time.perf_counter()
        error = await self._post(subscription, sign, event)
        tenant, webhook_id = subscription.tenant, subscription.webhook_id
        Instruments.add(
            instruments.webhook_attempts, outcome=error or "ok", tenant=tenant, webhook_id=webhook_id
        )
        if error:
            Instruments.add(instruments.webhook_failures, reason=error, tenant=tenant, webhook_id=webhook_id)
        else:
            Instruments.record(instruments.webhook_request_duration, time.perf_counter() - began)
            lag = max(time.time() * 1000 - event.time_ms, 0) / 1000
            Instruments.record(instruments.webhook_latency, lag)
        return error

    async def _post(self, subscription: Subscription, sign: Signer, event: Event) -> str:
        try:
            destination = await resolve(
                subscription.url,
                development=self._development,
                allow_private=self._settings.allow_private_destinations,
            )
        except DestinationRefused as refused:
            return refused.code.lower()
        body = payload(event)
        identifier = message_id(subscription, event)
        stamp = int(time.time())
        headers = (
            f"webhook-id: {identifier}\r\n"
            f"webhook-timestamp: {stamp}\r\n"
            f"webhook-signature: {sign(identifier, stamp, body)}\r\n"
        ).encode("ascii")
        try:
            # The request goes to the address just checked; the name stays the Host and TLS name.
            async with self._slots:
                status = await self._poster.post(destination, headers, body, subscription.timeout_ms / 1000)
        except PostError as failed:
            return failed.code
        return "" if status in _SUCCESS else f"http_{status}"

    async def aclose(self) -> None:
        """Stops every delivery (their leases are given back) and closes the connections."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._poster.close()

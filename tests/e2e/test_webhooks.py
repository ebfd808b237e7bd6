"""Webhooks: signed deliveries a stock library verifies, in order, at least once, never to SSRF targets.

A real server on its embedded Redis posts to a receiver in this process (webhook_receiver.py),
which checks every request with the ``standardwebhooks`` package. The receiver misbehaves as
real ones do (500s, hangs, closed connections, down for a while); every event still arrives, in
order. A second server, allowing no private destination, refuses SSRF targets.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from idverify.client import Client
from idverify.events.outbox import cursor_key
from idverify.testing import ServerProcess
from idverify.v1 import admin_pb2, events_pb2
from idverify.webhooks.signing import signature

from .conftest import embedded_redis, everything_stored, person, rich_error, verify
from .otlp_collector import OtlpCollector
from .webhook_receiver import Delivery, Receiver

pytestmark = pytest.mark.e2e

CONFIG = """
[webhooks]
allow_private_destinations = true
retry_initial_seconds = 0.05
retry_max_seconds = 0.4
timeout_seconds = 1
scan_seconds = 0.2
lease_seconds = 2
"""
STREAM_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("webhooks"), config=CONFIG) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def caught_up(client: Client, after: str = "") -> list[events_pb2.Event]:
    request = events_pb2.StreamEventsRequest(after=after, until_caught_up=True)
    return [reply.event for reply in client.events.StreamEvents(request, timeout=STREAM_TIMEOUT)]


def subscribe(server: ServerProcess, receiver: Receiver, types: tuple[str, ...] = ()) -> admin_pb2.Webhook:
    with server.client("admin") as admin:
        created = admin.admin.CreateWebhook(
            admin_pb2.CreateWebhookRequest(url=receiver.url, event_types=list(types))
        )
    receiver.secret = created.secret
    return created.webhook


def delete(server: ServerProcess, webhook: admin_pb2.Webhook) -> None:
    with server.client("admin") as admin:
        admin.admin.DeleteWebhook(admin_pb2.DeleteWebhookRequest(webhook_id=webhook.webhook_id))


def signups(server: ServerProcess, count: int, prefix: str) -> None:
    with server.client("registrar") as registrar:
        for n in range(count):
            assert verify(server, registrar, person(), f"{prefix}-{n}").status == 3  # VERIFIED


def expected_after(server: ServerProcess, cursor: str) -> list[events_pb2.Event]:
    with server.client("platform") as platform:
        return caught_up(platform, cursor)


def cursors_in_order(deliveries: list[Delivery]) -> list[str]:
    """The cursors received, first arrivals only (at least once: a repeat is allowed)."""
    seen: list[str] = []
    for delivery in deliveries:
        cursor = delivery.payload["data"]["cursor"]
        if cursor not in seen:
            seen.append(cursor)
    return seen


def all_of(expected: list[events_pb2.Event]) -> object:
    wanted = {event.cursor for event in expected}
    return lambda deliveries: wanted <= {d.payload["data"]["cursor"] for d in deliveries}


def test_every_event_arrives_signed_in_order_and_the_stock_library_verifies_it(
    server: ServerProcess, receiver: Receiver
) -> None:
    webhook = subscribe(server, receiver)
    assert receiver.secret.startswith("whsec_")
    assert len(base64.b64decode(receiver.secret.removeprefix("whsec_"))) == 32
    assert webhook.state == "active"
    signups(server, 3, "signed")
    expected = expected_after(server, webhook.cursor)
    assert {"verification.started", "challenge.sent", "verification.verified", "account.bound"} <= {
        e.type for e in expected
    }
    deliveries = receiver.wait_for(all_of(expected))
    delete(server, webhook)
    assert not receiver.refused
    assert cursors_in_order(deliveries) == [e.cursor for e in expected]
    for delivery, event in zip(deliveries, expected, strict=False):
        data = delivery.payload["data"]
        assert delivery.payload["type"] == event.type
        assert (data["type"], data["verificationId"], data["accountId"]) == (
            event.type,
            event.verification_id,
            event.account_id,
        )
        assert data["auditIndex"] == str(event.audit_index)
        assert delivery.message_id == f"{webhook.webhook_id}_{event.cursor}"
        assert delivery.headers["webhook-signature"].startswith("v1,")
    # The stock library refuses a tampered body and an old (honestly signed) message.
    first = deliveries[0]
    verifier = Webhook(receiver.secret)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(first.body.replace(b'"type"', b'"typo"', 1), first.headers)
    old = int(time.time()) - 3600
    stale = {**first.headers, "webhook-timestamp": str(old)}
    stale["webhook-signature"] = signature(receiver.secret, first.message_id, old, first.body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(first.body, stale)


def test_a_receiver_down_failing_hanging_or_closing_gets_every_event_once_it_is_back(
    server: ServerProcess, receiver: Receiver
) -> None:
    webhook = subscribe(server, receiver)
    for mode in ("500", "hang", "close"):
        receiver.set_mode(mode)
        before = receiver.requests
        signups(server, 1, f"trouble-{mode}")
        deadline = time.monotonic() + 20
        while receiver.requests < before + 2:  # retried, not given up
            assert time.monotonic() < deadline, f"no retry while the receiver answers {mode}"
            time.sleep(0.05)
    # Down: nothing listens on its port for a while, then it comes back there.
    port, secret = receiver.port, receiver.secret
    receiver.__exit__()
    signups(server, 1, "trouble-down")
    time.sleep(1.5)
    with server.client("admin") as admin:
        listed = admin.admin.ListWebhooks(admin_pb2.ListWebhooksRequest()).webhooks
    (state,) = [w for w in listed if w.webhook_id == webhook.webhook_id]
    assert state.state == "active"
    assert state.last_error in {"connection", "timeout", "http_500"}
    assert state.HasField("failing_since")
    with Receiver(port=port, secret=secret) as back:
        expected = expected_after(server, webhook.cursor)
        deliveries = back.wait_for(all_of(expected), timeout=60)
        delete(server, webhook)
    assert not back.refused
    assert cursors_in_order(deliveries) == [e.cursor for e in expected]
    accounts = {e.account_id for e in expected if e.account_id}
    assert {f"trouble-{mode}-0" for mode in ("500", "hang", "close", "down")} <= accounts


def test_events_of_the_types_asked_for_only(server: ServerProcess, receiver: Receiver) -> None:
    webhook = subscribe(server, receiver, ("verification.verified",))
    signups(server, 2, "typed")
    expected = [e for e in expected_after(server, webhook.cursor) if e.type == "verification.verified"]
    assert len(expected) == 2
    deliveries = receiver.wait_for(all_of(expected))
    delete(server, webhook)
    assert {d.payload["type"] for d in deliveries} == {"verification.verified"}


def test_the_secret_is_shown_once_and_stored_sealed(server: ServerProcess, receiver: Receiver) -> None:
    webhook = subscribe(server, receiver)
    first_secret = receiver.secret
    with server.client("admin") as admin:
        rotated = admin.admin.UpdateWebhook(
            admin_pb2.UpdateWebhookRequest(webhook_id=webhook.webhook_id, action="rotate_secret")
        )
        listed = admin.admin.ListWebhooks(admin_pb2.ListWebhooksRequest())
        disabled = admin.admin.UpdateWebhook(
            admin_pb2.UpdateWebhookRequest(webhook_id=webhook.webhook_id, action="disable")
        )
    assert rotated.secret.startswith("whsec_")
    assert rotated.secret != first_secret
    assert not disabled.secret
    assert disabled.webhook.state == "disabled"
    receiver.secret = rotated.secret
    stored = b"\n".join(everything_stored(embedded_redis(server)))
    listing = listed.SerializeToString()
    for secret in (first_secret, rotated.secret):
        key = secret.removeprefix("whsec_")
        for needle in (secret.encode(), key.encode(), base64.b64decode(key)):
            assert needle not in stored
            assert needle not in listing
        assert key not in server.log_text()
    delete(server, webhook)


def test_a_replay_moves_the_cursor_back_and_delivers_again(server: ServerProcess, receiver: Receiver) -> None:
    webhook = subscribe(server, receiver)
    signups(server, 1, "replayed")
    expected = expected_after(server, webhook.cursor)
    receiver.wait_for(all_of(expected))
    count = len(receiver.deliveries)
    with server.client("admin") as admin:
        replayed = admin.admin.ReplayWebhook(
            admin_pb2.ReplayWebhookRequest(webhook_id=webhook.webhook_id, after=webhook.cursor)
        )
    assert replayed.webhook.cursor == webhook.cursor
    again = receiver.wait_for(lambda d: len(d) >= count + len(expected))
    delete(server, webhook)
    assert [d.payload["data"]["cursor"] for d in again[count:]] == [e.cursor for e in expected]


@pytest.mark.parametrize("role", ["registrar", "platform", "auditor"])
def test_only_an_admin_manages_subscriptions(server: ServerProcess, role: str) -> None:
    with server.client(role) as client:
        for call, request in (
            (client.admin.CreateWebhook, admin_pb2.CreateWebhookRequest(url="https://example.com/")),
            (client.admin.ListWebhooks, admin_pb2.ListWebhooksRequest()),
            (client.admin.DeleteWebhook, admin_pb2.DeleteWebhookRequest(webhook_id="0" * 16)),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call(request)
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_another_tenants_admin_sees_no_subscription(server: ServerProcess, receiver: Receiver) -> None:
    webhook = subscribe(server, receiver)
    with server.client("admin", tenant="other") as other:
        assert not other.admin.ListWebhooks(admin_pb2.ListWebhooksRequest()).webhooks
        with pytest.raises(grpc.RpcError) as refused:
            other.admin.DeleteWebhook(admin_pb2.DeleteWebhookRequest(webhook_id=webhook.webhook_id))
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as named:
            other.admin.ListWebhooks(admin_pb2.ListWebhooksRequest(tenant="default"))
        assert named.value.code() is grpc.StatusCode.PERMISSION_DENIED
    delete(server, webhook)


def test_bad_requests_name_the_field(server: ServerProcess) -> None:
    with server.client("admin") as admin:
        for request, field in (
            (
                admin_pb2.CreateWebhookRequest(
                    url="https://example.com/", event_types=["account.bound", "nope"]
                ),
                "event_types[1]",
            ),
            (admin_pb2.CreateWebhookRequest(url="ftp://example.com/"), "url"),
            (admin_pb2.CreateWebhookRequest(url="https://user:pw@example.com/"), "url"),
            (
                admin_pb2.CreateWebhookRequest(url="https://example.com/", timeout_seconds=31),
                "timeout_seconds",
            ),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                admin.admin.CreateWebhook(request)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, request
            assert rich_error(refused.value)[1] == field
        for update, field in (
            (admin_pb2.UpdateWebhookRequest(webhook_id="0" * 16, action="explode"), "action"),
            (admin_pb2.UpdateWebhookRequest(webhook_id="../x", action="enable"), "webhook_id"),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                admin.admin.UpdateWebhook(update)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert rich_error(refused.value)[1] == field
        with pytest.raises(grpc.RpcError) as missing:
            admin.admin.UpdateWebhook(admin_pb2.UpdateWebhookRequest(webhook_id="0" * 16, action="enable"))
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND


# --- a server that allows no private destination ------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = "[webhooks]\nscan_seconds = 0.2\nlease_seconds = 2\n"
    with ServerProcess(tmp_path_factory.mktemp("webhooks-guarded"), config=config) as running:
        yield running


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "http://localhost:9/hook",  # a name that resolves to loopback
    ],
)
def test_ssrf_destinations_are_refused_naming_url(guarded: ServerProcess, url: str) -> None:
    with guarded.client("admin") as admin:
        with pytest.raises(grpc.RpcError) as refused:
            admin.admin.CreateWebhook(admin_pb2.CreateWebhookRequest(url=url))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert rich_error(refused.value) == ("PRIVATE_DESTINATION", "url")
        assert not admin.admin.ListWebhooks(admin_pb2.ListWebhooksRequest()).webhooks


def test_a_subscription_that_keeps_failing_is_marked_failing_then_replayed(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> None:
    config = CONFIG + "retry_hours = 0.0005\n"  # 1.8 s
    with ServerProcess(tmp_path_factory.mktemp("webhooks-failing"), config=config) as server:
        receiver.set_mode("500")
        webhook = subscribe(server, receiver)
        signups(server, 1, "failing")
        deadline = time.monotonic() + 30
        with server.client("admin") as admin:
            while True:
                (listed,) = admin.admin.ListWebhooks(admin_pb2.ListWebhooksRequest()).webhooks
                if listed.state == "failing":
                    break
                assert time.monotonic() < deadline, listed
                time.sleep(0.2)
            assert listed.last_error == "http_500"
            assert listed.cursor == webhook.cursor  # nothing acknowledged: nothing skipped
            requests = receiver.requests
            time.sleep(1)
            assert receiver.requests == requests  # a failing subscription waits
            receiver.set_mode("ok")
            # The new server's outbox was empty at creation (no cursor): replay from its time.
            replay = admin_pb2.ReplayWebhookRequest(webhook_id=webhook.webhook_id, since=webhook.created_at)
            assert admin.admin.ReplayWebhook(replay).webhook.state == "active"
        expected = expected_after(server, webhook.cursor)
        deliveries = receiver.wait_for(all_of(expected))
        assert cursors_in_order(deliveries) == [e.cursor for e in expected]
        log = server.log_text()
        assert "is failing (http_500)" in log
        entries = b"\n".join(embedded_redis(server).hvals("iv1:{t:default}:audit:log"))
        for kind in (b"webhook.created", b"webhook.failing", b"webhook.replayed"):
            assert kind in entries
        assert receiver.secret.encode() not in entries


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IDVERIFY_TOKEN": server.token("admin")}
    return subprocess.run(
        [sys.executable, "-m", "idverify", *args, "--server", server.target],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_cli_manages_subscriptions_and_replays_one(server: ServerProcess, receiver: Receiver) -> None:
    created = _cli(server, "webhooks", "create", receiver.url, "--type", "verification.verified")
    assert created.returncode == 0, created.stderr
    webhook_id = created.stdout.split()[1]
    secret = created.stdout.split("secret (shown once; the receiver verifies with it): ")[1].strip()
    receiver.secret = secret
    listed = _cli(server, "webhooks", "list")
    assert listed.returncode == 0, listed.stderr
    assert webhook_id in listed.stdout
    assert secret.removeprefix("whsec_") not in listed.stdout
    signups(server, 1, "cli")
    receiver.wait_for(lambda d: len(d) >= 1)
    cursor = receiver.deliveries[0].payload["data"]["cursor"]
    before = cursor.split("-")[0]
    replayed = _cli(
        server, "events", "replay", "--subscription", webhook_id, "--since", f"{int(before) - 1}-0"
    )
    assert replayed.returncode == 0, replayed.stderr
    again = receiver.wait_for(lambda d: len(d) >= 2)
    assert again[1].payload["data"]["cursor"] == cursor
    bad = _cli(server, "events", "replay", "--subscription", webhook_id, "--since", "yesterday")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    wrong = _cli(server, "webhooks", "create", "ftp://example.com/")
    assert wrong.returncode == 1
    assert "INVALID_ARGUMENT" in wrong.stderr
    assert _cli(server, "webhooks", "delete", webhook_id).returncode == 0
    assert webhook_id not in _cli(server, "webhooks", "list").stdout


def test_a_destination_is_checked_again_at_each_delivery(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> None:
    """A subscription made while private destinations were allowed is refused once they are not.

    The same check runs at every delivery as at creation (a name re-pointed at an internal
    address after it was checked is refused the same way): here, the configuration changes.
    """
    directory = tmp_path_factory.mktemp("webhooks-recheck")
    with ServerProcess(directory, config=CONFIG) as server:
        webhook = subscribe(server, receiver)
    strict = CONFIG.replace("allow_private_destinations = true", "allow_private_destinations = false")
    with ServerProcess(directory, config=strict) as server:
        signups(server, 1, "recheck")
        deadline = time.monotonic() + 30
        with server.client("admin") as admin:
            while True:
                (listed,) = admin.admin.ListWebhooks(admin_pb2.ListWebhooksRequest()).webhooks
                if listed.last_error:
                    break
                assert time.monotonic() < deadline, listed
                time.sleep(0.2)
        assert listed.last_error == "private_destination"
        assert listed.cursor == webhook.cursor
        assert receiver.requests == 0


# --- deliveries side by side ----------------------------------------------------------------------


def subscribe_paused(server: ServerProcess, receiver: Receiver, concurrency: int) -> admin_pb2.Webhook:
    """A subscription created disabled-at-once, so that the events made meanwhile go as one batch."""
    with server.client("admin") as admin:
        created = admin.admin.CreateWebhook(
            admin_pb2.CreateWebhookRequest(url=receiver.url, concurrency=concurrency)
        )
        admin.admin.UpdateWebhook(
            admin_pb2.UpdateWebhookRequest(webhook_id=created.webhook.webhook_id, action="disable")
        )
    receiver.secret = created.secret
    assert created.webhook.concurrency == concurrency
    return created.webhook


def resume(server: ServerProcess, webhook: admin_pb2.Webhook) -> None:
    with server.client("admin") as admin:
        admin.admin.UpdateWebhook(
            admin_pb2.UpdateWebhookRequest(webhook_id=webhook.webhook_id, action="enable")
        )


def per_account(cursors: list[str], events: list[events_pb2.Event]) -> dict[str, list[str]]:
    """The cursors of each account's events, in the order given."""
    account_of = {e.cursor: e.account_id for e in events}
    grouped: dict[str, list[str]] = {}
    for cursor in cursors:
        grouped.setdefault(account_of[cursor], []).append(cursor)
    return grouped


def stored_cursor(server: ServerProcess, webhook: admin_pb2.Webhook, at_least: str) -> str:
    """The subscription's stored cursor, once it reached ``at_least`` (stored after the batch)."""
    deadline = time.monotonic() + 10
    while True:
        with server.client("admin") as admin:
            (listed,) = [
                w
                for w in admin.admin.ListWebhooks(admin_pb2.ListWebhooksRequest()).webhooks
                if w.webhook_id == webhook.webhook_id
            ]
        if cursor_key(listed.cursor) >= cursor_key(at_least) or time.monotonic() > deadline:
            return listed.cursor
        time.sleep(0.05)


def test_a_slow_receiver_gets_different_accounts_side_by_side_and_each_account_in_order(
    server: ServerProcess, receiver: Receiver
) -> None:
    webhook = subscribe_paused(server, receiver, 4)
    signups(server, 6, "side")
    expected = expected_after(server, webhook.cursor)
    assert len({e.account_id for e in expected}) == 6
    receiver.delay = 0.2
    resume(server, webhook)
    deliveries = receiver.wait_for(all_of(expected), timeout=60)
    cursor = stored_cursor(server, webhook, expected[-1].cursor)
    delete(server, webhook)
    assert not receiver.refused
    assert 2 <= receiver.most_in_flight <= 4  # side by side, never more than asked
    assert per_account(cursors_in_order(deliveries), expected) == per_account(
        [e.cursor for e in expected], expected
    )
    # The progress is stored once the batch is acknowledged (a repeat is allowed: a timeout on
    # the loaded machine is retried), and only this batch's events were sent.
    assert cursor_key(cursor) >= cursor_key(expected[-1].cursor)
    assert {d.payload["data"]["cursor"] for d in deliveries} == {e.cursor for e in expected}


def test_one_account_refused_holds_back_only_its_own_events(
    server: ServerProcess, receiver: Receiver
) -> None:
    """A receiver refusing one account's events (hostile or broken): the others go on, it waits in order."""
    webhook = subscribe_paused(server, receiver, 4)
    signups(server, 4, "held")
    expected = expected_after(server, webhook.cursor)
    held = [e.cursor for e in expected if e.account_id == "held-0"]
    others = [e for e in expected if e.account_id != "held-0"]
    assert held
    receiver.fail_account = {"held-0": 10**6}
    resume(server, webhook)
    receiver.wait_for(all_of(others), timeout=60)
    assert len(receiver.failed) >= 1
    assert set(receiver.failed) == {held[0]}  # retried, and none of its later events went first
    # Not past the refused event: a crash now would send it again.
    assert cursor_key(stored_cursor(server, webhook, held[0])) < cursor_key(held[0])
    receiver.fail_account = {}
    deliveries = receiver.wait_for(all_of(expected), timeout=60)
    delete(server, webhook)
    assert not receiver.refused
    assert per_account(cursors_in_order(deliveries), expected) == per_account(
        [e.cursor for e in expected], expected
    )


def test_a_concurrency_over_16_is_refused_naming_it(server: ServerProcess) -> None:
    with server.client("admin") as admin, pytest.raises(grpc.RpcError) as refused:
        admin.admin.CreateWebhook(admin_pb2.CreateWebhookRequest(url="http://127.0.0.1:9/", concurrency=17))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert rich_error(refused.value) == ("BAD_CONCURRENCY", "concurrency")


# --- the delivery span ------------------------------------------------------------------------------


def attribute(span: trace_pb2.Span, key: str) -> str:
    return next((a.value.string_value for a in span.attributes if a.key == key), "")


def call_of(span: trace_pb2.Span, by_id: dict[tuple[bytes, bytes], trace_pb2.Span]) -> trace_pb2.Span:
    """The server span of the call a span belongs to (itself, or its nearest server ancestor)."""
    while span.kind != trace_pb2.Span.SPAN_KIND_SERVER:
        span = by_id[(span.trace_id, span.parent_span_id)]
    return span


def test_each_delivery_span_links_to_the_span_of_the_change(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> None:
    """The link names the span that made the change (trace, span id, flags), not only its trace."""
    with OtlpCollector() as collector:
        config = CONFIG + f'\n[telemetry]\ntraces = "otlp"\notlp_endpoint = "{collector.endpoint}"\n'
        with ServerProcess(tmp_path_factory.mktemp("webhooks-spans"), config=config) as server:
            webhook = subscribe(server, receiver)
            signups(server, 2, "traced")
            expected = expected_after(server, webhook.cursor)
            receiver.wait_for(all_of(expected))

            def delivered(spans: list[trace_pb2.Span]) -> bool:
                # Each worker exports on its own: the change's span may come after the delivery's.
                exported = {(s.trace_id, s.span_id) for s in spans}
                deliveries = [s for s in spans if s.name == "webhook.deliver"]
                types = [attribute(s, "idverify.event") for s in deliveries]
                linked = all((k.trace_id, k.span_id) in exported for s in deliveries for k in s.links)
                return types.count("verification.verified") >= 2 and linked

            spans = collector.wait_for(delivered)
            store = embedded_redis(server)
            records = store.xrange("iv1:{t:default}:events:outbox")
            entries = b"\n".join(store.hvals("iv1:{t:default}:audit:log"))
    # What a Redis dump shows of it: random ids and flags in the outbox record, nothing in entries.
    assert records
    for _, fields in records:
        assert re.fullmatch(rb"[0-9a-f]{32}-[0-9a-f]{16}-01", fields[b"c"]), fields
    assert b'"span"' not in entries
    by_id = {(s.trace_id, s.span_id): s for s in spans}
    deliveries = [s for s in spans if s.name == "webhook.deliver"]
    verified = [s for s in deliveries if attribute(s, "idverify.event") == "verification.verified"]
    changed_by = set()
    for delivery in verified:
        (link,) = delivery.links
        assert link.trace_id != delivery.trace_id  # a trace of its own, linked
        # The linked span was exported: it is (in) the call that made the change.
        assert call_of(by_id[(link.trace_id, link.span_id)], by_id).name == "SubmitChallenge"
        changed_by.add(link.span_id)
    assert len(changed_by) == 2  # each event links to its own change
    # Every event type links to a span that was exported (none to a made-up id).
    for delivery in deliveries:
        (link,) = delivery.links
        assert (link.trace_id, link.span_id) in by_id

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Tests of the console and HTTP gateway SMS senders, the latter against a real local HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from idverify.domain.errors import ConfigError
from idverify.verifiers.base import SendFailed
from idverify.verifiers.sms_senders import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ConsoleSender,
    HttpGatewaySender,
    sign_request,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

PHONE = "+8613812345678"
SECRET = b"s3cret-for-tests-only-0123456789abcdef"
SECRET_ENV = "IDVERIFY_TEST_SMS_GATEWAY_SECRET"  # noqa: S105 - names a variable, holds no secret


class TestConsoleSender:
    async def test_logs_the_code_with_the_masked_phone(self, caplog: pytest.LogCaptureFixture) -> None:
        """A developer finds the code in the server log, at WARNING, with the masked number."""
        with caplog.at_level(logging.WARNING, logger="idverify.sms.console"):
            await ConsoleSender({}).send_code(PHONE, "042917", tenant="acme", verification_id="v1")
        [record] = caplog.records
        assert record.name == "idverify.sms.console"
        assert record.levelno == logging.WARNING
        assert record.getMessage() == "console SMS sender: code 042917 for 138****5678 (verification v1)"

    async def test_never_logs_the_full_phone(self, caplog: pytest.LogCaptureFixture) -> None:
        """Neither the number nor its national part appears anywhere in the log record."""
        with caplog.at_level(logging.DEBUG):
            await ConsoleSender({}).send_code(PHONE, "042917", tenant="acme", verification_id="v1")
        assert PHONE[3:] not in caplog.text
        assert all(PHONE[3:] not in repr(record.args) for record in caplog.records)

    def test_refuses_options(self) -> None:
        """The console sender has no options; a stray one is a configuration mistake."""
        with pytest.raises(ConfigError, match="unknown options"):
            ConsoleSender({"url": "http://127.0.0.1"})


@dataclass
class Gateway:
    """What the fake gateway saw and how it should answer."""

    url: str
    status: int = 200
    delay: float = 0.0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _QuietServer(ThreadingHTTPServer):
    # A handler still holding a request the client gave up on (the timeout test) hits a closed
    # socket at teardown; that is expected, not worth a traceback on stderr.
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    state = Gateway(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((dict(self.headers.items()), body))
            if state.delay:
                state.release.wait(state.delay)
            self.send_response(state.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/sms"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SECRET_ENV, SECRET.decode())
    return SECRET_ENV


@pytest.fixture
async def http_sender(gateway: Gateway, secret_env: str) -> AsyncIterator[HttpGatewaySender]:
    sender = HttpGatewaySender(
        {"url": gateway.url, "secret_env": secret_env, "template": "otp_login", "timeout_seconds": 0.5}
    )
    yield sender
    await sender.aclose()


async def _send(sender: HttpGatewaySender) -> None:
    await sender.send_code(PHONE, "042917", tenant="acme", verification_id="f" * 32)


class TestHttpGatewaySender:
    async def test_posts_the_documented_body(self, http_sender: HttpGatewaySender, gateway: Gateway) -> None:
        """The gateway receives destination, code, template, tenant and verification id as JSON."""
        await _send(http_sender)
        [(headers, body)] = gateway.requests
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {
            "to": PHONE,
            "code": "042917",
            "template": "otp_login",
            "tenant": "acme",
            "verification_id": "f" * 32,
        }

    async def test_signature_verifies_at_the_receiver(
        self, http_sender: HttpGatewaySender, gateway: Gateway
    ) -> None:
        """A receiver that follows the module docstring accepts the request, and only it."""
        before = int(time.time())
        await _send(http_sender)
        [(headers, body)] = gateway.requests
        timestamp = headers[TIMESTAMP_HEADER]
        assert before <= int(timestamp) <= time.time()
        expected = "v1=" + hmac.new(SECRET, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
        assert headers[SIGNATURE_HEADER] == sign_request(SECRET, timestamp, body)
        tampered = body.replace(b"042917", b"042918")
        assert sign_request(SECRET, timestamp, tampered) != headers[SIGNATURE_HEADER]
        assert sign_request(SECRET, str(int(timestamp) + 1), body) != headers[SIGNATURE_HEADER]

    async def test_connections_are_kept_alive(self, http_sender: HttpGatewaySender, gateway: Gateway) -> None:
        """Several codes go out over the pooled client without errors."""
        for _ in range(3):
            await _send(http_sender)
        assert len(gateway.requests) == 3

    @pytest.mark.parametrize("status", [500, 404, 302])
    async def test_non_2xx_is_send_failed(
        self, http_sender: HttpGatewaySender, gateway: Gateway, status: int
    ) -> None:
        """Any status outside 2xx (redirects included) fails the send, without the phone."""
        gateway.status = status
        with pytest.raises(SendFailed, match=f"HTTP {status}") as caught:
            await _send(http_sender)
        assert PHONE[3:] not in str(caught.value)

    async def test_timeout_is_send_failed(self, http_sender: HttpGatewaySender, gateway: Gateway) -> None:
        """A gateway slower than the timeout fails the send."""
        gateway.delay = 5.0
        started = time.monotonic()
        with pytest.raises(SendFailed, match="Timeout"):
            await _send(http_sender)
        assert time.monotonic() - started < 3

    async def test_connection_refused_is_send_failed(self, secret_env: str) -> None:
        """A gateway that is not listening fails the send, without the phone."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        sender = HttpGatewaySender({"url": f"http://127.0.0.1:{port}/sms", "secret_env": secret_env})
        try:
            with pytest.raises(SendFailed, match="ConnectError") as caught:
                await _send(sender)
        finally:
            await sender.aclose()
        assert PHONE[3:] not in str(caught.value)

    async def test_secret_from_a_file(self, gateway: Gateway, tmp_path: Path) -> None:
        """A secret file's trailing newline is not part of the key."""
        secret_file = tmp_path / "gateway.secret"
        secret_file.write_bytes(SECRET + b"\n")
        sender = HttpGatewaySender({"url": gateway.url, "secret_file": str(secret_file)})
        try:
            await _send(sender)
        finally:
            await sender.aclose()
        [(headers, body)] = gateway.requests
        assert headers[SIGNATURE_HEADER] == sign_request(SECRET, headers[TIMESTAMP_HEADER], body)

    def test_repr_hides_the_secret(self, secret_env: str) -> None:
        """Printing the sender shows the URL only."""
        sender = HttpGatewaySender({"url": "https://sms.example.com/send", "secret_env": secret_env})
        assert SECRET.decode() not in repr(sender)


class TestHttpGatewaySenderOptions:
    @pytest.mark.parametrize(
        ("options", "complaint"),
        [
            ({"secret_env": SECRET_ENV}, "'url' is required"),
            ({"url": "ftp://sms.example.com", "secret_env": SECRET_ENV}, "absolute http"),
            ({"url": "/relative", "secret_env": SECRET_ENV}, "absolute http"),
            ({"url": "http://sms.example.com/send", "secret_env": SECRET_ENV}, "must use https"),
            ({"url": "https://sms.example.com"}, "exactly one of"),
            (
                {"url": "https://sms.example.com", "secret_env": SECRET_ENV, "secret_file": "/x"},
                "exactly one",
            ),
            (
                {"url": "https://sms.example.com", "secret_env": "IDVERIFY_TEST_UNSET_VAR"},
                "at least 32 bytes",
            ),
            ({"url": "https://sms.example.com", "secret_file": "/nonexistent/secret"}, "cannot read"),
            ({"url": "https://sms.example.com", "secret_env": SECRET_ENV, "timeout_seconds": 0}, "timeout"),
            (
                {"url": "https://sms.example.com", "secret_env": SECRET_ENV, "timeout_seconds": True},
                "timeout",
            ),
            ({"url": "https://sms.example.com", "secret_env": SECRET_ENV, "max_connections": 0}, "max_conn"),
            ({"url": "https://sms.example.com", "secret_env": SECRET_ENV, "template": ""}, "template"),
            ({"url": "https://sms.example.com", "secret_env": SECRET_ENV, "ca_file": "/nonexistent"}, "CA"),
            ({"url": "https://sms.example.com", "secret_env": SECRET_ENV, "retries": 3}, "unknown options"),
        ],
    )
    def test_bad_options_are_config_errors(
        self, secret_env: str, options: dict[str, object], complaint: str
    ) -> None:
        """Each invalid option fails at start-up with a message naming it."""
        del secret_env
        with pytest.raises(ConfigError, match=complaint):
            HttpGatewaySender(options)

    def test_short_secret_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A secret shorter than 32 bytes is too weak for the gateway's HMAC."""
        monkeypatch.setenv(SECRET_ENV, "short")
        with pytest.raises(ConfigError, match=f"environment variable {SECRET_ENV} must hold"):
            HttpGatewaySender({"url": "https://sms.example.com", "secret_env": SECRET_ENV})

    async def test_plain_http_allowed_when_vouched_for(self, secret_env: str) -> None:
        """allow_plain_http lets an operator use an in-cluster gateway without TLS."""
        sender = HttpGatewaySender(
            {"url": "http://sms-gateway.internal/send", "secret_env": secret_env, "allow_plain_http": True}
        )
        await sender.aclose()

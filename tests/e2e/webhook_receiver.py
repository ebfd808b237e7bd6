"""A platform's webhook receiver for the e2e tests: every request checked by ``standardwebhooks``.

The stock Standard Webhooks library verifies each delivery (never the project's own signing
code); a request it refuses is kept apart, so a test sees it. ``mode`` makes the receiver
misbehave as real ones do: answer 500, hang past the timeout, or close the connection unanswered;
``delay`` makes it slow (it notes how many requests it held at once), and ``fail_account`` makes
it refuse one account's events with a 500 a number of times.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

HANG_SECONDS = 3.0


@dataclass(frozen=True)
class Delivery:
    """One verified delivery."""

    message_id: str
    headers: dict[str, str]
    body: bytes
    payload: dict[str, Any]
    received: float


class Receiver:
    """An HTTP receiver on a free loopback port, verifying with the subscription's secret."""

    def __init__(self, port: int = 0, secret: str = "") -> None:
        self.secret = secret
        self.mode = "ok"
        self.deliveries: list[Delivery] = []
        self.refused: list[tuple[dict[str, str], bytes, str]] = []
        self.requests = 0
        self.delay = 0.0
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail_account: dict[str, int] = {}
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.handle(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/idverify?x=1"

    def __enter__(self) -> Self:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests += 1
            mode = self.mode
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        ended = False

        def end() -> None:
            nonlocal ended
            with self._lock:
                if not ended:
                    ended = True
                    self.in_flight -= 1

        send_headers = handler.end_headers

        def end_headers() -> None:
            # The answer leaves with its headers, and the sender may send its next request as soon
            # as it reads them, before this thread gets back here: counted as ended from now, or
            # a sender that keeps to its concurrency would be seen one over it.
            end()
            send_headers()

        handler.end_headers = end_headers  # type: ignore[method-assign]
        try:
            self._answer(handler, headers, body, mode)
        finally:
            end()

    def _answer(
        self, handler: BaseHTTPRequestHandler, headers: dict[str, str], body: bytes, mode: str
    ) -> None:
        time.sleep(self.delay)
        account = event_json(body)["data"]["accountId"] if self.fail_account else ""
        with self._lock:
            if self.fail_account.get(account, 0) > 0:
                self.fail_account[account] -= 1
                self.failed.append(event_json(body)["data"]["cursor"])
                mode = "500"
        if mode == "hang":
            time.sleep(HANG_SECONDS)
            handler.close_connection = True
            return
        if mode == "close":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "500":
            handler.send_response(500)
            handler.send_header("content-length", "0")
            handler.end_headers()
            return
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as error:
            with self._lock:
                self.refused.append((headers, body, str(error)))
            handler.send_response(400)
            handler.send_header("content-length", "0")
            handler.end_headers()
            return
        with self._arrived:
            self.deliveries.append(Delivery(headers["webhook-id"], headers, body, payload, time.time()))
            self._arrived.notify_all()
        handler.send_response(204)
        handler.end_headers()

    def set_mode(self, mode: str) -> None:
        with self._lock:
            self.mode = mode

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> list[Delivery]:
        """Waits until ``predicate(deliveries)`` holds; the deliveries then."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not predicate(self.deliveries):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not delivered in time: {len(self.deliveries)} deliveries")
                self._arrived.wait(left)
            return list(self.deliveries)

    def events(self) -> list[dict[str, Any]]:
        """The events delivered, in arrival order."""
        with self._lock:
            return [d.payload["data"] for d in self.deliveries]


def event_json(body: bytes) -> dict[str, Any]:
    """A delivery's body, parsed."""
    parsed: dict[str, Any] = json.loads(body)
    return parsed

"""Webhooks: the server CPU they add per signup, and how soon an event reaches a receiver.

    .venv/bin/python bench/webhooks.py [--signups 200] [--rounds 3] [--events 30] [--concurrency 16] [--json]

CPU: each round starts one ``idverify serve --workers 1`` on a Redis of its own twice, without
and with a subscription to ALL event types (the two take turns, so both see the machine's drift
alike), drives the same number of real signups, waits until the receiver has every event of the
load (with the subscription), and reads the CPU seconds of the server's processes (supervisor and
worker, from /proc) before and after. The receiver runs in this process: its CPU is not counted.
The figure is the ratio with/without per round, its median and spread.

Latency: on an idle server with the subscription, one signup at a time with a pause between, the
time from each ``verification.verified`` event's state change (its time, taken from Redis's
clock by the step that made it) to the moment the receiver has it. The floor measured in the same
run is a plain POST from this process to the same receiver. Both servers run in development
mode, where a plain-http loopback receiver is allowed (with allow_private_destinations).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import httpx
import redis

from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary
from idverify.v1 import admin_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import print_figures, ratio_spread, side_by_side
from verify import BENCH_CONFIG, CodeReader, drive, install_bench_sender

CONCURRENCY = 16
WEBHOOKS_CONFIG = """
[webhooks]
allow_private_destinations = true
"""
# Both servers: on a machine loaded by others' suites a signup waited past the default 15 s and
# the run died; the bench's client allows 30.
LOADED_MACHINE_CONFIG = """
[grpc]
rpc_timeout_seconds = 30
"""
OUTBOX = "iv1:{t:default}:events:outbox"


class Receiver:
    """Answers 204 to every POST and notes when each event arrived (verification is the tests')."""

    def __init__(self) -> None:
        self.arrivals: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                arrived = time.time()
                if body != b"{}":
                    data = json.loads(body)["data"]
                    with receiver._lock:
                        receiver.arrivals.setdefault(data["cursor"], (arrived, data))
                self.send_response(204)
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Self:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def has(self, cursor: str) -> bool:
        """Whether the event with this cursor arrived."""
        with self._lock:
            return cursor in self.arrivals


def subscribe(server: ServerProcess, url: str) -> None:
    with server.client("admin") as admin:
        admin.admin.CreateWebhook(admin_pb2.CreateWebhookRequest(url=url))


def newest_cursor(store: redis.Redis) -> str:
    newest: Any = store.xrevrange(OUTBOX, count=1)
    return bytes(newest[0][0]).decode() if newest else ""


def wait_delivered(receiver: Receiver, store: redis.Redis, timeout: float = 300.0) -> None:
    cursor = newest_cursor(store)
    deadline = time.monotonic() + timeout
    while cursor and not receiver.has(cursor):
        if time.monotonic() > deadline:
            raise TimeoutError(f"event {cursor} not delivered in {timeout:.0f} s")
        time.sleep(0.01)


def start_server(root: Path, store: RedisProcess, *, hooked: bool) -> ServerProcess:
    install_bench_sender(root / "site")
    config = BENCH_CONFIG.format(codes=root / "codes.txt") + LOADED_MACHINE_CONFIG
    config += WEBHOOKS_CONFIG if hooked else ""
    server = ServerProcess(
        root / "server",
        config=config,
        redis_url=store.url,
        extra_args=["--workers", "1"],
        env={"PYTHONPATH": str(root / "site"), "BENCH_CODE_SENDER_ACK": "codes-leave-the-server"},
    )
    server.start()
    return server


def cpu_round(root: Path, signups: range, *, hooked: bool, concurrency: int = CONCURRENCY) -> float:
    """CPU milliseconds per signup of one server, with or without a subscription to every event."""
    with (
        RedisProcess(
            root / "redis", port=free_port(), binary=redis_server_binary(prefer_system=True)
        ) as store,
        Receiver() as receiver,
    ):
        server = start_server(root, store, hooked=hooked)
        try:
            if hooked:
                subscribe(server, receiver.url)
            codes = CodeReader(root / "codes.txt")
            token = server.token("registrar")
            asyncio.run(drive(server.target, token, codes, range(10**6, 10**6 + 30), min(8, concurrency)))
            direct = redis.Redis.from_url(store.url)
            if hooked:
                wait_delivered(receiver, direct)
            server.wait_quiet()
            before = server.cpu_seconds()
            asyncio.run(drive(server.target, token, codes, signups, concurrency))
            if hooked:
                wait_delivered(receiver, direct)
            used = server.cpu_seconds() - before
            direct.close()
        finally:
            server.stop()
    return 1000 * used / len(signups)


def latency_run(root: Path, events: int) -> tuple[list[float], list[float]]:
    """Milliseconds from each verification.verified's state change to its arrival; and the floor."""
    with (
        RedisProcess(
            root / "redis", port=free_port(), binary=redis_server_binary(prefer_system=True)
        ) as store,
        Receiver() as receiver,
    ):
        server = start_server(root, store, hooked=True)
        try:
            subscribe(server, receiver.url)
            codes = CodeReader(root / "codes.txt")
            token = server.token("registrar")
            asyncio.run(drive(server.target, token, codes, range(10**6, 10**6 + 10), 4))
            server.wait_quiet()
            direct = redis.Redis.from_url(store.url)
            for n in range(events):
                asyncio.run(drive(server.target, token, codes, range(2 * 10**6 + n, 2 * 10**6 + n + 1), 1))
                wait_delivered(receiver, direct, 30)
                time.sleep(0.3)  # idle again between events
            direct.close()
            lags = []
            for arrived, data in receiver.arrivals.values():
                if (
                    data["type"] == "verification.verified"
                    and int(data["accountId"].split("-")[-1]) >= 2 * 10**6
                ):
                    changed = datetime.fromisoformat(data["time"]).timestamp()
                    lags.append(1000 * (arrived - changed))
            floor = []
            with httpx.Client() as client:
                for _ in range(events):
                    began = time.perf_counter()
                    client.post(receiver.url, content=b"{}")
                    floor.append(1000 * (time.perf_counter() - began))
        finally:
            server.stop()
    return lags, floor


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--signups", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=30, help="signups timed one at a time for the latency")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=CONCURRENCY,
        help="signups in flight (fewer on a loaded machine, where 16 outlast their deadline)",
    )
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="idverify-webhooks-") as scratch:

        def measure(turn: int, name: str) -> float:
            signups = range(turn * 100_000, turn * 100_000 + options.signups)
            root = Path(scratch) / f"{name}-{turn}"
            return cpu_round(root, signups, hooked=name == "with", concurrency=options.concurrency)

        figures = side_by_side(options.rounds, ("without", "with"), measure)
        lags, floor = latency_run(Path(scratch) / "latency", options.events)
    lags.sort()
    result = {
        "signups_per_round": options.signups,
        "concurrency": options.concurrency,
        "rounds": options.rounds,
        "without_ms_per_signup": [round(v, 2) for v in figures["without"]],
        "with_ms_per_signup": [round(v, 2) for v in figures["with"]],
        **ratio_spread("cpu_ratio", figures["with"], figures["without"]),
        "latency_events": len(lags),
        "latency_ms_median": round(statistics.median(lags), 1),
        "latency_ms_p10": round(lags[len(lags) // 10], 1),
        "latency_ms_p90": round(lags[(len(lags) * 9) // 10], 1),
        "floor_post_ms_median": round(statistics.median(floor), 2),
        "latency_over_floor": round(statistics.median(lags) / statistics.median(floor), 1),
    }
    print_figures(result, as_json=options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

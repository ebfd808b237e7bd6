"""CPU per webhook POST: the delivery's own client (``http_client.Poster``) beside aiohttp's.

    .venv/bin/python bench/webhook_post.py [--posts 2000] [--rounds 3] [--json]

The receiver (``bench/webhooks.py``'s, answering 204 over kept-alive HTTP/1.1) runs in a child
process, so this process's CPU time (``time.process_time``: user and system, the socket's
system calls included) is the client's alone. Each round posts the same signed-size body with
each client in turn, on one kept-alive connection, one request at a time as a subscription of
concurrency 1 does; aiohttp is used as the delivery used it (a session with a connector, a
``ClientTimeout`` and a header dict per request, the body unread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from idverify.webhooks.destinations import Destination
from idverify.webhooks.http_client import Poster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import print_figures, side_by_side

BODY = json.dumps({"type": "verification.verified", "data": {"cursor": "1-0", "pad": "x" * 400}}).encode()
RECEIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from webhooks import Receiver
with Receiver() as receiver:
    print(receiver.url, flush=True)
    sys.stdin.read()
"""


async def with_poster(url: str, posts: int) -> None:
    port = int(url.split(":")[2].split("/", maxsplit=1)[0])
    destination = Destination(url, "http", "127.0.0.1", port, "/hook", "127.0.0.1")
    poster = Poster(keep=4)
    for n in range(posts):
        headers = f"webhook-id: wh_{n}\r\nwebhook-timestamp: 1\r\nwebhook-signature: v1,x\r\n".encode()
        await poster.post(destination, headers, BODY, 10)
    poster.close()


async def with_aiohttp(url: str, posts: int) -> None:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=4, use_dns_cache=False),
        trust_env=False,
        auto_decompress=False,
        headers={"user-agent": "idverify-webhooks"},
    ) as session:
        for n in range(posts):
            headers = {
                "host": url.split("/")[2],
                "content-type": "application/json",
                "webhook-id": f"wh_{n}",
                "webhook-timestamp": "1",
                "webhook-signature": "v1,x",
            }
            async with session.post(
                url,
                data=BODY,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                _ = response.status


def cpu_per_post(client: Callable[[str, int], Coroutine[Any, Any, None]], url: str, posts: int) -> float:
    """Microseconds of this process's CPU per POST (after a warm-up of a tenth as many)."""
    asyncio.run(client(url, max(posts // 10, 1)))
    began = time.process_time()
    asyncio.run(client(url, posts))
    return 1e6 * (time.process_time() - began) / posts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(Path(__file__).resolve().parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None  # noqa: S101 - piped above
        url = receiver.stdout.readline().strip()
        clients = {"poster": with_poster, "aiohttp": with_aiohttp}
        figures = side_by_side(
            options.rounds,
            tuple(clients),
            lambda _turn, name: cpu_per_post(clients[name], url, options.posts),
        )
    finally:
        receiver.kill()
        receiver.wait()
    result = {
        "posts_per_round": options.posts,
        "poster_us_per_post": [round(v, 1) for v in figures["poster"]],
        "aiohttp_us_per_post": [round(v, 1) for v in figures["aiohttp"]],
        "ratio_median": round(
            statistics.median(p / a for p, a in zip(figures["poster"], figures["aiohttp"], strict=True)), 3
        ),
    }
    print_figures(result, as_json=options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The callback endpoint's own defences, before any verification is looked up (no flow needed).

A stranger on the network: idle or half-sent connections are closed after ``timeout_seconds``,
one address is cut off after ``per_source_per_minute``, and tokens are bound to tenant and id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from idverify.callbacks.links import CallbackLinks
from idverify.callbacks.server import start_callbacks
from idverify.config import load_settings
from idverify.console.server import RunningSite
from idverify.privacy.keyring import Keyring

ENV = {
    "IDVERIFY_CALLBACKS__LISTEN": "127.0.0.1:0",
    "IDVERIFY_CALLBACKS__PUBLIC_URL": "https://idv.example/cb",
    "IDVERIFY_CALLBACKS__TIMEOUT_SECONDS": "1",
    "IDVERIFY_CALLBACKS__PER_SOURCE_PER_MINUTE": "5",
}
ID = "0" * 32


@pytest.fixture
def links() -> CallbackLinks:
    return CallbackLinks("https://idv.example/cb", Keyring.generate())


@pytest.fixture
async def endpoint(links: CallbackLinks) -> AsyncIterator[RunningSite]:
    # No flow: every request here must be refused before a verification would be read.
    running = await start_callbacks(load_settings(environ=ENV), None, links)  # type: ignore[arg-type]
    yield running
    await running.stop()


def test_tokens_are_bound_to_tenant_and_verification(links: CallbackLinks) -> None:
    token = links.token("acme", ID)
    assert links.genuine("acme", ID, token)
    assert not links.genuine("other", ID, token)
    assert not links.genuine("acme", "1" * 32, token)
    assert not links.genuine("acme", ID, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not links.genuine("acme", ID, "")
    assert links.url("alibaba", "acme", ID) == f"https://idv.example/cb/alibaba/acme/{ID}"


async def test_a_half_sent_request_is_closed_after_the_timeout(endpoint: RunningSite) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(b"GET /cb/alibaba/acme/" + ID.encode() + b" HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    began = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 10) == b""
    assert time.monotonic() - began < 5
    writer.close()


async def test_forged_and_malformed_then_a_flood_is_cut_off(
    endpoint: RunningSite, links: CallbackLinks
) -> None:
    base = f"http://127.0.0.1:{endpoint.port}/cb/alibaba"
    async with httpx.AsyncClient() as client:
        forged = await client.get(f"{base}/acme/{ID}", params={"certifyId": "c", "callbackToken": "A" * 43})
        assert forged.status_code == 403
        foreign = await client.get(
            f"{base}/other/{ID}", params={"certifyId": "c", "callbackToken": links.token("acme", ID)}
        )
        assert foreign.status_code == 403
        malformed = await client.get(
            f"{base}/acme/{ID}", params={"certifyId": "c" * 500, "callbackToken": "t"}
        )
        assert malformed.status_code == 400
        statuses = [(await client.get(f"{base}/acme/{ID}")).status_code for _ in range(5)]
        assert 429 in statuses
        assert int((await client.get(f"{base}/acme/{ID}")).headers["Retry-After"]) >= 1

"""The delivery's own HTTP/1.1 POST, checked against aiohttp's server (a parser it did not write).

What aiohttp's server reads must be what aiohttp's client sent before (path, Host, headers and
body); connections are kept only when the answer allows it; a kept connection the receiver
closed is replaced; a hang, a close without an answer and a non-HTTP answer are failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Self

import pytest
import yarl
from aiohttp import web

from idverify.webhooks.destinations import Destination
from idverify.webhooks.http_client import Poster, PostError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EVENT_HEADERS = b"webhook-id: wh_1_1-0\r\nwebhook-timestamp: 1700000000\r\nwebhook-signature: v1,c2ln\r\n"


class Receiver:
    """An aiohttp server noting each request's head, body and connection (by its client port)."""

    def __init__(self, handler: Handler | None = None, keepalive: float = 75.0) -> None:
        self.requests: list[tuple[web.Request, bytes, int]] = []
        self._handler = handler
        self._keepalive = keepalive
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append((request, body, peer[1] if peer else 0))
        if self._handler is not None:
            return await self._handler(request)
        return web.Response(status=204)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, keepalive_timeout=self._keepalive, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def destination(self, path: str = "/hooks/idverify?x=1", host: str = "receiver.example") -> Destination:
        url = f"http://{host}:{self.port}{path}"
        return Destination(url, "http", host, self.port, path, "127.0.0.1")

    def connections(self) -> int:
        return len({port for _, _, port in self.requests})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running:
        yield running


async def test_aiohttps_server_reads_the_request_as_sent(receiver: Receiver) -> None:
    poster = Poster(keep=4)
    status = await poster.post(receiver.destination(), EVENT_HEADERS, b'{"type":"x"}', 5)
    poster.close()
    assert status == 204
    ((request, body, _),) = receiver.requests
    assert (request.method, request.version, request.raw_path) == ("POST", (1, 1), "/hooks/idverify?x=1")
    assert request.host == f"receiver.example:{receiver.port}"
    assert request.content_type == "application/json"
    assert request.headers["webhook-id"] == "wh_1_1-0"
    assert request.headers["webhook-timestamp"] == "1700000000"
    assert request.headers["webhook-signature"] == "v1,c2ln"
    assert request.headers["user-agent"] == "idverify-webhooks"
    assert body == b'{"type":"x"}'


async def test_a_path_and_host_are_encoded_as_aiohttp_encodes_them(receiver: Receiver) -> None:
    poster = Poster(keep=4)
    destination = receiver.destination("/événements/a b?q=ü", host="bücher.example")
    await poster.post(destination, EVENT_HEADERS, b"{}", 5)
    poster.close()
    ((request, _, _),) = receiver.requests
    expected = yarl.URL(destination.url)
    assert request.raw_path == expected.raw_path_qs
    assert request.host == f"{expected.raw_host}:{receiver.port}"


async def test_one_connection_carries_request_after_request(receiver: Receiver) -> None:
    poster = Poster(keep=4)
    for _ in range(5):
        assert await poster.post(receiver.destination(), EVENT_HEADERS, b"{}", 5) == 204
    poster.close()
    assert len(receiver.requests) == 5
    assert receiver.connections() == 1


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        (lambda: web.Response(status=200, text="ok"), True),  # a short body is read
        (lambda: web.Response(status=500, body=b"x" * 10_000), False),  # a long one is not
        (lambda: web.Response(status=200, headers={"Connection": "close"}), False),
    ],
    ids=["short-body", "long-body", "connection-close"],
)
async def test_a_connection_is_kept_only_when_the_answer_allows_it(
    answer: Callable[[], web.Response], kept: bool
) -> None:
    async def handler(_: web.Request) -> web.Response:
        return answer()

    async with Receiver(handler) as running:
        poster = Poster(keep=4)
        statuses = [await poster.post(running.destination(), EVENT_HEADERS, b"{}", 5) for _ in range(3)]
        poster.close()
    assert statuses == [answer().status] * 3
    assert running.connections() == (1 if kept else 3)


async def test_a_chunked_answer_closes_the_connection() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=202)
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"accepted")
        await response.write_eof()
        return response

    async with Receiver(handler) as running:
        poster = Poster(keep=4)
        statuses = [await poster.post(running.destination(), EVENT_HEADERS, b"{}", 5) for _ in range(2)]
        poster.close()
    assert statuses == [202, 202]
    assert running.connections() == 2


async def test_a_kept_connection_the_receiver_closed_is_replaced() -> None:
    async with Receiver(keepalive=0.05) as running:
        poster = Poster(keep=4)
        assert await poster.post(running.destination(), EVENT_HEADERS, b"{}", 5) == 204
        await asyncio.sleep(1.0)  # the server closes the idle connection
        assert await poster.post(running.destination(), EVENT_HEADERS, b"{}", 5) == 204
        poster.close()
    assert len(running.requests) == 2
    assert running.connections() == 2


async def raw_server(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> asyncio.Server:
    return await asyncio.start_server(answer, "127.0.0.1", 0)


async def settled(server: asyncio.Server) -> None:
    """Closes the server once its handlers saw the client's close."""
    await asyncio.sleep(0.1)
    server.close()
    await server.wait_closed()


def destination_of(server: asyncio.Server) -> Destination:
    port = server.sockets[0].getsockname()[1]
    return Destination(f"http://127.0.0.1:{port}/", "http", "127.0.0.1", port, "/", "127.0.0.1")


async def test_a_hang_is_a_timeout_a_silent_close_or_a_non_http_answer_a_connection_error() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # no answer, until the client gives up and closes
        writer.close()

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    poster = Poster(keep=4)
    for answer, code in ((hang, "timeout"), (close, "connection"), (garbage, "connection")):
        server = await raw_server(answer)
        with pytest.raises(PostError) as failed:
            await poster.post(destination_of(server), EVENT_HEADERS, b"{}", 0.3)
        assert failed.value.code == code
        await settled(server)
    poster.close()


async def test_an_interim_answer_is_skipped_and_http_1_0_is_not_kept() -> None:
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 201 Created\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    server = await raw_server(answer)
    poster = Poster(keep=4)
    assert [await poster.post(destination_of(server), EVENT_HEADERS, b"{}", 2) for _ in range(2)] == [
        201,
        201,
    ]
    poster.close()
    await settled(server)
    assert connections == 2


async def test_a_kept_connection_closed_as_the_request_went_out_is_tried_once_on_a_new_one() -> None:
    # The race the idle check cannot see: the receiver closes the kept connection just as the
    # next request is written, with no answer; the request goes again on a new connection.
    connections = 0
    requests = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections, requests
        connections += 1
        first = connections == 1
        for _ in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            requests += 1
            if first and requests == 2:  # the second request, on the kept connection
                break
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await raw_server(answer)
    poster = Poster(keep=4)
    statuses = [await poster.post(destination_of(server), EVENT_HEADERS, b"{}", 2) for _ in range(2)]
    poster.close()
    await settled(server)
    assert statuses == [204, 204]
    assert (connections, requests) == (2, 3)

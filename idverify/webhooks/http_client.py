"""The HTTP/1.1 POST a webhook delivery makes, on asyncio streams, with kept-alive connections.

Written for the one request delivery needs rather than taken from aiohttp: aiohttp's client
cost the worker about twice the CPU per POST (docs/PERFORMANCE.md, "Code written by hand in
place of a library"), and a signup with every event type subscribed makes about six POSTs.
``tests/unit/webhooks/test_http_client.py`` checks it against aiohttp's server.

What it does, and no more:

* one request per connection at a time; a connection is kept for the next request to the same
  checked address only when the answer allows it (HTTP/1.1, no ``Connection: close``, a body of
  a known small length, which is read, or none) and while it is younger than
  :data:`KEEP_ALIVE_SECONDS` idle; any other answer's connection is closed, its body unread, so
  a receiver cannot make the worker hold much;
* a kept connection the receiver closed meanwhile (it found no answer at all) is replaced by a
  new one once, within the same deadline: the event is sent again at most once more, which
  at-least-once delivery allows;
* the connection goes to the address the caller checked (``Destination.address``); the host
  named in the URL stays the ``Host`` header and the TLS server name, whose certificate is
  verified against the system's roots.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections import deque
from typing import Final

import yarl

from idverify.webhooks.destinations import Destination

__all__ = ["KEEP_ALIVE_SECONDS", "PostError", "Poster"]

KEEP_ALIVE_SECONDS: Final = 15.0  # aiohttp's default; receivers often close idle ones sooner
MAX_HEAD_BYTES: Final = 64 * 1024  # status line and headers of an answer
MAX_KEPT_BODY_BYTES: Final = 4096  # a longer answer's body is not read: its connection is closed
_MAX_INTERIM: Final = 8  # 1xx answers (100 Continue, 103 Early Hints) before the final one


class PostError(Exception):
    """A POST that got no usable answer: ``code`` is ``timeout`` or ``connection``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _Stale(Exception):
    """A kept connection found closed before any answer: worth one new connection."""


@functools.lru_cache(maxsize=256)
def _request_head(url: str, host: str, port: int, scheme: str) -> bytes:
    """The fixed start of every request to ``url``: request line, Host, and the fixed headers.

    Kept per URL; yarl encodes the path and the host as aiohttp would (percent-encoding, IDNA).
    """
    parsed = yarl.URL(url)
    raw_host = yarl.URL.build(scheme=scheme, host=host).raw_host or host
    if ":" in raw_host:
        raw_host = f"[{raw_host}]"
    default_port = 443 if scheme == "https" else 80
    authority = raw_host if port == default_port else f"{raw_host}:{port}"
    return (
        f"POST {parsed.raw_path_qs or '/'} HTTP/1.1\r\n"
        f"Host: {authority}\r\n"
        "User-Agent: idverify-webhooks\r\n"
        "Content-Type: application/json\r\n"
    ).encode("ascii")


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        return (
            now - self.idle_since < KEEP_ALIVE_SECONDS
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()


class Poster:
    """POSTs deliveries, keeping up to ``keep`` idle connections per checked address."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._idle: dict[tuple[str, str, int, str], deque[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def post(self, destination: Destination, headers: bytes, body: bytes, seconds: float) -> int:
        """POSTs ``body`` with the extra header lines ``headers`` (each ending in CRLF); the status.

        Raises:
            PostError: no answer within ``seconds``, or the connection failed or
                answered something that is not HTTP/1.x.
        """
        head = _request_head(destination.url, destination.host, destination.port, destination.scheme)
        request = b"".join((head, b"Content-Length: %d\r\n" % len(body), headers, b"\r\n", body))
        key = (destination.scheme, destination.address, destination.port, destination.host)
        try:
            async with asyncio.timeout(seconds):
                connection = self._kept(key)
                if connection is not None:
                    try:
                        return await self._exchange(key, connection, request)
                    except _Stale:
                        pass
                return await self._exchange(key, await self._connect(destination), request)
        except TimeoutError:
            raise PostError("timeout") from None
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError, _Stale) as error:
            raise PostError("connection") from error

    def close(self) -> None:
        """Closes the kept connections."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    def _kept(self, key: tuple[str, str, int, str]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the likeliest to be still open
            if connection.usable(now):
                return connection
            connection.close()
        return None

    async def _connect(self, destination: Destination) -> _Connection:
        tls: ssl.SSLContext | None = None
        if destination.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        reader, writer = await asyncio.open_connection(
            destination.address,
            destination.port,
            ssl=tls,
            server_hostname=destination.host if tls is not None else None,
            limit=MAX_HEAD_BYTES,
        )
        return _Connection(reader, writer)

    async def _exchange(self, key: tuple[str, str, int, str], connection: _Connection, request: bytes) -> int:
        """Sends the request and reads the answer's head; keeps the connection when it may."""
        kept = False
        try:
            connection.writer.write(request)
            status, reusable = await self._answer(connection)
            if reusable:
                connection.idle_since = time.monotonic()
                idle = self._idle.setdefault(key, deque())
                if len(idle) < self._keep:
                    idle.append(connection)
                    kept = True
            return status
        finally:
            if not kept:
                connection.close()

    @staticmethod
    async def _answer(connection: _Connection) -> tuple[int, bool]:
        """The final answer's status, and whether the connection may carry another request."""
        reader = connection.reader
        for _ in range(_MAX_INTERIM):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as error:
                if not error.partial and connection.idle_since:
                    raise _Stale from error  # a kept connection closed before any answer
                raise
            except ConnectionResetError as error:
                if connection.idle_since:
                    raise _Stale from error
                raise
            connection.idle_since = 0.0  # an answer began: no second try on a new connection
            lines = head.split(b"\r\n")
            version, _, rest = lines[0].partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():  # noqa: PLR2004
                raise ValueError("not an HTTP/1.x answer")
            status = int(code)
            if 100 <= status < 200:  # noqa: PLR2004 - interim: the final answer follows
                continue
            return status, await _after_head(reader, version, status, lines[1:])
        raise ValueError("too many interim answers")


async def _after_head(reader: asyncio.StreamReader, version: bytes, status: int, lines: list[bytes]) -> bool:
    """Reads a small body of known length; whether the connection may be used again."""
    length: int | None = None
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"connection" and b"close" in value.lower():
            return False
        if name == b"transfer-encoding":
            return False  # chunked (or worse): not read
        if name == b"content-length":
            length = int(value.strip())
    if version != b"HTTP/1.1":
        return False  # HTTP/1.0 closes unless asked otherwise; not worth asking
    if status in {204, 304}:
        return True
    if length is None or length > MAX_KEPT_BODY_BYTES or length < 0:
        return False
    if length:
        await reader.readexactly(length)
    return True

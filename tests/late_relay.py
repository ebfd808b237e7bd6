"""A TCP relay in front of a real redis-server that can make the replies of one connection late.

Commands reach Redis at once and run there; only the replies are held back, as when Redis has
run a step and then the link, or Redis itself, stalls before the reply is read. The client sees
a timeout for a step that was applied: the case in which a retry could apply it twice.

``late_after(marker, seconds)`` makes late the replies of the connection that next carries a
command containing ``marker`` (a script's SHA, say), from that command on; ``on_time()`` ends
it. The relay runs its own event loop in a thread, so synchronous and asynchronous tests alike
can use it. It counts the commands carrying each marker it was given, so that a test can tell
how often a step reached Redis.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable


class _Link:
    """One client's connection through the relay, and how late its replies are now."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.delay = 0.0

    def abort(self) -> None:
        self.client.transport.abort()
        self.upstream.transport.abort()

    async def replies(self, source: asyncio.StreamReader) -> None:
        # Replies keep their order: one held back holds back those behind it.
        while chunk := await source.read(65536):
            if self.delay:
                await asyncio.sleep(self.delay)
            self.client.write(chunk)
            await self.client.drain()
        self.client.close()


class LateRelay:
    """Forwards loopback TCP to ``127.0.0.1:target_port``; see the module docstring."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._marker = b""
        self._delay = 0.0
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0
        self.seen: Counter[bytes] = Counter()

    def start(self) -> int:
        """Starts relaying and returns the relay's port."""
        self._thread.start()
        opened = asyncio.start_server(self._relay, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(opened, self._loop).result()
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def late_after(self, marker: bytes, seconds: float) -> None:
        """Holds back by ``seconds`` each reply of the connection that next sends ``marker``."""

        def arm() -> None:
            self._marker, self._delay = marker, seconds
            self.seen[marker] += 0

        self._in_loop(arm)

    def on_time(self) -> None:
        """Replies go through at once again (those already held keep their delay)."""

        def disarm() -> None:
            self._marker = b""
            for link in self._links:
                link.delay = 0.0

        self._in_loop(disarm)

    def _in_loop(self, change: Callable[[], None]) -> None:
        """Runs a change of state in the relay's thread, and returns once it is made."""

        async def run() -> None:
            change()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def close(self) -> None:
        """Drops every connection and stops the relay."""

        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for link in list(self._links):
                link.abort()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, upstream_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._commands(link, reader, upstream_writer),
                link.replies(upstream_reader),
                return_exceptions=True,
            )
        finally:
            self._links.discard(link)
            link.abort()

    async def _commands(self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while chunk := await source.read(65536):
            for marker in self.seen:
                self.seen[marker] += chunk.count(marker)
            if self._marker and self._marker in chunk:
                self._marker, link.delay = b"", self._delay
            sink.write(chunk)
            await sink.drain()
        sink.close()

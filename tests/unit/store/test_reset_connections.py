"""A pooled connection that Redis dropped while it sat idle is replaced, not handed out.

``kill -9`` of a busy Redis makes the kernel answer with RST instead of FIN; redis-py notices a
FIN it has read on a pooled connection but not a reset, so the first command after Redis came
back failed once per stale connection. A load balancer or NAT that forgets an idle connection
is found out only when the next command is sent. A relay in front of the real server does both
on demand.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from idverify.store import topology
from idverify.store.connection import connect
from idverify.testing import RedisProcess


class ResettingRelay:
    """Forwards loopback TCP to Redis and can drop every client connection with a reset."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._client_sides: list[asyncio.StreamWriter] = []
        self._upstreams: list[asyncio.StreamWriter] = []
        self._forgotten: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def reset_all(self) -> None:
        for writer in self._client_sides:
            linger_zero = struct.pack("ii", 1, 0)
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_zero)
            writer.transport.abort()
        self._client_sides.clear()
        await asyncio.sleep(0.1)  # lets the client's loop read the reset

    def forget_all(self) -> None:
        """Drops the upstream side and hangs up on each client only when it next speaks."""
        for writer in self._upstreams:
            writer.transport.abort()
        self._forgotten.update(self._client_sides)
        self._client_sides.clear()

    async def close(self) -> None:
        for writer in self._client_sides + self._upstreams:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._client_sides.append(writer)
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._upstreams.append(upstream_writer)
        await asyncio.gather(
            self._pipe(reader, upstream_writer, client_side=writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )
        upstream_writer.transport.abort()

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        client_side: asyncio.StreamWriter | None = None,
    ) -> None:
        while chunk := await source.read(65536):
            if client_side in self._forgotten:
                assert client_side is not None
                client_side.close()
                return
            sink.write(chunk)
            await sink.drain()
        sink.close()


async def test_a_reset_idle_connection_is_replaced_before_the_next_command(
    redis_server: RedisProcess,
) -> None:
    relay = ResettingRelay(redis_server.port)
    relay_port = await relay.start()
    client = connect(f"redis://127.0.0.1:{relay_port}", pool_size=4)
    try:
        await asyncio.gather(*(client.ping() for _ in range(4)))  # fills the pool

        await relay.reset_all()

        assert await asyncio.gather(*(client.ping() for _ in range(4))) == [True] * 4
    finally:
        await client.aclose()
        await relay.close()


async def test_an_idle_connection_is_probed_before_it_carries_a_command(
    redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(topology, "IDLE_PROBE_SECONDS", 0.05)
    relay = ResettingRelay(redis_server.port)
    relay_port = await relay.start()
    client = connect(f"redis://127.0.0.1:{relay_port}", pool_size=4)
    try:
        await asyncio.gather(*(client.ping() for _ in range(4)))

        relay.forget_all()
        await asyncio.sleep(0.1)

        assert await asyncio.gather(*(client.ping() for _ in range(4))) == [True] * 4
    finally:
        await client.aclose()
        await relay.close()

"""Commands are packed by hiredis on pooled connections, byte for byte as redis-py packs them."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import AbstractConnection, Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from idverify.store.topology import open_client, parse_redis_url
from idverify.testing import RedisProcess

COMMANDS = [
    ("EVALSHA", "a" * 40, 2, "iv1:{t:x}:acct:1", b"iv1:{t:x}:acct:2", "ip_display", "中文", b"\x00\xff"),
    ("SET", "k", 1.5),
    ("SET", "k", -(10**20)),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", b"idverify"),
    ("SET", "k", memoryview(b"view")),
]


def pooled_connection_class(url: str = "redis://127.0.0.1:1") -> type[AbstractConnection]:
    """The class of the connections our client's pool opens (nothing is connected here)."""
    pool = open_client(parse_redis_url(url), pool_size=1).connection_pool
    return pool.connection_class  # type: ignore[no-any-return]


class TestHiredisPacking:
    @pytest.mark.parametrize("command", COMMANDS)
    def test_same_bytes_as_redis_py(self, command: tuple[object, ...]) -> None:
        """Mixed str, bytes, numbers, views and two-word commands give redis-py's own bytes."""
        packed = pooled_connection_class()().pack_command(*command)
        assert b"".join(packed) == b"".join(Connection().pack_command(*command))

    def test_a_value_redis_py_refuses_is_refused_alike(self) -> None:
        """A bool is a DataError, as with redis-py's packer."""
        for connection in (pooled_connection_class()(), Connection()):
            with pytest.raises(DataError):
                connection.pack_command("SET", "k", True)  # noqa: FBT003 - the refused value

    async def test_commands_round_trip(self, redis_server: RedisProcess) -> None:
        """Values written through the hiredis-packed connection read back unchanged."""
        client = open_client(parse_redis_url(f"redis://127.0.0.1:{redis_server.port}"), pool_size=2)
        stored = {b"a": "中文".encode(), b"b": b"\x00\r\n\xff", b"c": b"7"}
        try:
            await client.hset("packing:h", mapping={"a": "中文", "b": b"\x00\r\n\xff", "c": 7})
            assert await client.hgetall("packing:h") == stored
        finally:
            await client.aclose()

    def test_unix_socket_connections_pack_alike(self) -> None:
        """The embedded default's Unix-socket connections get the same packer."""
        packing = pooled_connection_class("unix:///tmp/idverify-none.sock")
        assert issubclass(packing, UnixDomainSocketConnection)
        assert packing is not UnixDomainSocketConnection

"""One pipelined connection shared by concurrent callers, against a real redis-server.

Each caller must get its own reply whatever the others do: fail, give up waiting, or lose the
connection under them. A lost, stalled or demoted connection is replaced by the next command.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis import exceptions as redis_errors

from idverify.flows.read_accounting import read_spec
from idverify.store.connection import RedisClient, connect
from idverify.store.scripts import Scripts, hash_fields
from idverify.store.shared_connection import SharedConnection
from idverify.testing import RedisProcess, free_port, redis_server_binary
from tests.e2e.test_tls import Authority
from tests.unit.store.test_reset_connections import ResettingRelay


@pytest.fixture
async def redis(redis_server: RedisProcess) -> AsyncIterator[RedisClient]:
    client = connect(redis_server.url, pool_size=4)
    yield client
    await client.aclose()


@pytest.fixture
async def shared(redis: RedisClient) -> AsyncIterator[SharedConnection]:
    connection = SharedConnection(redis.connection_pool, command_timeout=3.0)
    yield connection
    await connection.aclose()


async def client_ids(redis: RedisClient) -> set[int]:
    listing = await redis.execute_command("CLIENT", "LIST")
    text = listing.decode() if isinstance(listing, bytes) else str(listing)
    return {
        int(field.split("=")[1])
        for line in text.splitlines()
        for field in line.split()
        if field.startswith("id=")
    }


class TestReplies:
    async def test_each_of_many_concurrent_callers_gets_its_own_reply(self, shared: SharedConnection) -> None:
        replies = await asyncio.gather(*(shared.execute("ECHO", f"caller-{n}") for n in range(500)))

        assert replies == [f"caller-{n}".encode() for n in range(500)]

    async def test_an_error_reply_fails_only_its_own_caller(
        self, shared: SharedConnection, redis: RedisClient
    ) -> None:
        await redis.set("shared:not-a-number", "text")

        before, failed, after = await asyncio.gather(
            shared.execute("ECHO", "before"),
            shared.execute("INCR", "shared:not-a-number"),
            shared.execute("ECHO", "after"),
            return_exceptions=True,
        )

        assert (before, after) == (b"before", b"after")
        assert isinstance(failed, redis_errors.ResponseError)
        assert "not an integer" in str(failed)

    async def test_a_caller_that_gives_up_does_not_shift_the_replies_of_the_others(
        self, shared: SharedConnection
    ) -> None:
        blocked = asyncio.create_task(shared.execute("BLPOP", "shared:empty-list", "0.3"))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(shared.execute("ECHO", "queued"))
        await asyncio.sleep(0.05)

        blocked.cancel()

        assert await queued == b"queued"
        assert await shared.execute("ECHO", "later") == b"later"

    async def test_one_connection_carries_everything(
        self, shared: SharedConnection, redis: RedisClient
    ) -> None:
        before = await client_ids(redis)

        await asyncio.gather(*(shared.execute("PING") for _ in range(100)))

        assert len(await client_ids(redis) - before) == 1


class TestCommandsSentTogether:
    async def test_replies_come_back_in_order_among_other_callers(self, shared: SharedConnection) -> None:
        """Commands sent together get their own replies, in order, whatever other callers send meanwhile."""
        together, *alone = await asyncio.gather(
            shared.execute_many([["ECHO", "first"], ["ECHO", "second"], ["ECHO", "third"]]),
            *(shared.execute("ECHO", f"caller-{n}") for n in range(50)),
        )

        assert together == [b"first", b"second", b"third"]
        assert alone == [f"caller-{n}".encode() for n in range(50)]

    async def test_an_error_reply_fails_the_call_and_leaves_the_connection_in_step(
        self, shared: SharedConnection, redis: RedisClient
    ) -> None:
        """A failed command fails the call (the others ran); the next caller reads its own reply."""
        await redis.set("shared:text", "text")

        with pytest.raises(redis_errors.ResponseError, match="not an integer"):
            await shared.execute_many([["INCR", "shared:counter"], ["INCR", "shared:text"], ["ECHO", "x"]])

        assert await redis.get("shared:counter") == b"1"
        assert await shared.execute("ECHO", "next") == b"next"

    async def test_they_are_written_at_once(self, shared: SharedConnection) -> None:
        """The commands leave in one write: a pipeline's one round trip, not one per command."""
        await shared.execute("PING")  # connected
        queue = shared._queue
        assert queue is not None
        transport = queue._transport
        assert transport is not None
        writes: list[bytes] = []
        write = transport.write

        def counted(data: bytes | bytearray | memoryview) -> None:
            writes.append(bytes(data))
            write(data)

        transport.write = counted  # type: ignore[method-assign]
        try:
            replies = await shared.execute_many([["ECHO", "a"], ["ECHO", "b"]])
        finally:
            transport.write = write  # type: ignore[method-assign]

        assert replies == [b"a", b"b"]
        assert writes == [b"*2\r\n$4\r\nECHO\r\n$1\r\na\r\n*2\r\n$4\r\nECHO\r\n$1\r\nb\r\n"]

    async def test_a_hash_reads_alike_on_the_shared_connection_and_on_redis_pys_pipeline(
        self, redis: RedisClient
    ) -> None:
        """Scripts.commands answers a hash as a flat list or as redis-py's dict: hash_fields reads both."""
        await redis.hset("shared:hash", mapping={"a": "1", "b": "2"})
        pooled, sharing = Scripts(redis), Scripts(redis, share_connection=True)
        commands = (["HGETALL", "shared:hash"], ["HEXISTS", "shared:hash", "a"], ["HGETALL", "shared:none"])
        try:
            on_pool = await pooled.commands(*commands)
            on_shared = await sharing.commands(*commands)
        finally:
            await sharing.aclose()

        assert hash_fields(on_pool[0]) == hash_fields(on_shared[0]) == {"a": "1", "b": "2"}
        assert bool(on_pool[1]) is bool(on_shared[1]) is True
        assert hash_fields(on_pool[2]) == hash_fields(on_shared[2]) == {}


class TestLostConnections:
    async def test_a_reset_fails_the_waiting_callers_and_the_next_command_reconnects(
        self, redis_server: RedisProcess
    ) -> None:
        relay = ResettingRelay(redis_server.port)
        client = connect(f"redis://127.0.0.1:{await relay.start()}", pool_size=2)
        shared = SharedConnection(client.connection_pool, command_timeout=3.0)
        try:
            waiting = asyncio.create_task(shared.execute("BLPOP", "shared:never", "2"))
            await asyncio.sleep(0.1)

            await relay.reset_all()

            with pytest.raises(redis_errors.ConnectionError):
                await waiting
            assert await shared.execute("ECHO", "back") == b"back"
        finally:
            await shared.aclose()
            await client.aclose()
            await relay.close()

    async def test_a_stalled_connection_times_out_and_is_replaced(self, redis: RedisClient) -> None:
        shared = SharedConnection(redis.connection_pool, command_timeout=0.2)
        try:
            first_id = await shared.execute("CLIENT", "ID")
            stalled = shared.execute("BLPOP", "shared:never", "1")
            queued = shared.execute("ECHO", "behind it")

            results = await asyncio.wait_for(asyncio.gather(stalled, queued, return_exceptions=True), 0.9)

            assert all(isinstance(result, redis_errors.TimeoutError) for result in results)
            assert await shared.execute("CLIENT", "ID") != first_id
        finally:
            await shared.aclose()

    async def test_a_demoted_primary_is_left_for_a_new_connection(self, tmp_path: Path) -> None:
        binary = redis_server_binary(prefer_system=True)
        with (
            RedisProcess(tmp_path / "primary", port=free_port(), binary=binary) as primary,
            RedisProcess(tmp_path / "demoted", port=free_port(), binary=binary) as demoted,
        ):
            client = connect(demoted.url, pool_size=2)
            shared = SharedConnection(client.connection_pool, command_timeout=3.0)
            try:
                first_id = await shared.execute("CLIENT", "ID")
                await client.execute_command("REPLICAOF", "127.0.0.1", str(primary.port))

                with pytest.raises(redis_errors.ReadOnlyError):
                    await shared.execute("SET", "shared:write", "1")

                assert await shared.execute("CLIENT", "ID") != first_id
            finally:
                await shared.aclose()
                await client.aclose()

    async def test_aclose_hangs_up(self, redis: RedisClient) -> None:
        shared = SharedConnection(redis.connection_pool, command_timeout=3.0)
        connection_id = await shared.execute("CLIENT", "ID")

        await shared.aclose()
        await asyncio.sleep(0.05)

        assert connection_id not in await client_ids(redis)

    async def test_nothing_listens(self) -> None:
        client = connect(f"redis://127.0.0.1:{free_port()}", pool_size=2)
        shared = SharedConnection(client.connection_pool, command_timeout=3.0)
        try:
            with pytest.raises(redis_errors.ConnectionError):
                await shared.execute("PING")
        finally:
            await shared.aclose()
            await client.aclose()


class TestTls:
    async def test_a_tls_connection_is_taken_over_like_a_plain_one(self, tmp_path: Path) -> None:
        """redis-py makes the TLS connection; the replies then come through the shared reader."""
        authority = Authority()
        cert, key, _ = authority.issue("redis", server=True)
        files = {"ca.pem": authority.pem, "cert.pem": cert, "key.pem": key}
        for name, pem in files.items():
            (tmp_path / name).write_bytes(pem)
        tls_port = free_port()
        tls_args = ["--tls-port", str(tls_port), "--tls-auth-clients", "no"]
        tls_args += [
            "--tls-cert-file",
            str(tmp_path / "cert.pem"),
            "--tls-key-file",
            str(tmp_path / "key.pem"),
        ]
        tls_args += ["--tls-ca-cert-file", str(tmp_path / "ca.pem")]
        binary = redis_server_binary(prefer_system=True)
        with RedisProcess(tmp_path / "redis", binary=binary, extra_args=tls_args):
            client = connect(f"rediss://127.0.0.1:{tls_port}?ssl_ca_certs={tmp_path / 'ca.pem'}", pool_size=2)
            shared = SharedConnection(client.connection_pool, command_timeout=3.0)
            try:
                replies = await asyncio.gather(*(shared.execute("ECHO", f"tls-{n}") for n in range(200)))

                assert replies == [f"tls-{n}".encode() for n in range(200)]
            finally:
                await shared.aclose()
                await client.aclose()


_UNRECORDED_LABEL = [*read_spec(None, (), 1), "ip_display"]


class TestScriptsOnTheSharedConnection:
    async def test_scripts_answer_as_on_pooled_connections(self, redis: RedisClient) -> None:
        keys = [f"iv1:{{t:shared}}:acct:{n}" for n in range(3)]
        await redis.hset(keys[0], mapping={"ip_wire": b"\x0a\x02x", "ip_ms": "5"})
        await redis.hset(keys[1], mapping={"ip_display": "x", "ip_ms": "6"})
        # No reader: a read the service makes for itself, recorded nowhere.
        fields = [*read_spec(None, (), 1), "ip_display", "ip_ms"]
        pooled, sharing = Scripts(redis), Scripts(redis, share_connection=True)
        try:
            expected = await pooled.run("ip_labels", keys, fields)

            assert await sharing.run("ip_labels", keys, fields) == expected
            assert expected == [b"\x0a\x02x", [b"x", b"6"], None]
        finally:
            await sharing.aclose()

    async def test_an_emptied_script_cache_is_refilled(self, redis: RedisClient) -> None:
        sharing = Scripts(redis, share_connection=True)
        try:
            await sharing.run("ip_labels", ["iv1:{t:shared}:acct:none"], _UNRECORDED_LABEL)
            await redis.script_flush()

            assert await sharing.run("ip_labels", ["iv1:{t:shared}:acct:none"], _UNRECORDED_LABEL) == [None]
            assert await redis.script_exists(sharing_sha(sharing)) == [True]
        finally:
            await sharing.aclose()


def sharing_sha(scripts: Scripts) -> str:
    return str(scripts._scripts["ip_labels"].sha)

"""The seam between store/shared_connection.py and the redis-py internals it relies on.

shared_connection.py takes two things redis-py does not promise to keep: its error-reply parser
``redis._parsers.base.BaseParser.parse_error`` (hiredis hands it every error reply, and the store
tells NOSCRIPT, READONLY, OOM and the rest apart by the class it picks) and a connected
connection's ``_writer`` (whose transport the shared connection takes over). pyproject.toml
allows only the redis-py releases they were tested with; an upgrade that moves or reshapes either
fails here, naming what changed, instead of in production.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect

import pytest
import redis
from redis import exceptions as redis_errors

from idverify.store.connection import connect
from idverify.testing import RedisProcess


def changed(private_api: str) -> str:
    return (
        f"redis-py {redis.__version__} changed {private_api}, which idverify/store/shared_connection.py "
        "relies on: adapt shared_connection.py to it, then widen pyproject.toml's redis range"
    )


def parse_error_of_redis_py() -> object:
    try:
        parser = importlib.import_module("redis._parsers.base").BaseParser
    except (ImportError, AttributeError):
        pytest.fail(changed("redis._parsers.base.BaseParser (no longer there)"))
    parse_error = getattr(parser, "parse_error", None)
    if not callable(parse_error):
        pytest.fail(changed("redis._parsers.base.BaseParser.parse_error (no longer a callable)"))
    return parse_error


class TestErrorReplyParser:
    def test_is_still_there(self) -> None:
        """redis-py's parse_error is where shared_connection imports it from, and callable."""
        parse_error_of_redis_py()

    @pytest.mark.parametrize(
        ("reply", "kind", "message"),
        [
            (b"-NOSCRIPT No matching script.\r\n", redis_errors.NoScriptError, "No matching script."),
            (b"-READONLY You can't write against a read only replica.\r\n", redis_errors.ReadOnlyError, None),
            (
                b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
                redis_errors.OutOfMemoryError,
                None,
            ),
            (b"-LOADING Redis is loading the dataset in memory\r\n", redis_errors.BusyLoadingError, None),
            (
                b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
                redis_errors.TryAgainError,
                None,
            ),
            # store/connection.py finds MISCONF in the text of a plain ResponseError.
            (
                b"-MISCONF Errors writing to the AOF file\r\n",
                redis_errors.ResponseError,
                "MISCONF Errors writing",
            ),
            (b"-ERR value is not an integer or out of range\r\n", redis_errors.ResponseError, "value is not"),
        ],
    )
    def test_error_replies_become_the_errors_the_store_catches(
        self, reply: bytes, kind: type[Exception], message: str | None
    ) -> None:
        """Each error reply, read as shared_connection reads it, is the exception class the store expects."""
        parse_error_of_redis_py()
        from idverify.store.shared_connection import _ReplyQueue  # noqa: PLC0415 - after the check above

        reader = _ReplyQueue(command_timeout=1.0)._reader
        reader.feed(reply)
        error = reader.gets()

        assert type(error) is kind, changed(
            f"what redis._parsers.base.BaseParser.parse_error makes of {reply!r} ({type(error).__name__})"
        )
        assert message is None or str(error).startswith(message), changed(
            f"the message redis._parsers.base.BaseParser.parse_error keeps of {reply!r} ({error})"
        )


class TestConnectionWriter:
    async def test_a_connected_connection_holds_its_transport_in_writer(
        self, redis_server: RedisProcess
    ) -> None:
        """A connection made by the pool and connected has an asyncio StreamWriter in ``_writer``."""
        client = connect(redis_server.url, pool_size=1)
        try:
            pool = client.connection_pool
            assert callable(getattr(pool, "make_connection", None)), changed("ConnectionPool.make_connection")
            connection = pool.make_connection()  # type: ignore[no-untyped-call]
            await connection.connect()
            writer = getattr(connection, "_writer", None)
            assert isinstance(writer, asyncio.StreamWriter), changed(
                f"a connected connection's _writer (now {type(writer).__name__}, was asyncio.StreamWriter)"
            )
            transport = writer.transport
            assert isinstance(transport, asyncio.Transport), changed(
                f"the transport of a connection's _writer (now {type(transport).__name__})"
            )
            assert "nowait" in inspect.signature(connection.disconnect).parameters, changed(
                "AbstractConnection.disconnect(nowait=...)"
            )
            await connection.disconnect(nowait=True)
        finally:
            await client.aclose()

"""One Redis connection that many concurrent callers share, each command pipelined behind the last.

Redis answers the commands of one connection in the order it received them, so callers need
not take turns: each writes its command and waits for the reply at its place in the queue.
Compared with taking a connection from redis-py's pool for every command, this skips the pool's
checkout, the stream reader and a timer per command, which cost a script call most of its CPU
in the worker (docs/PERFORMANCE.md; ``bench/geo.py`` measures the effect on the batch read).

redis-py still makes the connection (address discovery through Sentinel, TLS, AUTH, database
selection are all its own), and the connection is then read by :class:`_ReplyQueue`, a protocol
that parses replies with hiredis as they arrive. Nothing is ever retried: a command whose reply
was lost fails with ``ConnectionError``, as it would on a pooled connection.

The connection is dropped (and made again by the next command) when Redis closes it, when the
oldest command has waited longer than the command timeout, and on a READONLY reply: a primary
demoted by a failover keeps its connections open, and only a new connection finds the new one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis import exceptions as redis_errors
from redis._parsers.base import BaseParser
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.typing import EncodableT


def _closed() -> redis_errors.ConnectionError:
    # A new error each time: one instance raised in many callers would gather their tracebacks.
    return redis_errors.ConnectionError("Connection closed by server.")


class _ReplyQueue(asyncio.Protocol):
    """The callers waiting on one connection, in the order their commands were written."""

    def __init__(self, command_timeout: float) -> None:
        self._command_timeout = command_timeout
        self._reader = hiredis.Reader(
            protocolError=redis_errors.InvalidResponse, replyError=BaseParser.parse_error
        )
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    def adopt(self, transport: asyncio.Transport) -> None:
        """Takes over the reading of a connected transport."""
        self._transport = transport
        transport.set_protocol(self)
        transport.resume_reading()

    def send(self, *packed: bytes) -> list[asyncio.Future[Any]]:
        """Writes packed commands in one write; a future per command gets its reply."""
        if self.closed or self._transport is None:
            raise _closed()
        loop = asyncio.get_running_loop()
        replies = [loop.create_future() for _ in packed]
        self._transport.write(packed[0] if len(packed) == 1 else b"".join(packed))
        due = loop.time() + self._command_timeout
        self._waiting.extend((reply, due) for reply in replies)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._command_timeout, self._check_oldest)
        return replies

    def data_received(self, data: bytes) -> None:
        """Hands each complete reply to the caller at the head of the queue."""
        self._reader.feed(data)
        demoted = False
        while self._waiting:
            try:
                answer = self._reader.gets()
            except redis_errors.InvalidResponse as exc:
                self._fail_all(exc)
                return
            if answer is False:
                return
            reply, _ = self._waiting.popleft()
            if isinstance(answer, redis_errors.ReadOnlyError):
                demoted = True
            if reply.done():  # its caller gave up waiting; the reply still had to be read
                continue
            if isinstance(answer, redis_errors.ResponseError):
                reply.set_exception(answer)
            else:
                reply.set_result(answer)
        if demoted:
            self._fail_all(redis_errors.ConnectionError("the primary became a replica"))

    def connection_lost(self, exc: Exception | None) -> None:
        """Fails every caller still waiting: their commands may or may not have run."""
        if exc is None:
            self._fail_all(_closed())
        else:
            self._fail_all(redis_errors.ConnectionError(f"Connection lost: {exc}"))

    def close(self) -> None:
        """Closes the connection; callers still waiting fail."""
        self._fail_all(_closed())

    def _check_oldest(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        overdue_by = loop.time() - self._waiting[0][1]
        if overdue_by >= 0:
            self._fail_all(redis_errors.TimeoutError("Timeout reading from Redis"))
        else:
            self._watchdog = loop.call_later(-overdue_by, self._check_oldest)

    def _fail_all(self, error: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            reply, _ = self._waiting.popleft()
            if not reply.done():
                reply.set_exception(error)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


class SharedConnection:
    """A lazily made connection to the server of ``pool``, shared by all callers.

    Args:
        pool: the standalone or Sentinel pool whose connection settings it uses; it takes none
            of the pool's connections.
        command_timeout: seconds the oldest unanswered command may wait before the connection
            is given up.
    """

    def __init__(self, pool: ConnectionPool, *, command_timeout: float) -> None:
        self._pool = pool
        self._command_timeout = command_timeout
        self._queue: _ReplyQueue | None = None
        self._connection: AbstractConnection | None = None
        self._connecting = asyncio.Lock()

    async def execute(self, *args: EncodableT) -> Any:
        """Sends one command and returns its reply.

        Raises:
            redis.exceptions.ConnectionError: Redis cannot be reached, or the connection was
                lost before the reply arrived (the command may have run).
            redis.exceptions.TimeoutError: no reply within the command timeout.
            redis.exceptions.ResponseError: Redis answered with an error.
        """
        queue = await self._open_queue()
        # hiredis' stubs type the arguments as a 1-tuple; it packs any number.
        (reply,) = queue.send(hiredis.pack_command(cast("Any", args)))
        return await reply

    async def execute_many(self, commands: Sequence[Sequence[EncodableT]]) -> list[Any]:
        """Sends the commands in one write, one round trip as a pipeline, and returns their replies.

        Raises:
            as :meth:`execute`, the error of the first command that failed (the others may
            have run).
        """
        queue = await self._open_queue()
        replies = queue.send(*(hiredis.pack_command(cast("Any", tuple(command))) for command in commands))
        # Every reply is awaited, so that none is left holding an exception nobody retrieved.
        answers = await asyncio.gather(*replies, return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return answers

    async def _open_queue(self) -> _ReplyQueue:
        queue = self._queue
        if queue is None or queue.closed:
            queue = await self._connect()
        return queue

    async def aclose(self) -> None:
        """Closes the connection, if one is open."""
        if self._queue is not None:
            self._queue.close()
            self._queue = None
        if self._connection is not None:
            # Not waiting for the close: redis-py would wait on the stream it no longer reads.
            await self._connection.disconnect(nowait=True)
            self._connection = None

    async def _connect(self) -> _ReplyQueue:
        async with self._connecting:
            if self._queue is not None and not self._queue.closed:
                return self._queue  # another caller connected while this one waited
            if self._connection is not None:
                await self._connection.disconnect(nowait=True)
            connection = self._connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            await connection.connect()
            writer = connection._writer  # noqa: SLF001 - the transport redis-py connected
            if writer is None:
                raise _closed()
            queue = _ReplyQueue(self._command_timeout)
            queue.adopt(writer.transport)
            self._queue = queue
            return queue

"""Budgets of calls in progress per worker, so that calls without a token cannot starve the rest.

gRPC's own ``maximum_concurrent_rpcs`` is one budget for every call: 256 anonymous
``Health/Watch`` streams, which never end by themselves, once took all of it and every call
after them failed with RESOURCE_EXHAUSTED. Calls are now counted in three shares, each refused
with RESOURCE_EXHAUSTED only when its own share is used up:

- calls that carry credentials (every idverify service): ``max_concurrent_rpcs``;
- public streams (Health/Watch, reflection): a few per connection, more per worker, each ended
  after a maximum lifetime, since the RPC timeout of the other calls does not bound them;
- ``Health/Check``: a reserved share, so that probes answer whatever else is going on.

gRPC's limit is set to the sum of the shares and a margin for calls it has accepted that no
share counts yet (a request still arriving, a refusal being written, an unknown method).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from idverify.domain.errors import RateLimited
from idverify.services.grpc_types import Context, Handler

# Calls gRPC has accepted that no share counts yet; it keeps gRPC's own limit, the last resort
# against unbounded memory, from refusing calls that a share would admit.
IN_TRANSIT_MARGIN = 64
# A refused caller may try again this soon: shares free up as soon as calls end.
RETRY_AFTER_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class CallLimits:
    """The size of each share, per worker process."""

    # Calls with credentials in progress at once.
    authenticated: int = 256
    # Health/Watch and reflection streams open at once on one connection, and in the worker.
    public_streams_per_connection: int = 4
    public_streams: int = 128
    # A public stream is ended with DEADLINE_EXCEEDED after this long; the client opens another.
    public_stream_lifetime_seconds: float = 300.0
    # Health/Check calls in progress at once.
    health_checks: int = 32

    @property
    def grpc_limit(self) -> int:
        """The ``maximum_concurrent_rpcs`` of gRPC itself: every share and the in-transit margin."""
        return self.authenticated + self.public_streams + self.health_checks + IN_TRANSIT_MARGIN


class CallBudgets:
    """Counts the calls in progress of one worker in their shares (one event loop: no locks)."""

    __slots__ = ("_checks", "_limits", "_public_by_connection", "_public_streams", "_public_wrapped", "calls")

    def __init__(self, limits: CallLimits) -> None:
        self._limits = limits
        self.calls = 0
        self._checks = 0
        self._public_streams = 0
        self._public_by_connection: dict[str, int] = {}
        self._public_wrapped: dict[str, Handler] = {}

    def enter_call(self) -> None:
        """Counts a call with credentials in; ``leave_call`` must follow, even when this raises.

        Raises:
            RateLimited: when the worker's share of such calls is used up (RESOURCE_EXHAUSTED).
        """
        self.calls += 1
        if self.calls > self._limits.authenticated:
            raise RateLimited(
                "the server has too many calls in progress; try again shortly",
                retry_after=RETRY_AFTER_SECONDS,
                reason="SERVER_BUSY",
            )

    def leave_call(self) -> None:
        """Counts a call entered by ``enter_call`` out."""
        self.calls -= 1

    def take_check(self) -> bool:
        """Counts a Health/Check in, or answers False when their share is used up."""
        if self._checks >= self._limits.health_checks:
            return False
        self._checks += 1
        return True

    def release_check(self) -> None:
        """Counts a Health/Check taken by ``take_check`` out."""
        self._checks -= 1

    def take_public_stream(self, connection: str) -> bool:
        """Counts a public stream of a connection in, or answers False when a share is used up."""
        on_connection = self._public_by_connection.get(connection, 0)
        if (
            self._public_streams >= self._limits.public_streams
            or on_connection >= self._limits.public_streams_per_connection
        ):
            return False
        self._public_streams += 1
        self._public_by_connection[connection] = on_connection + 1
        return True

    def release_public_stream(self, connection: str) -> None:
        """Counts a public stream taken by ``take_public_stream`` out."""
        self._public_streams -= 1
        left = self._public_by_connection[connection] - 1
        if left:
            self._public_by_connection[connection] = left
        else:
            del self._public_by_connection[connection]

    @property
    def limits(self) -> CallLimits:
        """The size of each share."""
        return self._limits

    @property
    def public_streams(self) -> int:
        """Public streams open now."""
        return self._public_streams

    def guard_public(self, method: str, handler: Handler) -> Handler:
        """The handler of a public method, counted in its share (and, for a stream, timed)."""
        guarded = self._public_wrapped.get(method)
        if guarded is None:
            guarded = self._guarded(handler)
            self._public_wrapped[method] = guarded
        return guarded

    def _guarded(self, handler: Handler) -> Handler:
        options: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._checked(handler.unary_unary), **options)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._streamed(handler.unary_stream), **options)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(self._streamed(handler.stream_stream), **options)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._streamed(handler.stream_unary), **options)
        return handler

    def _checked(self, inner: Callable[..., Any]) -> Callable[[Any, Context], Any]:
        async def check(request: Any, context: Context) -> Any:
            if not self.take_check():
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many health checks in progress")
            try:
                result = inner(request, context)
                return await result if inspect.isawaitable(result) else result
            finally:
                self.release_check()

        return check

    def _streamed(self, inner: Callable[..., Any]) -> Callable[[Any, Context], Any]:
        lifetime = self._limits.public_stream_lifetime_seconds

        async def stream(request: Any, context: Context) -> Any:
            connection = context.peer()
            if not self.take_public_stream(connection):
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "too many streams without credentials on this connection or server",
                )
            try:
                async with asyncio.timeout(lifetime):
                    return await _run_stream(inner(request, context), context)
            except TimeoutError:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"streams without credentials last at most {lifetime:g} s; open a new one",
                )
            finally:
                self.release_public_stream(connection)

        return stream


async def _run_stream(result: Any, context: Context) -> Any:
    """Runs a stream handler of either kind: an async generator of replies, or a coroutine."""
    if inspect.isasyncgen(result):
        try:
            async for reply in result:
                await context.write(reply)
        finally:
            await result.aclose()
        return None
    return await result if inspect.isawaitable(result) else result

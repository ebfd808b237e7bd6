"""Type aliases for grpc objects that grpc-stubs declares generic but grpc does not subscript."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    ServerInterceptorBase: TypeAlias = grpc.aio.ServerInterceptor
else:
    Context = grpc.aio.ServicerContext
    Handler = grpc.RpcMethodHandler
    ServerInterceptorBase = grpc.aio.ServerInterceptor


class EncodedReply:
    """A reply already serialized: the interceptor sends its bytes as they are.

    A wrapper, not a bytes subclass: gRPC takes nothing but exact bytes from a serializer.
    """

    __slots__ = ("wire",)

    def __init__(self, wire: bytes) -> None:
        self.wire = wire

"""A typed, synchronous Python client for idverify's gRPC services.

    with Client("127.0.0.1:50051", token) as client:
        methods = client.verification.ListMethods(pb.ListMethodsRequest())

Every call carries ``authorization: Bearer <token>`` and a default deadline, since gRPC sets
none by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Self

import grpc

from idverify.v1 import (
    account_pb2_grpc,
    admin_pb2_grpc,
    audit_pb2_grpc,
    consent_pb2_grpc,
    events_pb2_grpc,
    verification_pb2_grpc,
)

DEFAULT_TIMEOUT_SECONDS = 10.0


class _Auth(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    """Adds the bearer token and a default deadline to every call."""

    def __init__(self, token: str, timeout: float) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    def _details(self, details: Any) -> Any:
        return _Details(
            method=details.method,
            timeout=details.timeout if details.timeout is not None else self._timeout,
            metadata=tuple(details.metadata or ()) + self._metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
            compression=details.compression,
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self, name, value)


class Client:
    """Stubs for every idverify service over one channel."""

    def __init__(
        self,
        target: str,
        token: str = "",
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._channel = (
            grpc.secure_channel(target, credentials, options=options)
            if credentials
            else grpc.insecure_channel(target, options=options)
        )
        channel = grpc.intercept_channel(self._channel, _Auth(token, timeout))
        self.verification = verification_pb2_grpc.VerificationServiceStub(channel)
        self.account = account_pb2_grpc.AccountServiceStub(channel)
        self.consent = consent_pb2_grpc.ConsentServiceStub(channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)
        self.events = events_pb2_grpc.EventServiceStub(channel)
        self.channel = self._channel

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

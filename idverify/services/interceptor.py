"""The one server interceptor: authenticates, authorizes, rate-limits, and maps domain errors.

Every domain error becomes its gRPC status with ``google.rpc`` details (BadRequest naming the
field, ErrorInfo carrying the reason code, RetryInfo for rate limits and a store refusing
writes); anything unexpected becomes INTERNAL with a generic message and a log line that carries
no request data.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry import trace

from idverify.domain.errors import (
    IdverifyError,
    InvalidArgument,
    RateLimited,
    StoreRefusesWrites,
    StoreUnavailable,
    Unauthenticated,
)
from idverify.flows.context import call_deadline
from idverify.flows.incident import REPORT_SECONDS
from idverify.observability import telemetry
from idverify.observability.telemetry import request_id_var
from idverify.security.certificates import CertificatePrincipals
from idverify.security.clients import ClientRegistry
from idverify.security.principals import Principal, authorize, current_principal, is_public
from idverify.security.rate_limits import LockoutAuditor, PrincipalLimiter
from idverify.services.call_budgets import CallBudgets, CallLimits
from idverify.services.grpc_types import Context, EncodedReply, Handler
from idverify.services.request_info import request_info

log = logging.getLogger("idverify.rpc")
ERROR_DOMAIN = "idverify.dev"
# Calls allowed longer than [grpc] rpc_timeout_seconds: an incident report's holdings scan the
# whole store, which takes tens of seconds at millions of keys (docs/PERFORMANCE.md).
_LONG_CALLS = {"/idverify.v1.AdminService/CreateIncidentReport": REPORT_SECONDS}


def status_for(error: IdverifyError) -> grpc.Status:
    """The rich gRPC status of a domain error."""
    code = getattr(code_pb2, error.status.value)
    details = []
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    info.metadata.update(error.metadata)
    if error.field:
        info.metadata["field"] = error.field
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.reason)
            ]
        )
        details.append(bad)
    details.append(info)
    if isinstance(error, RateLimited | StoreRefusesWrites):
        retry = duration_pb2.Duration()
        retry.FromMilliseconds(max(int(error.retry_after * 1000), 1))
        details.append(error_details_pb2.RetryInfo(retry_delay=retry))
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    message = (
        f"{error.field}: {error.message}"
        if error.field and error.field not in error.message
        else error.message
    )
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=packed))


def _bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
            return value[7:].strip()
    return ""


def _request_id(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str) and len(value) <= 128 and value.isprintable():  # noqa: PLR2004
            return value
    return ""


def _client_certificate(context: Context) -> bytes | None:
    """The PEM of the call's verified client certificate (mutual TLS), if there is one."""
    return next(iter(context.auth_context().get("x509_pem_cert", ())), None)


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Tracing, authentication, authorization, limits, deadlines and error mapping for every RPC.

    Public calls (health, reflection) skip all of it but the budgets of calls in progress.
    """

    def __init__(
        self,
        clients: ClientRegistry,
        limiter: PrincipalLimiter,
        *,
        lockouts: LockoutAuditor | None = None,
        certificates: CertificatePrincipals | None = None,
        rpc_timeout_seconds: float = 15.0,
        budgets: CallBudgets | None = None,
    ) -> None:
        self._clients = clients
        self._limiter = limiter
        self._lockouts = lockouts
        self._certificates = certificates
        self._timeout = rpc_timeout_seconds
        self.budgets = budgets or CallBudgets(CallLimits())

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        """Wraps the handler of one call."""
        handler = await continuation(details)
        if handler is None:
            return handler
        if is_public(details.method):
            return self.budgets.guard_public(details.method, handler)
        call = _Call(self, details)
        if handler.unary_unary:
            return _wrap_unary(handler, call)
        if handler.unary_stream:
            return _wrap_stream(handler, call)
        return handler

    async def admit(self, call: _Call, context: Context) -> None:
        """Authenticates and authorizes the caller, and spends its rate-limit token."""
        token = _bearer(call.metadata)
        principal = await self._clients.authenticate(token) if token else None
        if principal is None and token:
            raise Unauthenticated("invalid or revoked token", reason="INVALID_TOKEN")
        if principal is None and self._certificates and (pem := _client_certificate(context)):
            principal = self._certificates.principal(pem)
        authorize(principal, call.method)
        assert principal is not None  # noqa: S101 - authorize() raised otherwise
        current_principal.set(principal)
        try:
            self._limiter.take(principal.client_id)
        except RateLimited:
            await self._audit_lockout(principal, context)
            raise
        trace.get_current_span().set_attributes(
            telemetry.cached_safe_attributes(
                {"idverify.tenant": principal.tenant, "idverify.role": principal.role.value}
            )
        )

    async def _audit_lockout(self, principal: Principal, context: Context) -> None:
        if self._lockouts is None or not self._limiter.lockout_to_audit(principal.client_id):
            return
        info = request_info(context)  # a lock-out sums up a minute: no one call's request id
        try:
            await self._lockouts.record(principal.tenant, principal.client_id, info.audit_fields())
        except StoreUnavailable:
            # The refusal stands: an outage must not turn RESOURCE_EXHAUSTED into UNAVAILABLE.
            log.warning("lock-out of a client not audited: redis unavailable")

    @property
    def timeout(self) -> float:
        """The server-side limit of one call."""
        return self._timeout

    def timeout_of(self, method: str) -> float:
        """The server-side limit of a call of ``method``: an incident report scans the whole store."""
        return _LONG_CALLS.get(method, self._timeout)


class _Call:
    """One intercepted call's facts."""

    __slots__ = ("interceptor", "metadata", "method")

    def __init__(self, interceptor: ServiceInterceptor, details: grpc.HandlerCallDetails) -> None:
        self.interceptor = interceptor
        self.method: str = details.method
        self.metadata = details.invocation_metadata


class _Malformed:
    """Stands in for a request whose bytes did not parse (bad wire format or invalid UTF-8)."""

    __slots__ = ()


_MALFORMED = _Malformed()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Parses requests without letting a DecodeError become gRPC's UNKNOWN with its text."""
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _MALFORMED

    return parse


def _passing_encoded(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """Serializes replies, except those a servicer assembled in wire form itself (EncodedReply)."""
    if serializer is None:
        return None

    def serialize(reply: Any) -> bytes:
        if type(reply) is EncodedReply:
            return reply.wire
        return serializer(reply)

    return serialize


def _refuse_malformed(request: Any) -> None:
    if request is _MALFORMED:
        raise InvalidArgument(
            "the request is not a valid protobuf message (wire format or UTF-8)",
            reason="MALFORMED",
            field="request",
        )


def _record(method: str, code: str, began: float) -> None:
    telemetry.Instruments.record(
        telemetry.instruments.rpc_duration,
        time.perf_counter() - began,
        **{"rpc.method": method, "rpc.grpc.status_code": code},
    )


def _wrap_unary(handler: Handler, call: _Call) -> Handler:
    inner: Any = handler.unary_unary

    async def unary(request: Any, context: Context) -> Any:
        began = time.perf_counter()
        request_id_var.set(_request_id(call.metadata))
        with telemetry.server_span(call.method, call.metadata) as current:
            code = "OK"
            budgets = call.interceptor.budgets
            try:
                budgets.enter_call()
                await call.interceptor.admit(call, context)
                _refuse_malformed(request)
                limit = call.interceptor.timeout_of(call.method)
                call_deadline.set(asyncio.get_running_loop().time() + _seconds_allowed(limit, context))
                result = inner(request, context)
                if inspect.isawaitable(result):
                    # asyncio.timeout, unlike wait_for, does not wrap the call in a task of its own.
                    async with asyncio.timeout(limit):
                        result = await result
            except Exception as exc:
                code = _code_of(exc)
                await _abort(context, call.method, exc)
                raise  # unreachable: _abort always raises
            finally:
                budgets.leave_call()
                telemetry.end_rpc(current, code)
                _record(call.method, code, began)
            return result

    return grpc.unary_unary_rpc_method_handler(
        unary,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=_passing_encoded(handler.response_serializer),
    )


def _wrap_stream(handler: Handler, call: _Call) -> Handler:
    inner: Any = handler.unary_stream

    async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
        began = time.perf_counter()
        request_id_var.set(_request_id(call.metadata))
        with telemetry.server_span(call.method, call.metadata) as current:
            code = "OK"
            budgets = call.interceptor.budgets
            try:
                budgets.enter_call()
                await call.interceptor.admit(call, context)
                _refuse_malformed(request)
                async for item in inner(request, context):
                    yield item
            except Exception as exc:  # noqa: BLE001 - every failure must become a precise status
                code = _code_of(exc)
                await _abort(context, call.method, exc)
            finally:
                budgets.leave_call()
                telemetry.end_rpc(current, code)
                _record(call.method, code, began)

    return grpc.unary_stream_rpc_method_handler(
        stream,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


def _seconds_allowed(limit: float, context: Context) -> float:
    """The call's time: the server's limit, or the caller's deadline if that comes first."""
    remaining = context.time_remaining()
    return limit if remaining is None else min(limit, remaining)


def _code_of(exc: BaseException) -> str:
    if isinstance(exc, IdverifyError):
        return exc.status.value
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED"
    if isinstance(exc, grpc.aio.AbortError):
        return "ABORTED_BY_HANDLER"
    return "INTERNAL"


async def _abort(context: Context, method: str, exc: BaseException) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if isinstance(exc, IdverifyError):
        status = status_for(exc)
        await context.abort(status.code, status.details, status.trailing_metadata)
    if isinstance(exc, TimeoutError):
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"{method} took longer than the server allows")
    if isinstance(exc, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    # The message of a foreign exception may echo request data: log its type and frames only.
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unexpected %s in %s\n%s", type(exc).__name__, method, frames)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")

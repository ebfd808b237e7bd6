# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The vendor callback endpoint: an HTTP(S) server on a port of its own (``[callbacks]``).

A vendor calls ``<public_url>/alibaba/<tenant>/<verification id>?certifyId=..&callbackToken=..``
(served under public_url's path) when a user finishes its face flow. The callback is only a
nudge: its token must be the verification's own (idverify.callbacks.links), its certifyId the
one recorded at the start, and then the verdict is fetched from the vendor, exactly as an empty
SubmitChallenge fetches it. What the callback says about the result (``passed``, ``subcode``) is
never read: anyone who can reach the port can send anything. Every refusal leaves the
verification as it was and is logged with its tenant and reason only.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from idverify.callbacks.links import CallbackLinks
from idverify.config import Settings
from idverify.console.server import RunningSite, start_site, tls_context
from idverify.domain.errors import RateLimited, StoreUnavailable
from idverify.flows.context import RequestInfo
from idverify.flows.verification import VerificationFlow
from idverify.observability import telemetry
from idverify.security.rate_limits import PrincipalLimiter

__all__ = ["build_app", "start_callbacks"]

log = logging.getLogger("idverify.callbacks")

_ID: Final = re.compile(r"^[0-9a-f]{32}$")
_TENANT: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Alibaba's CertifyId is 32 hex characters; room for other lengths, none for a flood.
_MAX_TOKEN: Final = 128
# Sources remembered by the limiter before it starts afresh (an address spray cannot grow it).
_FORGET_AFTER: Final = 100_000
_ANSWERS: Final = {
    "finished": (200, "finished"),
    "final": (200, "already final"),
    "pending": (202, "not finished at the vendor"),
    "unknown": (404, "no such verification"),
    "mismatch": (403, "not this verification's flow"),
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _SourceLimiter:
    """Requests per source address, in each worker (a token bucket), bounded in memory."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._buckets = PrincipalLimiter(per_minute)
        self._seen = 0

    def wait(self, address: str) -> float:
        """Seconds the source must wait (0: this request may go on)."""
        self._seen += 1
        if self._seen > _FORGET_AFTER:
            self._buckets = PrincipalLimiter(self._per_minute)
            self._seen = 0
        try:
            self._buckets.take(f"callback:{address}")
        except RateLimited as refused:
            return refused.retry_after
        return 0.0


class _Handlers:
    def __init__(self, settings: Settings, flow: VerificationFlow, links: CallbackLinks) -> None:
        self._flow = flow
        self._links = links
        self._limiter = _SourceLimiter(settings.callbacks.per_source_per_minute)
        self._timeout = settings.callbacks.timeout_seconds

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Rate limit per source, then the handler within the request timeout."""
        wait = self._limiter.wait(request.remote or "unknown")
        if wait:
            _count("rate limited")
            return web.Response(
                status=429, text="too many requests", headers={"Retry-After": str(int(wait) + 1)}
            )
        try:
            async with asyncio.timeout(self._timeout):
                return await handler(request)
        except TimeoutError:
            log.warning("vendor callback: no answer within %.0f s; nothing changed", self._timeout)
            return web.Response(status=503, text="timed out; the verification is unchanged")

    async def alibaba(self, request: web.Request) -> web.Response:
        """Cloudauth's face flow: certifyId and callbackToken in the query (passed is not read)."""
        tenant = request.match_info["tenant"]
        verification_id = request.match_info["verification_id"]
        if request.can_read_body:
            # Parameters come in the URL; a body is read (within client_max_size) and ignored.
            await request.read()
        certify_id = request.query.get("certifyId", "")
        token = request.query.get("callbackToken", "")
        if (
            not _TENANT.match(tenant)
            or not _ID.match(verification_id)
            or not certify_id
            or len(certify_id) > _MAX_TOKEN
            or not token
            or len(token) > _MAX_TOKEN
        ):
            return _refused(400, "malformed", tenant if _TENANT.match(tenant) else "?")
        if not self._links.genuine(tenant, verification_id, token):
            return _refused(403, "bad token", tenant)
        info = RequestInfo(principal="vendor-callback:alibaba", request_id=verification_id)
        try:
            with telemetry.span("callbacks.alibaba"):
                outcome = await self._flow.finish_by_callback(tenant, verification_id, certify_id, info)
        except StoreUnavailable as down:
            log.warning(
                "vendor callback for tenant %s: verdict not fetched (%s); the verification stays "
                "pending and SubmitChallenge still finishes it",
                tenant,
                down.reason,
            )
            _count("vendor unavailable")
            return web.Response(status=503, text="verdict not available now; retry")
        status, text = _ANSWERS[outcome]
        if status >= 400:  # noqa: PLR2004
            return _refused(status, outcome, tenant)
        _count(outcome)
        log.info("vendor callback for tenant %s: %s", tenant, outcome)
        return web.Response(status=status, text=text)


def _refused(status: int, reason: str, tenant: str) -> web.Response:
    """A callback without effect: logged by tenant and reason, never its parameters.

    The reasons are HTTP answers to a vendor, not the contract's reason codes: lower case.
    """
    log.warning("vendor callback refused for tenant %s: %s", tenant, reason)
    _count(reason)
    return web.Response(status=status, text=reason)


def _count(outcome: str) -> None:
    telemetry.Instruments.add(telemetry.instruments.vendor_callbacks, outcome=outcome)


def build_app(settings: Settings, flow: VerificationFlow, links: CallbackLinks) -> web.Application:
    """The callback routes behind the source limit and the timeout."""
    handlers = _Handlers(settings, flow, links)
    app = web.Application(middlewares=[handlers.guard], client_max_size=settings.callbacks.max_body_bytes)
    # Served under public_url's own path, so a proxy in front forwards it unchanged.
    prefix = urlsplit(settings.callbacks.public_url).path.rstrip("/")
    route = prefix + "/alibaba/{tenant}/{verification_id}"
    app.add_routes([web.get(route, handlers.alibaba), web.post(route, handlers.alibaba)])
    return app


async def start_callbacks(
    settings: Settings, flow: VerificationFlow, links: CallbackLinks, *, reuse_port: bool = False
) -> RunningSite:
    """Starts the endpoint where ``callbacks.listen`` says, over TLS when ``[tls]`` is set.

    Raises:
        RuntimeError: when the port cannot be bound.
        ConfigError: when the TLS files cannot be read.
    """
    context = tls_context(settings, client_certificates=False)
    app = build_app(settings, flow, links)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, keepalive_timeout=settings.callbacks.timeout_seconds
    )
    return await start_site(
        runner, settings, settings.callbacks_host_port, context, "callbacks", reuse_port=reuse_port
    )

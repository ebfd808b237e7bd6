"""The console's HTTP(S) server: sign-in, the page and its JSON reads, on a port of its own.

Read-only by construction: the only state it changes is its own sessions. Every read goes through
the AuditFlow that serves AuditService, so a filter is checked, an account id pseudonymized and a
tenant chosen exactly as QueryEvents does; the tenant is the signed-in principal's own, never a
request parameter. Every answer carries a strict Content-Security-Policy: the page runs only the
scripts shipped in ``static/``, talks only to this origin, and cannot be framed. Every read of the
log is recorded like the AuditService call it mirrors (``flows/read_accounting.py``), under the
signed-in token's client id, with the RPC named ``Console.<call>``: an auditor reading entries in
a browser leaves the same trace as one reading them over gRPC.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import hmac
import html
import io
import logging
import math
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from idverify.audit.events import EntryFormatError, EventType
from idverify.audit.merkle import leaf_hash
from idverify.audit.pending import PendingReadLimit
from idverify.audit.query import QueryResult, StagedAt
from idverify.config import Settings
from idverify.console.charts import DAY_MS, ChartData, Charts
from idverify.console.sessions import CONSOLE_ROLES, ConsoleSessions, Session, SignInLimiter
from idverify.domain.errors import (
    ConfigError,
    IdverifyError,
    NotFound,
    RateLimited,
    StatusKind,
)
from idverify.flows.audit import AuditFlow, QueryRequest
from idverify.flows.read_accounting import Category, Reader, ReadLedger
from idverify.security.clients import ClientRegistry

__all__ = [
    "COOKIE",
    "CSP",
    "RunningSite",
    "follow_certificates",
    "start_console",
    "start_site",
    "tls_context",
]

log = logging.getLogger("idverify.console")

COOKIE = "idverify_console"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_SIZE = 50
MAX_PAGE = 200
MAX_DAYS = 90
TLS_CHECK_SECONDS = 1.0
_STATIC = resources.files("idverify.console") / "static"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
_SESSION_KEY: web.RequestKey[Session] = web.RequestKey("session", Session)
_AUDIT = (Category.AUDIT,)
_HTTP_STATUS = {
    StatusKind.INVALID_ARGUMENT: 400,
    StatusKind.NOT_FOUND: 404,
    StatusKind.OUT_OF_RANGE: 400,
    StatusKind.PERMISSION_DENIED: 403,
    StatusKind.UNAUTHENTICATED: 401,
    StatusKind.RESOURCE_EXHAUSTED: 429,
    StatusKind.FAILED_PRECONDITION: 409,
    StatusKind.UNAVAILABLE: 503,
}


def _static(name: str) -> bytes:
    return (_STATIC / name).read_bytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(eq=False, slots=True)
class _Handlers:
    """The routes; each reads the session the middleware found."""

    settings: Settings
    audit: AuditFlow
    charts: Charts
    sessions: ConsoleSessions
    clients: ClientRegistry
    _: KW_ONLY
    reads: ReadLedger
    secure: bool
    _limiter: SignInLimiter = field(init=False)
    _signin_page: str = field(init=False)

    def __post_init__(self) -> None:
        self._limiter = SignInLimiter(self.settings.console.signin_failures_per_minute)
        self._signin_page = _static("signin.html").decode("utf-8")

    # -- sign-in and out ------------------------------------------------------------------------

    def signin_form(self, message: str = "", status: int = 200) -> web.Response:
        body = self._signin_page.replace("{{message}}", html.escape(message))
        return web.Response(text=body, status=status, content_type="text/html")

    async def get_signin(self, request: web.Request) -> web.Response:
        del request
        return self.signin_form()

    async def post_signin(self, request: web.Request) -> web.StreamResponse:
        address = request.remote or "unknown"
        wait = self._limiter.wait(address)
        if wait:
            return self._too_many(wait)
        form = await request.post()
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        principal = await self.clients.authenticate(token) if token else None
        if principal is None or principal.role not in CONSOLE_ROLES:
            wait = self._limiter.failed(address)
            if wait:
                log.warning("console: sign-ins from one address refused for %.0fs", wait)
                return self._too_many(wait)
            if principal is None:
                return self.signin_form("That token is not valid (or was revoked).", 401)
            return self.signin_form("Only auditor and admin tokens may sign in to the console.", 403)
        session_id, session = await self.sessions.open(principal, {"principal": principal.label})
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=int(self.settings.console.session_seconds),
            path="/",
            secure=True,
            httponly=True,
            samesite="Strict",
        )
        log.info("console: %s signed in", session.principal.label)
        return response

    def _too_many(self, wait: float) -> web.Response:
        response = self.signin_form("Too many failed sign-ins: wait a minute and try again.", 429)
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response

    async def post_signout(self, request: web.Request) -> web.StreamResponse:
        session = await self.sessions.find(request.cookies.get(COOKIE, ""))
        if session is not None:
            await self.sessions.close(request.cookies[COOKIE], {"principal": session.principal.label})
        response = web.HTTPSeeOther("/signin")
        response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
        return response

    # -- the page -------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        del request
        return web.Response(body=_static("index.html"), content_type="text/html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        suffix = name[name.rfind(".") :] if "." in name else ""
        if suffix not in _STATIC_TYPES or "/" in name or name.startswith("."):
            raise web.HTTPNotFound
        try:
            body = _static(name)
        except (FileNotFoundError, IsADirectoryError):
            raise web.HTTPNotFound from None
        return web.Response(body=body, content_type=_STATIC_TYPES[suffix], charset="utf-8")

    # -- JSON reads -----------------------------------------------------------------------------

    async def me(self, request: web.Request) -> web.Response:
        session = request[_SESSION_KEY]
        principal = session.principal
        return web.json_response(
            {
                "tenant": principal.tenant,
                "role": principal.role.value,
                "expires_ms": session.expires_ms,
                "event_types": [kind.value for kind in EventType],
                "methods": [m.id for m in self.settings.methods_for(principal.tenant).methods],
            }
        )

    async def events(self, request: web.Request) -> web.Response:
        tenant = request[_SESSION_KEY].principal.tenant
        query = request.query
        limit = _int(query, "limit", PAGE_SIZE, maximum=MAX_PAGE, minimum=1)
        from_index = _int(query, "from_index", 0)
        after = _pending_after(query)
        wanted = QueryRequest(
            start_ms=_optional_int(query, "start_ms"),
            end_ms=_optional_int(query, "end_ms"),
            types=[t for t in query.getall("type", []) if t],
            outcomes=[o for o in query.getall("outcome", []) if o],
            method=query.get("method", ""),
            account_id=query.get("account_id", ""),
            start_index=from_index,
            limit=limit + 1,
            include_pending=query.get("pending", "") == "1",
            pending_after=after,
        )
        if not await self._has_log(request):
            await self._record(request, "QueryEvents", wanted.account_id)
            return web.json_response({"events": [], "next_index": None, "next_pending_after": None})
        found: list[QueryResult] = []
        cut: PendingReadLimit | None = None
        try:
            async for item in self.audit.query(tenant, wanted):
                found.append(item)  # noqa: PERF401 - those before a cut are the page
        except PendingReadLimit as error:
            cut = error
        await self._record(request, "QueryEvents", wanted.account_id)
        page = found[:limit]
        next_index, next_after = _next_page(page, found[limit:], cut, from_index, after)
        return web.json_response(
            {
                "events": [_listed(item) for item in page],
                "next_index": next_index,
                "next_pending_after": _position_json(next_after),
                "pending_cut": cut is not None,
            }
        )

    async def staged(self, request: web.Request) -> web.Response:
        """Where a pending entry stands now (GetStagedEntry): pending, its number, refused, unknown."""
        tenant = await self._tenant(request)
        bucket = _int(request.query, "bucket", None, maximum=2**32 - 1)
        stream_id = request.query.get("stream_id", "")
        position = await self.audit.staged_entry(tenant, bucket, stream_id)
        await self._record(request, "GetStagedEntry")
        return web.json_response(
            {
                "bucket": bucket,
                "stream_id": stream_id,
                "state": position.state.name,
                "index": position.index,
            }
        )

    async def event(self, request: web.Request) -> web.Response:
        tenant = await self._tenant(request)
        index = _path_int(request, "index")
        _, leaf = await self.audit.event(tenant, index)
        await self._record(request, "GetEvent")
        return web.json_response(
            {"index": index, "entry": leaf.decode("utf-8"), "leaf_hash": _b64(leaf_hash(leaf))}
        )

    async def head(self, request: web.Request) -> web.Response:
        tenant = await self._tenant(request)
        signed = await self.audit.signed_head(tenant)
        await self._record(request, "GetTreeHead")
        return web.json_response(
            {
                "origin": signed.head.origin,
                "size": signed.head.size,
                "root_hash": _b64(signed.head.root_hash),
                "timestamp_ms": signed.head.timestamp_ms,
                "key_id": signed.key_id,
                "signature": _b64(signed.signature),
                "public_key_pem": self.audit.public_key_pem,
            }
        )

    async def inclusion(self, request: web.Request) -> web.Response:
        tenant = await self._tenant(request)
        index = _int(request.query, "index", None)
        size = _int(request.query, "tree_size", None)
        proof = await self.audit.inclusion_proof(tenant, index, size)
        await self._record(request, "GetInclusionProof")
        return web.json_response(
            {"hashes": [_b64(h) for h in proof.hashes], "leaf_hash": _b64(proof.leaf_hash)}
        )

    async def consistency(self, request: web.Request) -> web.Response:
        tenant = await self._tenant(request)
        first = _int(request.query, "first", None)
        second = _int(request.query, "second", None)
        hashes = await self.audit.consistency_proof(tenant, first, second)
        await self._record(request, "GetConsistencyProof")
        return web.json_response({"hashes": [_b64(h) for h in hashes]})

    async def charts_json(self, request: web.Request) -> web.Response:
        charts = await self._all_charts(request)
        return web.json_response({name: _chart_json(chart) for name, chart in charts.items()})

    async def chart_csv(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        charts = await self._all_charts(request)
        chart = charts.get(name)
        if chart is None:
            raise web.HTTPNotFound(text=f"no chart named {name}")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["label", *(series.label for series in chart.series)])
        for i, label in enumerate(chart.labels):
            writer.writerow([label, *(series.counts[i] for series in chart.series)])
        return web.Response(
            text=out.getvalue(),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )

    async def _all_charts(self, request: web.Request) -> dict[str, ChartData]:
        tenant = request[_SESSION_KEY].principal.tenant
        days = _int(request.query, "days", 30, maximum=MAX_DAYS, minimum=1)
        now_ms = time.time_ns() // 1_000_000
        first_day = (now_ms // DAY_MS - days + 1) * DAY_MS
        methods = [m.id for m in self.settings.methods_for(tenant).methods]
        erasures = await self.charts.erasures(
            tenant, now_ms, int(self.settings.erasure.overdue_after_seconds * 1000)
        )
        if not await self._has_log(request):
            daily: list[ChartData] = []
            reasons = ChartData("Top reason codes", [], [])
        else:
            daily = await self.charts.daily(tenant, first_day, days, methods)
            reasons = await self.charts.top_reasons(tenant, first_day, now_ms + 1)
        await self._record(request, "Charts")
        names = ["outcomes", "methods", "refusals", "rate_limits"]
        return {**dict(zip(names, daily, strict=False)), "reasons": reasons, "erasures": erasures}

    async def _record(self, request: web.Request, call: str, account_id: str = "") -> None:
        """Records a read of the log by the signed-in client, as AuditService records its own.

        Entries carry audit pseudonyms, which lead back to no account: the accounts read are
        known only when the query named one.
        """
        principal = request[_SESSION_KEY].principal
        reader = Reader.of(principal, f"Console.{call}")
        if account_id:
            await self.reads.record(principal.tenant, reader, _AUDIT, [account_id])
        else:
            await self.reads.record_call(principal.tenant, reader, _AUDIT)

    async def _tenant(self, request: web.Request) -> str:
        """The signed-in tenant, once its log is known to exist (NOT_FOUND otherwise)."""
        return await self.audit.tenant(request[_SESSION_KEY].principal, "")

    async def _has_log(self, request: web.Request) -> bool:
        try:
            await self._tenant(request)
        except NotFound:
            return False
        return True

    # -- middleware -----------------------------------------------------------------------------

    @web.middleware
    async def guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Security headers on every answer; a session for all but the sign-in page and assets."""
        try:
            response = await self._guarded(request, handler)
        except web.HTTPException as http_error:
            response = http_error
        except IdverifyError as error:
            response = _error_response(error)
        except _BadParameter as bad:
            response = web.json_response(
                {"reason": "BAD_PARAMETER", "field": bad.field, "message": str(bad)}, status=400
            )
        except EntryFormatError:
            log.error("console: a stored audit entry does not decode")  # noqa: TRY400 - no data in logs
            response = web.json_response(
                {"reason": "LOG_CORRUPTED", "message": "a stored entry does not decode"}, status=500
            )
        headers = response.headers
        headers["Content-Security-Policy"] = CSP
        headers["X-Content-Type-Options"] = "nosniff"
        # Same-origin, not no-referrer: with no-referrer a browser posts forms with "Origin: null",
        # which the same-origin check of a sign-in must refuse.
        headers["Referrer-Policy"] = "same-origin"
        headers["X-Frame-Options"] = "DENY"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers["Cross-Origin-Resource-Policy"] = "same-origin"
        headers.setdefault("Cache-Control", "no-store")
        if self.secure:
            headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    async def _guarded(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method == "POST" and not _same_origin(request):
            # SameSite=Strict keeps the cookie off cross-site posts; this refuses them outright.
            raise web.HTTPForbidden(text="cross-origin form refused")
        public = request.path in {"/signin", "/favicon.ico"} or request.path.startswith("/static/")
        if public:
            return await handler(request)
        session = await self.sessions.find(request.cookies.get(COOKIE, ""))
        if session is None:
            if request.path.startswith("/api/"):
                return web.json_response(
                    {"reason": "UNAUTHENTICATED", "message": "sign in first"}, status=401
                )
            if request.path == "/signout":
                raise web.HTTPSeeOther("/signin")
            raise web.HTTPSeeOther("/signin")
        request[_SESSION_KEY] = session
        return await handler(request)


def _listed(item: QueryResult) -> dict[str, Any]:
    """An entry as the event list shows it: a pending one has no index, and says where it was staged."""
    return {
        "index": item.event.index if item.pending is None else None,
        "pending": _position_json(item.pending),
        "time_ms": item.event.time_ms,
        "type": item.event.type,
        "outcome": item.event.outcome,
        "method": item.event.method,
        "reason": item.event.reason,
        "account": item.event.account,
    }


def _position_json(position: StagedAt | None) -> dict[str, Any] | None:
    return None if position is None else {"bucket": position.bucket, "stream_id": position.stream_id}


def _pending_after(query: Any) -> StagedAt | None:
    """The page's ``pending_after`` (``pending_bucket`` and ``pending_stream_id``), checked by the flow."""
    if query.get("pending_bucket", "") == "" and "pending_stream_id" not in query:
        return None
    return StagedAt(
        _int(query, "pending_bucket", None, maximum=2**32 - 1), query.get("pending_stream_id", "")
    )


def _next_page(
    page: list[QueryResult],
    beyond: list[QueryResult],
    cut: PendingReadLimit | None,
    from_index: int,
    after: StagedAt | None,
) -> tuple[int | None, StagedAt | None]:
    """Where the next page starts: its first index and the pending position it goes on after.

    A page that ends in the log part goes on at the next entry, its pending part still to come
    (after the same position); one that ends among pending entries goes on after the last one
    shown, its log part from the last numbered one (an entry numbered since is shown there); one
    the server's bound cut goes on where the cut says. (None, None) on the last page.
    """
    if beyond:
        if beyond[0].pending is None:
            return beyond[0].event.index, after
        numbered = [item.event.index for item in page if item.pending is None]
        last = page[-1].pending if page and page[-1].pending is not None else after
        return (numbered[-1] + 1 if numbered else from_index), last
    if cut is not None:
        return cut.start_index, cut.after
    return None, None


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        # Browsers send Origin on every POST; a form posted from a sandbox says "null".
        return origin is None
    return hmac.compare_digest(origin, f"{request.scheme}://{request.host}")


def _error_response(error: IdverifyError) -> web.Response:
    status = _HTTP_STATUS.get(error.status, 400)
    response = web.json_response(
        {"reason": error.reason, "field": error.field, "message": error.message}, status=status
    )
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(max(1, int(error.retry_after + 0.999)))
    return response


def _chart_json(chart: ChartData) -> dict[str, Any]:
    return {
        "title": chart.title,
        "labels": chart.labels,
        "series": [{"label": s.label, "counts": s.counts} for s in chart.series],
        "note": chart.note,
        "extra": chart.extra,
    }


class _BadParameter(ValueError):
    """A query parameter of the console's own (not a QueryEvents field): HTTP 400 naming it.

    Not an IdverifyError: these answers are the page's, not reason codes of the gRPC contract.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _int(query: Any, name: str, default: int | None, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    text = query.get(name, "")
    if text == "":
        if default is None:
            raise _BadParameter(name, f"{name} is required")
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 19:  # noqa: PLR2004 - int64 digits
        raise _BadParameter(name, f"{name}: a whole number")
    value = int(text)
    if not minimum <= value <= maximum:
        raise _BadParameter(name, f"{name}: from {minimum} to {maximum}")
    return value


def _optional_int(query: Any, name: str) -> int | None:
    return _int(query, name, None) if query.get(name, "") != "" else None


def _path_int(request: web.Request, name: str) -> int:
    return _int(request.match_info, name, None)


def tls_context(settings: Settings, *, client_certificates: bool = True) -> ssl.SSLContext | None:
    """The certificate and key of gRPC, and its client CA when it asks for client certificates.

    ``client_certificates=False`` never asks for one (vendor callbacks: a vendor has none).

    Raises:
        ConfigError: when the files cannot be read.
    """
    tls = settings.tls
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_certificates(context, settings)
    if tls.client_ca_file and client_certificates:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _load_certificates(context: ssl.SSLContext, settings: Settings) -> None:
    tls = settings.tls
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            context.load_verify_locations(tls.client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls: cannot load the certificate files for HTTPS: {exc}") from None


def _tls_stamps(settings: Settings) -> tuple[int, ...]:
    tls = settings.tls
    return tuple(Path(p).stat().st_mtime_ns for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p)


async def follow_certificates(context: ssl.SSLContext, settings: Settings, server: str = "console") -> None:
    """Loads the certificate files again when they change, as gRPC's credentials do.

    ``server`` names the HTTPS server in the log (the console, vendor callbacks).

    New handshakes use the new files; connections already open keep theirs. A new client CA is
    added to the trusted ones (OpenSSL has no way to drop one from a live context): rotating a
    client CA out takes a restart.
    """
    try:
        stamps = _tls_stamps(settings)
    except OSError:
        stamps = ()
    while True:
        await asyncio.sleep(TLS_CHECK_SECONDS)
        try:
            now = _tls_stamps(settings)
            if now == stamps:
                continue
            _load_certificates(context, settings)
        except (OSError, ConfigError):
            log.exception("%s: keeping the current certificate; the new files cannot be read", server)
            continue
        stamps = now
        log.info("%s: certificate files changed; new handshakes use them", server)


def build_app(
    settings: Settings,
    audit: AuditFlow,
    charts: Charts,
    sessions: ConsoleSessions,
    clients: ClientRegistry,
    *,
    reads: ReadLedger,
    secure: bool,
) -> web.Application:
    """The console's routes behind its guard."""
    handlers = _Handlers(
        settings,
        audit,
        charts,
        sessions,
        clients,
        reads=reads,
        secure=secure,
    )
    app = web.Application(middlewares=[handlers.guard], client_max_size=16 * 1024)
    app.add_routes(
        [
            web.get("/signin", handlers.get_signin),
            web.post("/signin", handlers.post_signin),
            web.post("/signout", handlers.post_signout),
            web.get("/", handlers.index),
            web.get("/static/{name}", handlers.static),
            web.get("/api/me", handlers.me),
            web.get("/api/events", handlers.events),
            web.get("/api/events/{index}", handlers.event),
            web.get("/api/staged", handlers.staged),
            web.get("/api/head", handlers.head),
            web.get("/api/proof/inclusion", handlers.inclusion),
            web.get("/api/proof/consistency", handlers.consistency),
            web.get("/api/charts", handlers.charts_json),
            web.get("/api/charts/{name}.csv", handlers.chart_csv),
        ]
    )
    return app


async def start_console(
    settings: Settings,
    audit: AuditFlow,
    charts: Charts,
    sessions: ConsoleSessions,
    clients: ClientRegistry,
    *,
    reads: ReadLedger,
    reuse_port: bool = False,
) -> RunningSite:
    """Starts serving the console where ``settings.console_host_port`` says.

    Raises:
        RuntimeError: when the port cannot be bound.
        ConfigError: when the TLS files cannot be read.
    """
    context = tls_context(settings)
    app = build_app(settings, audit, charts, sessions, clients, reads=reads, secure=context is not None)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    return await start_site(
        runner, settings, settings.console_host_port, context, "console", reuse_port=reuse_port
    )


@dataclass(frozen=True, slots=True)
class RunningSite:
    """An HTTP(S) site serving (the console, the callbacks): its port and URL, and how to stop it."""

    runner: web.AppRunner
    port: int
    url: str
    certificates: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """Stops following the certificate, then closes the port and the connections."""
        if self.certificates is not None:
            self.certificates.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.certificates
        await self.runner.cleanup()


async def start_site(
    runner: web.AppRunner,
    settings: Settings,
    host_port: tuple[str, int],
    context: ssl.SSLContext | None,
    server: str,
    *,
    reuse_port: bool = False,
) -> RunningSite:
    """Sets ``runner`` up and serves it on ``host_port`` (the console's and the callbacks' port).

    The socket is bound here (SO_REUSEPORT when the supervisor's workers share the port), so a
    port that cannot be bound is one line naming ``server``, and the runner is cleaned up.

    Raises:
        RuntimeError: when the port cannot be bound.
    """
    await runner.setup()
    host, port = host_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        await runner.cleanup()
        raise RuntimeError(f"cannot listen on {server} port {host}:{port}: {exc.strerror}") from None
    bound = sock.getsockname()[1]
    await web.SockSite(runner, sock, ssl_context=context).start()
    scheme = "https" if context is not None else "http"
    shown = f"[{host}]" if ":" in host else host
    follow = (
        asyncio.create_task(follow_certificates(context, settings, server)) if context is not None else None
    )
    return RunningSite(runner, bound, f"{scheme}://{shown}:{bound}/", follow)

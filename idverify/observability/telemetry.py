"""OpenTelemetry traces and metrics behind one PII-safe attribute allow-list.

Every span, metric and log attribute idverify emits passes :func:`safe_attributes`: only
allow-listed keys survive, and only with short, plain values (ids, codes, enum names), so a
name, document number or phone can never ride along even if a caller passes one by mistake.
Spans exported by anything else in the process pass the same filter in the exporter.

Exporters are chosen by config: ``none`` (default), ``console``, ``otlp`` (gRPC) or
``otlp-http``; metrics also through a Prometheus scrape endpoint on its own port.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from idverify.config import TelemetrySettings
from idverify.observability.light_spans import LightTracer

ALLOWED_ATTRIBUTES = frozenset(
    {
        "rpc.system",
        "rpc.service",
        "rpc.method",
        "rpc.grpc.status_code",
        "idverify.tenant",
        "idverify.role",
        "idverify.method",
        "idverify.verifier",
        "idverify.outcome",
        "idverify.reason",
        "idverify.status",
        "idverify.script",
        "idverify.limit",
        "idverify.provider",
        "idverify.display",
        "idverify.event",
        "idverify.request_id",
        "idverify.verification_id",
        "idverify.webhook_id",
        "idverify.vendor_code",
        "error.type",
    }
)
# Values are short codes: ASCII letters, digits and a few separators; never free text. The
# display label of an IP location (a province or country name) is the one exception allowed by
# key, because it is itself the minimised, published form.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/\-]{0,80}$")
_FREE_TEXT_KEYS = frozenset({"idverify.display"})
# Six or more digits in a row could be a phone, document or card number: never exported, except
# in identifiers idverify generates itself (random hex).
_DIGIT_RUN = re.compile(r"\d{6,}")
_GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
# Webhook subscription ids are 16 random hex digits (webhooks/subscriptions.py).
_ID_FORMS = {"idverify.verification_id": _GENERATED_ID, "idverify.webhook_id": re.compile(r"^[0-9a-f]{16}$")}
_MAX_DISPLAY = 16
_TRACER_NAME = "idverify"

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("idverify_request_id", default="")


def safe_attributes(attributes: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """The allow-listed subset of ``attributes`` whose values look like codes, not data."""
    kept: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if key not in ALLOWED_ATTRIBUTES:
            continue
        if isinstance(value, bool | int | float):
            kept[key] = value
        elif isinstance(value, str):
            if key in _FREE_TEXT_KEYS:
                if len(value) <= _MAX_DISPLAY and not any(c.isdigit() for c in value):
                    kept[key] = value
            elif key in _ID_FORMS:
                if _ID_FORMS[key].match(value):
                    kept[key] = value
            elif _SAFE_VALUE.match(value) and not _DIGIT_RUN.search(value):
                kept[key] = value
    return kept


class AllowListSpanExporter(SpanExporter):
    """Wraps an exporter so that no span leaves the process with a non-allow-listed attribute."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Exports the spans, each one that carries something the filter drops as a filtered copy."""
        return self._inner.export([span if _is_clean(span) else _filtered(span) for span in spans])

    def shutdown(self) -> None:
        """Shuts the wrapped exporter down."""
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flushes the wrapped exporter."""
        return self._inner.force_flush(timeout_millis)


def _is_clean(span: ReadableSpan) -> bool:
    """Whether the filter would leave the span as it is (idverify's own spans always are).

    Copying every span cost as much as encoding it for OTLP; only foreign spans need the copy.
    """
    attributes = dict(span.attributes or {})
    return (
        not span.events
        and not any(link.attributes for link in span.links)
        and _SAFE_VALUE.match(span.name) is not None
        and len(cached_safe_attributes(attributes)) == len(attributes)
    )


def _filtered(span: ReadableSpan) -> ReadableSpan:
    return ReadableSpan(
        name=span.name if _SAFE_VALUE.match(span.name.replace(" ", "_")) else "redacted",
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=safe_attributes(span.attributes or {}),
        events=[],
        # A link is two random ids and flags (a webhook delivery's to the change's span): kept,
        # without attributes.
        links=[trace.Link(link.context) for link in span.links],
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class Tally:
    """A monotonic counter summed in the process and read by the SDK only when it collects.

    The SDK's own counter cleans, hashes and locks its attributes on every add: on a cheap RPC
    that was a tenth of what telemetry cost. Here an add is a dict update under a lock, and an
    observable counter of the same name reports the sums at each collection.
    """

    def __init__(self, meter: metrics.Meter, name: str, description: str) -> None:
        self._totals: dict[tuple[tuple[str, AttributeValue], ...], int] = {}
        self._lock = threading.Lock()
        meter.create_observable_counter(name, callbacks=[self._observe], description=description)

    def add(self, value: int, attributes: Mapping[str, AttributeValue]) -> None:
        """Adds ``value`` to the sum of one attribute set (already allow-listed)."""
        key = tuple(attributes.items())
        with self._lock:
            self._totals[key] = self._totals.get(key, 0) + value

    def _observe(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:
            totals = list(self._totals.items())
        return [metrics.Observation(total, dict(key)) for key, total in totals]


class Instruments:
    """The service's metrics (OpenTelemetry instruments; no-ops until a provider is set)."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.verifications_started = Tally(
            meter, "idverify.verifications.started", description="verifications started, by method"
        )
        self.verifications_finished = Tally(
            meter,
            "idverify.verifications.finished",
            description="verifications ended, by method, status and reason",
        )
        self.challenge_sends = Tally(meter, "idverify.challenges.sent", description="codes sent")
        self.challenge_failures = Tally(
            meter, "idverify.challenges.failed", description="wrong answers to challenges"
        )
        self.binding_refusals = Tally(
            meter, "idverify.bindings.refused", description="bindings refused, by reason"
        )
        self.rate_limit_hits = Tally(meter, "idverify.rate_limits.hit", description="calls over a limit")
        self.vendor_callbacks = Tally(
            meter, "idverify.callbacks.received", description="vendor callbacks, by outcome or refusal"
        )
        self.rpc_duration = meter.create_histogram(
            "idverify.rpc.duration", unit="s", description="server-side RPC latency, by method and code"
        )
        self.argon2_duration = meter.create_histogram(
            "idverify.argon2.duration", unit="s", description="wall time of one identity-index hash"
        )
        self.ip_lookups = Tally(meter, "idverify.ip.lookups", description="IP lookups, by provider")
        self.redis_errors = Tally(meter, "idverify.redis.errors", description="Redis failures")
        self.store_full = Tally(
            meter, "idverify.redis.store_full", description="writes refused by a Redis at its memory limit"
        )
        self.store_cannot_persist = Tally(
            meter,
            "idverify.redis.store_cannot_persist",
            description="writes refused (MISCONF) by a Redis that cannot write its disk",
        )

        self.webhook_attempts = Tally(
            meter,
            "idverify.webhooks.attempts",
            description="webhook deliveries tried, by subscription and outcome",
        )
        self.webhook_failures = Tally(
            meter,
            "idverify.webhooks.failures",
            description="webhook deliveries without a 2xx, by subscription and reason",
        )
        self.webhook_failing = Tally(
            meter,
            "idverify.webhooks.failing",
            description="subscriptions marked failing after the retry period",
        )
        self.webhook_pending = meter.create_up_down_counter(
            "idverify.webhooks.pending",
            description="events read for a subscription and not yet acknowledged (up to a batch of 200)",
        )
        self.webhook_latency = meter.create_histogram(
            "idverify.webhooks.latency",
            unit="s",
            description="from an event's state change to its receiver's 2xx",
        )
        self.webhook_request_duration = meter.create_histogram(
            "idverify.webhooks.request.duration", unit="s", description="wall time of one webhook POST"
        )

    @staticmethod
    def add(counter: Tally, value: int = 1, **attributes: Any) -> None:
        """Adds to a counter with allow-listed attributes only."""
        counter.add(value, cached_safe_attributes({f"idverify.{k}": v for k, v in attributes.items()}))

    @staticmethod
    def record(histogram: metrics.Histogram, value: float, **attributes: Any) -> None:
        """Records a histogram value with allow-listed attributes only."""
        histogram.record(value, cached_safe_attributes(attributes))


# Metric and most span attributes are few by design (method, code, provider, tenant, role), and
# filtering them on every call showed in the cost of a cheap RPC. Only sets the filter kept
# whole are remembered, so that nothing it would drop is held here.
_FILTERED_METRIC_ATTRIBUTES: dict[tuple[tuple[str, Any], ...], dict[str, AttributeValue]] = {}
_MAX_METRIC_ATTRIBUTE_SETS = 4096


def cached_safe_attributes(attributes: dict[str, Any]) -> dict[str, AttributeValue]:
    """:func:`safe_attributes`, remembered for attribute sets that repeat (codes, not ids)."""
    key = tuple(attributes.items())
    try:
        kept = _FILTERED_METRIC_ATTRIBUTES.get(key)
    except TypeError:  # an unhashable value: the filter drops it anyway
        return safe_attributes(attributes)
    if kept is None:
        kept = safe_attributes(attributes)
        if len(kept) == len(attributes) and len(_FILTERED_METRIC_ATTRIBUTES) < _MAX_METRIC_ATTRIBUTE_SETS:
            _FILTERED_METRIC_ATTRIBUTES[key] = kept
    return kept


instruments = Instruments(metrics.get_meter(_TRACER_NAME))


# A no-op proxy until configure() replaces it with the LightTracer of the exporters it sets up.
# Asking the SDK for a tracer on every span cost more than the span itself (it builds a new
# Tracer and its instrumentation scope, under a warnings filter, each time).
_TRACER: trace.Tracer = trace.get_tracer(_TRACER_NAME)


def tracing() -> bool:
    """Whether spans are exported (a tracer other than the no-op one is installed)."""
    return isinstance(_TRACER, LightTracer)


def tracer() -> trace.Tracer:
    """The idverify tracer (a no-op until :func:`configure` installs a provider)."""
    return _TRACER


class _Untraced:
    """A span while none is exported: the current one (an incoming call's context), left current.

    What the no-op tracer's spans amounted to, without starting one, filtering its attributes
    and attaching a context for it: a few of those on every call were a share of a signup's
    CPU in the worker's loop with the default settings (docs/PERFORMANCE.md).
    """

    __slots__ = ()

    def __enter__(self) -> trace.Span:
        return trace.get_current_span()

    def __exit__(self, *_: object) -> None:
        return None


_UNTRACED = _Untraced()


def span(
    name: str, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any
) -> AbstractContextManager[trace.Span]:
    """A child span with allow-listed attributes (keys given without the ``idverify.`` prefix)."""
    if not tracing():
        return _UNTRACED
    return _current_span(name, kind, attributes)


@contextmanager
def _current_span(name: str, kind: SpanKind, attributes: Mapping[str, Any]) -> Iterator[trace.Span]:
    with tracer().start_as_current_span(
        name, kind=kind, attributes=safe_attributes({f"idverify.{k}": v for k, v in attributes.items()})
    ) as current:
        yield current


class _LeafSpan:
    """Ends its span on exit, marking it failed on an exception (a class: see :func:`leaf_span`)."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def __enter__(self) -> trace.Span:
        return self._span

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> None:
        if error is not None:
            self._span.set_status(Status(StatusCode.ERROR))
        self._span.end()


def leaf_span(name: str, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> _LeafSpan | _Untraced:
    """A child span of the current one that never has children of its own (a script, a hash).

    It is not made the current span, and it is a plain class rather than a generator-based
    context manager: on a call that costs a few hundred microseconds, attaching contexts and
    driving generators were a measurable part of what tracing cost.
    """
    if not tracing():
        return _UNTRACED
    filtered = (
        cached_safe_attributes({f"idverify.{k}": v for k, v in attributes.items()}) if attributes else None
    )
    return _LeafSpan(_TRACER.start_span(name, kind=kind, attributes=filtered))


@contextmanager
def timed(histogram: metrics.Histogram, **attributes: Any) -> Iterator[None]:
    """Records the wall time of a block into a histogram."""
    began = time.perf_counter()
    try:
        yield
    finally:
        Instruments.record(histogram, time.perf_counter() - began, **attributes)


def extract_context(metadata: Sequence[tuple[str, str | bytes]] | None) -> Any:
    """The W3C trace context carried by incoming gRPC metadata (empty when none)."""
    carrier = {k: v for k, v in metadata or () if isinstance(v, str) and k in {"traceparent", "tracestate"}}
    return propagate.extract(carrier) if carrier else None


class _ServerSpan:
    """Makes its span the current one while the call runs, and ends it after."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._token: object = None

    def __enter__(self) -> trace.Span:
        self._token = context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, *_: object) -> None:
        context.detach(self._token)  # type: ignore[arg-type]
        self._span.end()


def server_span(full_method: str, metadata: Sequence[tuple[str, str | bytes]] | None) -> _ServerSpan:
    """The server span of one RPC, continuing an incoming W3C trace; use it with ``with``.

    Status and exceptions are the caller's to record (:func:`end_rpc`): a refused call is not a
    failed one.
    """
    service, _, method = full_method.lstrip("/").partition("/")
    return _ServerSpan(
        _TRACER.start_span(
            method,
            context=extract_context(metadata),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
            record_exception=False,
            set_status_on_exception=False,
        )
    )


def end_rpc(current: trace.Span, code: str) -> None:
    """Marks the RPC's outcome on its span."""
    current.set_attribute("rpc.grpc.status_code", code)
    if code not in {
        "OK",
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "RESOURCE_EXHAUSTED",
        "ALREADY_EXISTS",
    }:
        current.set_status(Status(StatusCode.ERROR))


def current_span_context() -> str:
    """The current span's context as ``<trace id>-<span id>-<flags>`` in hex, or empty.

    Random ids and the sampled flag, nothing about the call: an outbox record keeps it so that a
    webhook delivery's span links to the span of the change (idverify/webhooks/delivery.py).
    """
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return f"{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span as hex, or empty strings."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


@dataclass
class Telemetry:
    """What :func:`configure` installed, for shutdown."""

    tracer_provider: TracerProvider | None = None
    meter_provider: Any = None
    prometheus_server: Any = None

    def shutdown(self) -> None:
        """Flushes and stops exporters."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        if self.prometheus_server is not None:
            self.prometheus_server.shutdown()


def configure(settings: TelemetrySettings, extra_span_exporters: Sequence[SpanExporter] = ()) -> Telemetry:
    """Installs tracer and meter providers with the chosen exporters.

    Raises:
        ValueError: on an unknown exporter name.
    """
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider  # noqa: PLC0415 - only when on
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased  # noqa: PLC0415

    resource = Resource.create({"service.name": settings.service_name})
    installed = Telemetry()
    exporters = [*_span_exporters(settings), *extra_span_exporters]
    if exporters:
        # A ratio of 1 samples everything: ALWAYS_ON says so without hashing each trace id.
        root_sampler = ALWAYS_ON if settings.sample_ratio >= 1 else TraceIdRatioBased(settings.sample_ratio)
        sampler = ParentBased(root_sampler)
        provider = TracerProvider(resource=resource, sampler=sampler)
        processors = [BatchSpanProcessor(AllowListSpanExporter(exporter)) for exporter in exporters]
        for processor in processors:
            provider.add_span_processor(processor)
        # The provider serves other libraries' spans, and flushes and shuts the processors down.
        trace.set_tracer_provider(provider)
        installed.tracer_provider = provider
        # idverify's own spans skip the SDK's per-span machinery (idverify/observability/light_spans.py).
        global _TRACER  # noqa: PLW0603 - rebound once, at start-up
        _TRACER = LightTracer(
            sampler=sampler,
            resource=resource,
            scope=InstrumentationScope(_TRACER_NAME),
            processors=processors,
        )
    readers, installed.prometheus_server = _metric_readers(settings)
    if readers:
        # Instruments made earlier through the API's proxy meter start recording from here on.
        # Exemplars would sample every measurement taken inside a sampled span: on LookupIp that
        # was a measurable share of the call. Traces and metrics still correlate through the logs' ids.
        meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, exemplar_filter=AlwaysOffExemplarFilter()
        )
        metrics.set_meter_provider(meter_provider)
        installed.meter_provider = meter_provider
    return installed


def _span_exporters(settings: TelemetrySettings) -> list[SpanExporter]:
    kind = settings.traces
    if kind == "none":
        return []
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

        return [ConsoleSpanExporter()]
    if kind == "otlp":
        from idverify.observability.otlp_encoding import HandEncodedSpanExporter  # noqa: PLC0415

        return [HandEncodedSpanExporter(endpoint=settings.otlp_endpoint or None, insecure=True)]
    if kind == "otlp-http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as HttpSpanExporter,
        )

        return [HttpSpanExporter(endpoint=settings.otlp_endpoint or None)]
    msg = f"telemetry.traces: unknown exporter {kind!r} (none, console, otlp, otlp-http)"
    raise ValueError(msg)


def _metric_readers(settings: TelemetrySettings) -> tuple[list[Any], Any]:
    readers: list[Any] = []
    server = None
    for kind in filter(None, (k.strip() for k in settings.metrics.split(","))):
        if kind == "none":
            continue
        if kind == "prometheus":
            from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: PLC0415
            from prometheus_client import start_http_server  # noqa: PLC0415

            readers.append(PrometheusMetricReader())
            host = settings.prometheus_host or "127.0.0.1"
            server, _thread = start_http_server(settings.prometheus_port, addr=host)
        elif kind in {"otlp", "otlp-http"}:
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # noqa: PLC0415

            if kind == "otlp":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # noqa: PLC0415
                    OTLPMetricExporter,
                )

                exporter: Any = OTLPMetricExporter(endpoint=settings.otlp_endpoint or None, insecure=True)
            else:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
                    OTLPMetricExporter as HttpMetricExporter,
                )

                exporter = HttpMetricExporter(endpoint=settings.otlp_endpoint or None)
            readers.append(PeriodicExportingMetricReader(exporter))
        else:
            msg = f"telemetry.metrics: unknown exporter {kind!r} (none, prometheus, otlp, otlp-http)"
            raise ValueError(msg)
    return readers, server

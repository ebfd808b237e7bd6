"""A tracer for idverify's own spans that skips the SDK's per-span machinery.

The SDK's span keeps its attributes in a locked, bounded, validating mapping, its events and
links in locked bounded lists, and takes a lock to end: on a LookupIp call that was most of
what tracing cost (docs/PERFORMANCE.md). The
spans made here have the same sampling, ids, parents, resource and scope, and reach the same
span processors as :class:`opentelemetry.sdk.trace.ReadableSpan` objects, so exporters cannot
tell them apart. Attribute values are checked against the types OpenTelemetry allows (others
are dropped, as the SDK drops them), and a span keeps at most ``MAX_ATTRIBUTES``.

A span is used by one task at a time (the call it belongs to), so it takes no lock.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

MAX_ATTRIBUTES = 128
_PRIMITIVES = (bool, str, int, float)


def _valid_value(value: Any) -> Any:
    """The value as OpenTelemetry allows it (a primitive, a homogeneous tuple, a map), else None."""
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, Mapping):  # the SDK keeps maps (OTLP AnyValue) as well
        return {k: v for k, v in value.items() if isinstance(k, str) and _valid_value(v) is not None}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = tuple(value)
        kinds = {type(item) for item in items if item is not None}
        if len(kinds) <= 1 and all(kind in _PRIMITIVES for kind in kinds):
            return items
    return None


class LightSpan(trace_api.Span):
    """A recording span that becomes a ReadableSpan for the span processors when it ends."""

    __slots__ = (
        "_attributes",
        "_context",
        "_dropped_attributes",
        "_end_time",
        "_events",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_processors",
        "_record_exception",
        "_scope",
        "_set_status_on_exception",
        "_start_time",
        "_status",
        "_tracer",
    )

    def __init__(  # noqa: PLR0917 - the facts of one span
        self,
        tracer: LightTracer,
        name: str,
        span_context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: types.Attributes,
        links: Sequence[Link],
        start_time: int | None,
        *,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._context = span_context
        self._parent = parent
        self._kind = kind
        self._attributes: dict[str, Any] = {}
        self._dropped_attributes = 0
        self._events: list[Event] = []
        self._links = tuple(links)
        self._status = Status(StatusCode.UNSET)
        self._start_time = start_time if start_time is not None else time.time_ns()
        self._end_time: int | None = None
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        if attributes:
            self.set_attributes(attributes)

    def get_span_context(self) -> SpanContext:
        """The span's ids and flags."""
        return self._context

    def is_recording(self) -> bool:
        """True until the span ends."""
        return self._end_time is None

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        """Sets several attributes (invalid values and keys beyond the limit are dropped)."""
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        """Sets one attribute (an invalid value or a key beyond the limit is dropped)."""
        if self._end_time is not None or not key or not isinstance(key, str):
            return
        valid = value if type(value) in _PRIMITIVES else _valid_value(value)
        if valid is None:
            return
        if key not in self._attributes and len(self._attributes) >= MAX_ATTRIBUTES:
            self._dropped_attributes += 1
            return
        self._attributes[key] = valid

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        """Records an event."""
        if self._end_time is not None:
            return
        kept = {k: v for k, v in (attributes or {}).items() if _valid_value(v) is not None}
        self._events.append(Event(name, kept, timestamp if timestamp is not None else time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        """Adds a link to another span."""
        if self._end_time is None and context.is_valid:
            self._links = (*self._links, Link(context, attributes))

    def update_name(self, name: str) -> None:
        """Renames the span."""
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Sets the status; OK is final, and UNSET never overrides."""
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        new = status if isinstance(status, Status) else Status(status, description)
        if new.status_code is not StatusCode.UNSET:
            self._status = new

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Records an exception as an event, as the SDK does."""
        event_attributes: dict[str, Any] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        event_attributes.update(attributes or {})
        self.add_event("exception", event_attributes, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """Ends the span and hands it to the span processors (once)."""
        if self._end_time is not None:
            return
        self._end_time = end_time if end_time is not None else time.time_ns()
        finished = ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=self._tracer.resource,
            attributes=self._finished_attributes(),
            events=tuple(self._events),
            links=self._links,
            kind=self._kind,
            status=self._status,
            start_time=self._start_time,
            end_time=self._end_time,
            instrumentation_scope=self._tracer.scope,
        )
        for processor in self._tracer.processors:
            processor.on_end(finished)

    def _finished_attributes(self) -> types.Attributes:
        if not self._dropped_attributes:
            return MappingProxyType(self._attributes)
        # Only the SDK's bounded mapping reports drops to exporters: built for the rare span
        # that had too many.
        bounded = BoundedAttributes(MAX_ATTRIBUTES, self._attributes, immutable=True)
        bounded.dropped = self._dropped_attributes
        return bounded

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        """Ends the span, recording an exception that escaped it if asked to."""
        if error is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(error, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self.end()


class LightTracer(trace_api.Tracer):
    """Starts :class:`LightSpan` spans under a sampler, for a resource and scope, into processors."""

    def __init__(
        self,
        *,
        sampler: Sampler,
        resource: Resource,
        scope: InstrumentationScope,
        processors: Sequence[SpanProcessor],
        id_generator: IdGenerator | None = None,
    ) -> None:
        self._sampler = sampler
        self.resource = resource
        self.scope = scope
        self.processors = tuple(processors)
        self._ids = id_generator or RandomIdGenerator()

    def start_span(  # noqa: PLR0917 - the API's signature
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        """A span, recording if the sampler says so, child of the current span (or ``context``'s)."""
        links = links or ()
        parent: SpanContext | None = trace_api.get_current_span(context).get_span_context()
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self._ids.generate_trace_id()
        else:
            trace_id = parent.trace_id
        sampling = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
        flags = TraceFlags(
            TraceFlags.SAMPLED if sampling.decision is Decision.RECORD_AND_SAMPLE else TraceFlags.DEFAULT
        )
        span_context = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=sampling.trace_state,
        )
        if sampling.decision is Decision.DROP:
            return trace_api.NonRecordingSpan(span_context)
        return LightSpan(
            self,
            name,
            span_context,
            parent,
            kind,
            sampling.attributes,
            links,
            start_time,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # noqa: PLR0917 - the API's signature
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace_api.Span]:
        """A span made the current one while the block runs."""
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        with trace_api.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current

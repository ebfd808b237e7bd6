"""LightTracer: spans that reach the processors as the SDK's would, with the SDK's rules."""

from __future__ import annotations

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from idverify.observability.light_spans import MAX_ATTRIBUTES, LightTracer

RESOURCE = Resource.create({"service.name": "light-test"})
SCOPE = InstrumentationScope("idverify")


def tracers(
    sampler: object = None,
) -> tuple[LightTracer, InMemorySpanExporter, trace.Tracer, InMemorySpanExporter]:
    """A light tracer and an SDK tracer with the same sampler, resource and scope name."""
    chosen = sampler or ParentBased(ALWAYS_ON)
    light_out, sdk_out = InMemorySpanExporter(), InMemorySpanExporter()
    light = LightTracer(
        sampler=chosen, resource=RESOURCE, scope=SCOPE, processors=[SimpleSpanProcessor(light_out)]
    )
    provider = TracerProvider(resource=RESOURCE, sampler=chosen)
    provider.add_span_processor(SimpleSpanProcessor(sdk_out))
    return light, light_out, provider.get_tracer("idverify"), sdk_out


def shape(span: ReadableSpan) -> tuple[object, ...]:
    """What an exporter reads of a span, apart from ids and times."""
    return (
        span.name,
        span.kind,
        dict(span.attributes or {}),
        # Stack traces name different frames: the two tracers' own.
        [
            (e.name, {k: v for k, v in (e.attributes or {}).items() if k != "exception.stacktrace"})
            for e in span.events
        ],
        [dict(link.attributes or {}) for link in span.links],
        span.status.status_code,
        span.status.description,
        span.parent is not None,
        span.resource.attributes == RESOURCE.attributes,
        span.instrumentation_scope.name if span.instrumentation_scope else None,
        span.dropped_attributes,
        span.dropped_events,
        span.dropped_links,
    )


def exercise(tracer: trace.Tracer) -> None:
    """The same calls on either tracer: nesting, attributes, events, links, status, an error."""
    linked = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with tracer.start_as_current_span(
        "LookupIp", kind=SpanKind.SERVER, attributes={"rpc.method": "LookupIp"}, links=[trace.Link(linked)]
    ) as server:
        server.set_attributes({"idverify.tenant": "t", "idverify.flags": [1, 2], "bad": {"a": 1}})
        server.set_attribute("idverify.ok", value=True)
        child = tracer.start_span("geo.lookup", attributes={"idverify.provider": "GeoLite2"})
        child.add_event("step", {"outcome": "pass"})
        child.set_status(Status(StatusCode.OK))
        child.set_status(Status(StatusCode.ERROR, "ignored after OK"))
        child.end()
        child.set_attribute("after.end", "dropped")
        child.end()
        with pytest.raises(ValueError, match="boom"), tracer.start_as_current_span("failing"):
            raise ValueError("boom")
        server.set_status(StatusCode.UNSET)


class TestLightTracer:
    def test_spans_read_as_the_sdks_do(self) -> None:
        """Attributes, events, links, status rules, nesting and errors match the SDK's spans."""
        light, light_out, sdk, sdk_out = tracers()
        exercise(light)
        exercise(sdk)
        assert [shape(s) for s in light_out.get_finished_spans()] == [
            shape(s) for s in sdk_out.get_finished_spans()
        ]

    def test_children_share_the_trace_and_name_their_parent(self) -> None:
        """A child continues its parent's trace; a root starts a new one."""
        light, out, _, _ = tracers()
        with light.start_as_current_span("root") as root:
            light.start_span("child").end()
        light.start_span("other root").end()
        child, parent, other = out.get_finished_spans()
        assert child.context.trace_id == parent.context.trace_id == root.get_span_context().trace_id
        assert child.parent == parent.context
        assert other.parent is None
        assert other.context.trace_id != parent.context.trace_id

    def test_a_remote_parent_in_a_context_is_continued(self) -> None:
        """An incoming W3C parent (a remote span context) is the span's parent, sampled or not."""
        light, out, _, _ = tracers()
        remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        light.start_span("server", context=trace.set_span_in_context(NonRecordingSpan(remote))).end()
        (span,) = out.get_finished_spans()
        assert (span.context.trace_id, span.parent) == (0x1234, remote)

        unsampled = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
        dropped = light.start_span("server", context=trace.set_span_in_context(NonRecordingSpan(unsampled)))
        assert not dropped.is_recording()
        dropped.end()
        assert len(out.get_finished_spans()) == 1

    def test_a_sampler_that_drops_makes_no_span(self) -> None:
        """ALWAYS_OFF gives non-recording spans that reach no processor."""
        light, out, _, _ = tracers(ALWAYS_OFF)
        with light.start_as_current_span("x") as span:
            span.set_attribute("k", "v")
        assert not span.is_recording()
        assert out.get_finished_spans() == ()

    def test_attributes_are_bounded(self) -> None:
        """Past MAX_ATTRIBUTES new keys are dropped and counted; existing keys still update."""
        light, out, _, _ = tracers()
        span = light.start_span("many", attributes={f"k{n}": n for n in range(MAX_ATTRIBUTES + 5)})
        span.set_attribute("k0", "updated")
        span.end()
        (finished,) = out.get_finished_spans()
        assert len(finished.attributes or {}) == MAX_ATTRIBUTES
        assert finished.dropped_attributes == 5
        assert (finished.attributes or {})["k0"] == "updated"

    def test_the_current_span_is_restored(self) -> None:
        """start_as_current_span makes the span current only inside its block."""
        light, _, _, _ = tracers()
        before = trace.get_current_span()
        token = context.attach(context.get_current())
        try:
            with light.start_as_current_span("x") as span:
                assert trace.get_current_span() is span
            assert trace.get_current_span() is before
        finally:
            context.detach(token)

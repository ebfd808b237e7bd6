"""What leaves the process: the span filter at the exporter, and counters summed in process."""

from __future__ import annotations

import threading

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from idverify.observability.telemetry import AllowListSpanExporter, Tally


def _exported(emit: str) -> tuple[ReadableSpan, ReadableSpan]:
    """(the span as the SDK ended it, the span as the exporter received it)."""
    received = InMemorySpanExporter()
    ended = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ended))
    provider.add_span_processor(SimpleSpanProcessor(AllowListSpanExporter(received)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(emit) as span:
        span.set_attribute("rpc.method", "LookupIp")
        if emit == "foreign":
            span.set_attribute("user.name", "张三")
            span.set_attribute("idverify.tenant", "13800138000")
            span.add_event("query", {"sql": "SELECT * FROM people WHERE phone = '13800138000'"})
    return ended.get_finished_spans()[0], received.get_finished_spans()[0]


class TestAllowListSpanExporter:
    def test_a_clean_span_is_exported_as_it_is(self) -> None:
        ended, received = _exported("clean")
        assert received is ended
        assert dict(received.attributes or {}) == {"rpc.method": "LookupIp"}

    def test_a_span_with_personal_data_is_exported_as_a_filtered_copy(self) -> None:
        ended, received = _exported("foreign")
        assert received is not ended
        assert dict(received.attributes or {}) == {"rpc.method": "LookupIp"}
        assert list(received.events) == []
        assert received.context == ended.context


class TestTally:
    def test_sums_per_attribute_set_reach_the_reader(self) -> None:
        reader = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[reader]).get_meter("test")
        lookups = Tally(meter, "test.lookups", description="lookups")
        lookups.add(2, {"idverify.provider": "mmdb"})
        lookups.add(1, {"idverify.provider": "xdb"})
        lookups.add(3, {"idverify.provider": "mmdb"})
        assert _points(reader, "test.lookups") == {("mmdb",): 5, ("xdb",): 1}
        lookups.add(1, {"idverify.provider": "xdb"})
        assert _points(reader, "test.lookups") == {("mmdb",): 5, ("xdb",): 2}

    def test_adds_from_many_threads_are_all_counted(self) -> None:
        reader = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[reader]).get_meter("test")
        sends = Tally(meter, "test.sends", description="sends")

        def add_many() -> None:
            for _ in range(20_000):
                sends.add(1, {"idverify.method": "sms"})

        threads = [threading.Thread(target=add_many) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert _points(reader, "test.sends") == {("sms",): 80_000}


def _points(reader: InMemoryMetricReader, name: str) -> dict[tuple[object, ...], float]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        tuple((point.attributes or {}).values()): point.value  # type: ignore[union-attr]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    }

"""OTLP trace export requests written straight to protobuf wire format.

The OpenTelemetry exporters build a protobuf object for every span, attribute and value before
serializing them: more than creating and ending the span itself, and on a LookupIp call the
largest part of what tracing cost. Writing the bytes directly costs a fraction of that
(docs/PERFORMANCE.md has the figures). The output is the same message the stock encoder builds
(``tests/unit/observability/test_otlp_encoding.py`` parses both and compares them).

:class:`HandEncodedSpanExporter` is the stock OTLP/gRPC exporter (retries, timeouts,
compression, headers) with this encoding. The OTLP/HTTP exporter offers no such seam and keeps
its own encoder.

Wire format: protobuf's encoding guide; messages:
``opentelemetry/proto/collector/trace/v1/trace_service.proto`` and the files it imports.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext

from idverify.protobuf_wire import length_delimited, varint

# A span's flags say whether its parent was remote (SpanFlags in trace.proto).
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_INT64_WRAP = 1 << 64
_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
_double = struct.Struct("<d").pack


# Attribute pairs repeat from span to span (method names, codes, tenants): their encodings are
# remembered, up to a bound, since unique values (request ids) would otherwise fill the memo.
_KEY_VALUES: dict[tuple[str, type, Any], bytes] = {}
_MAX_KEY_VALUES = 4096


def _any_value(value: Any) -> bytes:  # noqa: PLR0911 - a return per case of the oneof
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return length_delimited(b"\x0a", value.encode())
    if isinstance(value, int):
        return b"\x18" + varint(value if value >= 0 else value + _INT64_WRAP)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return length_delimited(b"\x3a", value)
    if isinstance(value, Sequence):
        return length_delimited(
            b"\x2a", b"".join(length_delimited(b"\x0a", _any_value(item)) for item in value)
        )
    if isinstance(value, Mapping):
        return length_delimited(
            b"\x32", b"".join(length_delimited(b"\x0a", _key_value(k, v)) for k, v in value.items())
        )
    msg = f"no OTLP encoding for a {type(value).__name__} value"
    raise TypeError(msg)


def _key_value(key: str, value: Any) -> bytes:
    """A KeyValue message."""
    try:
        memo = (key, type(value), value)  # the type: True == 1 and both hash alike
        encoded = _KEY_VALUES.get(memo)
    except TypeError:  # an unhashable value (a list)
        return length_delimited(b"\x0a", str(key).encode()) + length_delimited(b"\x12", _any_value(value))
    if encoded is None:
        encoded = length_delimited(b"\x0a", str(key).encode()) + length_delimited(b"\x12", _any_value(value))
        if len(_KEY_VALUES) < _MAX_KEY_VALUES:
            _KEY_VALUES[memo] = encoded
    return encoded


def _key_values(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated KeyValue fields under ``tag``."""
    if not attributes:
        return b""
    return b"".join([length_delimited(tag, _key_value(key, value)) for key, value in attributes.items()])


def _span_flags(parent: SpanContext | None) -> bytes:
    return _fixed32(
        _HAS_IS_REMOTE | _IS_REMOTE if parent is not None and parent.is_remote else _HAS_IS_REMOTE
    )


def _event(event: Event) -> bytes:
    body = b"\x09" + _fixed64(event.timestamp) + length_delimited(b"\x12", event.name.encode())
    body += _key_values(b"\x1a", event.attributes)
    if event.dropped_attributes:
        body += b"\x20" + varint(event.dropped_attributes)
    return body


def _link(link: Link) -> bytes:
    context = link.context
    body = length_delimited(b"\x0a", context.trace_id.to_bytes(16, "big")) + length_delimited(
        b"\x12", context.span_id.to_bytes(8, "big")
    )
    body += _key_values(b"\x22", link.attributes)
    if link.dropped_attributes:
        body += b"\x28" + varint(link.dropped_attributes)
    return body + b"\x35" + _span_flags(context)


def encode_span(span: ReadableSpan) -> bytes:
    """One ``Span`` message."""
    context = span.context
    assert context is not None  # noqa: S101 - an SDK span always has one
    parts = [
        b"\x0a\x10",
        context.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        context.span_id.to_bytes(8, "big"),
    ]
    if context.trace_state:
        parts.append(
            length_delimited(b"\x1a", ",".join(f"{k}={v}" for k, v in context.trace_state.items()).encode())
        )
    parent = span.parent
    if parent is not None:
        parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
    parts += (length_delimited(b"\x2a", span.name.encode()), b"\x30", varint(span.kind.value + 1))
    parts += (b"\x39", _fixed64(span.start_time or 0), b"\x41", _fixed64(span.end_time or 0))
    parts.append(_key_values(b"\x4a", span.attributes))
    if span.dropped_attributes:
        parts += (b"\x50", varint(span.dropped_attributes))
    for event in span.events:
        parts.append(length_delimited(b"\x5a", _event(event)))
    if span.dropped_events:
        parts += (b"\x60", varint(span.dropped_events))
    for link in span.links:
        parts.append(length_delimited(b"\x6a", _link(link)))
    if span.dropped_links:
        parts += (b"\x70", varint(span.dropped_links))
    status = span.status
    status_body = length_delimited(b"\x12", status.description.encode()) if status.description else b""
    if status.status_code.value:
        status_body += b"\x18" + varint(status.status_code.value)
    parts += (length_delimited(b"\x7a", status_body), b"\x85\x01", _span_flags(parent))
    return b"".join(parts)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    body = length_delimited(b"\x0a", scope.name.encode()) if scope.name else b""
    if scope.version:
        body += length_delimited(b"\x12", scope.version.encode())
    return body + _key_values(b"\x1a", scope.attributes)


def encode_export_request(spans: Sequence[ReadableSpan]) -> bytes:
    """An ``ExportTraceServiceRequest`` of the spans, grouped by resource, then by scope.

    Groups are kept by identity: the spans of one provider share its resource and scope objects,
    and hashing a Resource (it serializes its attributes to JSON) per span cost more than
    encoding the span.
    """
    grouped: dict[int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, list[bytes]]]]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope
        by_scope = grouped.get(id(resource))
        if by_scope is None:
            by_scope = grouped[id(resource)] = (resource, {})
        encoded = by_scope[1].get(id(scope))
        if encoded is None:
            encoded = by_scope[1][id(scope)] = (scope, [])
        encoded[1].append(encode_span(span))
    request = []
    for resource, scopes in grouped.values():
        body = length_delimited(b"\x0a", _key_values(b"\x0a", resource.attributes))
        for scope, encoded_spans in scopes.values():
            scope_body = length_delimited(b"\x0a", _scope(scope)) + b"".join(
                length_delimited(b"\x12", span) for span in encoded_spans
            )
            if scope is not None and scope.schema_url:
                scope_body += length_delimited(b"\x1a", scope.schema_url.encode())
            body += length_delimited(b"\x12", scope_body)
        if resource.schema_url:
            body += length_delimited(b"\x1a", resource.schema_url.encode())
        request.append(length_delimited(b"\x0a", body))
    return b"".join(request)


class HandEncodedSpanExporter(OTLPSpanExporter):
    """The OTLP/gRPC span exporter with requests encoded by :func:`encode_export_request`.

    The gRPC stub serializes a message object, so the bytes are parsed back into one; upb does
    that in C for a fraction of a microsecond a span.
    """

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest.FromString(encode_export_request(data))

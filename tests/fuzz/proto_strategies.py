"""Hypothesis strategies built from protobuf descriptors: any message of the v1 contract.

Values mix arbitrary data (any text, huge strings, out-of-range enums and integers, deep
nesting) with domain-shaped values (valid ID numbers, method ids, purposes) so that generated
requests also get past validation into the deeper code.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

INTERESTING_TEXT = [
    "",
    " ",
    "sms",
    "org_document",
    "default",
    "identity",
    "phone",
    "biometric",
    "guardian",
    "financial",
    "sha256:" + "0" * 64,
    "registrar",
    "platform",
    "auditor",
    "admin",
    "张三",
    "110105194912310029",
    "11010519491231002X",
    "810000199408230021",
    "91110000600037341L",
    "13800000000",
    "+8613800000000",
    "1.2.3.4",
    "::ffff:1.2.3.4",
    "2001:db8::1",
    "CN",
    "\x00",
    "\u202e",
    "\ud7ff",
    "a" * 129,
    "0" * 32,
    "f" * 32,
    "../../etc/passwd",
    "%s%s%n",
    "' OR 1=1 --",
]
_MAX_DEPTH = 3
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(INTERESTING_TEXT),
        st.text(max_size=40),
        st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=5000),
    )


def _scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:  # noqa: PLR0911 - one per wire type
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _text()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}:
        return st.floats(allow_nan=True, width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 50))
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return message_strategy(field.message_type, depth + 1)
    low, high = _INT_RANGES[kind]
    return st.one_of(st.integers(low, high), st.integers(max(low, -3), min(high, 2000)))


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key = _scalar(field.message_type.fields_by_name["key"], depth)
        value = _scalar(field.message_type.fields_by_name["value"], depth)
        return st.dictionaries(key, value, max_size=4)
    single = _scalar(field, depth)
    if field.is_repeated:
        return st.one_of(st.lists(single, max_size=4), st.lists(single, min_size=900, max_size=1100))
    return single


def _build(cls: type[Message], values: dict[str, Any]) -> Message | None:
    message = cls()
    for name, value in values.items():
        try:
            target = getattr(message, name)
            if isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, Message):
                        target[key].CopyFrom(item)
                    else:
                        target[key] = item
            elif isinstance(value, list):
                if value and isinstance(value[0], Message):
                    target.extend([v for v in value if v is not None])
                else:
                    target.extend(value)
            elif isinstance(value, Message):
                target.CopyFrom(value)
            else:
                setattr(message, name, value)
        except (ValueError, TypeError, OverflowError):
            # Python's protobuf refuses some values (lone surrogates, out-of-range floats):
            # those cannot be sent by a conforming client; the wire-level fuzz covers raw bytes.
            continue
    return message


def message_strategy(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of this type, nested at most a few levels."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth >= _MAX_DEPTH:
        return st.just(cls())
    fields = {f.name: _field(f, depth) for f in descriptor.fields}
    return st.fixed_dictionaries({}, optional=fields).map(lambda values: _build(cls, values) or cls())

"""The hand-written varint and length-delimited writers give protobuf's own bytes."""

from __future__ import annotations

from google.protobuf import wrappers_pb2
from hypothesis import given
from hypothesis import strategies as st

from idverify.protobuf_wire import length_delimited, varint

# UInt64Value and BytesValue hold one field, number 1: its tag is 0x08 as a varint, 0x0a as bytes.
_VARINT_FIELD_ONE = b"\x08"
_BYTES_FIELD_ONE = b"\x0a"


@given(st.integers(min_value=1, max_value=2**64 - 1))
def test_varint_is_protobufs(value: int) -> None:
    """Every uint64 (protobuf leaves a zero out, so from one) is written as protobuf writes it."""
    expected = wrappers_pb2.UInt64Value(value=value).SerializeToString()
    assert _VARINT_FIELD_ONE + varint(value) == expected


@given(st.binary(min_size=1, max_size=400))
def test_length_delimited_is_protobufs(payload: bytes) -> None:
    """Payloads on either side of the one-byte length (127/128) and past two bytes of length."""
    expected = wrappers_pb2.BytesValue(value=payload).SerializeToString()
    assert length_delimited(_BYTES_FIELD_ONE, payload) == expected


def test_the_length_boundaries() -> None:
    """The lengths where a one-byte length turns into two, and two into three."""
    for size in (127, 128, 16383, 16384):
        payload = b"x" * size
        expected = wrappers_pb2.BytesValue(value=payload).SerializeToString()
        assert length_delimited(_BYTES_FIELD_ONE, payload) == expected

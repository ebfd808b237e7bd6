"""The two pieces of protobuf's wire format that idverify writes by hand.

Varints and length-delimited fields, as protobuf's encoding guide defines them. Hot
paths that would otherwise build a message object per item (OTLP span export, batch replies of
stored IP labels) write their bytes with these.
"""

from __future__ import annotations

ONE_BYTE_LIMIT = 0x80  # values below it take one byte
_ONE_BYTE = [bytes((value,)) for value in range(ONE_BYTE_LIMIT)]


def varint(value: int) -> bytes:
    """A non-negative integer as a base-128 varint."""
    if value < ONE_BYTE_LIMIT:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= ONE_BYTE_LIMIT:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    size = len(payload)
    return tag + (_ONE_BYTE[size] if size < ONE_BYTE_LIMIT else varint(size)) + payload

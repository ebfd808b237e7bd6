"""HMAC-SHA256 of many messages under one key, without rebuilding the keyed state per message.

``hmac.digest`` pads and hashes the key twice for every message. A batch read of a thousand
accounts pseudonymizes a thousand ids under the same subkey, so the two padded-key states of
RFC 2104 are hashed once and copied per message: the same bytes for less work than ``hmac.digest``
or copying an ``hmac.new`` object, whose copy carries more state (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

_BLOCK_BYTES = 64  # SHA-256's block size
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


def hmac_sha256_each(key: bytes, messages: Iterable[bytes]) -> list[bytes]:
    """``hmac.digest(key, message, "sha256")`` of each message, in order."""
    if len(key) > _BLOCK_BYTES:
        key = hashlib.sha256(key).digest()
    block = key.ljust(_BLOCK_BYTES, b"\0")
    inner_start = hashlib.sha256(block.translate(_INNER_PAD))
    outer_start = hashlib.sha256(block.translate(_OUTER_PAD))
    digests = []
    for message in messages:
        inner = inner_start.copy()
        inner.update(message)
        outer = outer_start.copy()
        outer.update(inner.digest())
        digests.append(outer.digest())
    return digests

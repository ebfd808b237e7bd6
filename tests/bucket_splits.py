"""How ``redis-cli --cluster create`` splits the 16,384 slots over N primaries, mirrored exactly.

redis-cli (``clusterManagerCommandCreate``) keeps a single-precision float cursor: each primary
gets ``first .. lround(cursor + 16384/N - 1)``, the last one up to slot 16383. The float's
rounding decides some boundaries, so this mirror rounds to single precision after each operation
as C does; ``tests/integration/test_bucket_layout_cluster.py`` holds it to a real redis-cli.
"""

from __future__ import annotations

import math
import struct

SLOTS = 16384


def _single(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _lround(value: float) -> int:
    """C's lround: to the nearest integer, halves away from zero."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def redis_cli_split(primaries: int) -> list[tuple[int, int]]:
    """The ``(first, last)`` slot range of each of ``primaries`` primaries, in order."""
    per_primary = _single(SLOTS / _single(primaries))
    first, cursor = 0, 0.0
    ranges: list[tuple[int, int]] = []
    for index in range(primaries):
        last = _lround(_single(_single(cursor + per_primary) - 1))
        if last > SLOTS or index == primaries - 1:
            last = SLOTS - 1
        last = max(last, first)
        ranges.append((first, last))
        first = last + 1
        cursor = _single(cursor + per_primary)
    return ranges

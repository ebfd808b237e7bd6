"""Writes ip2region ``.xdb`` files from address ranges, in the layout ip2region's maker uses.

For tests and benchmarks that need an xdb file of known contents, and for operators who want
to serve their own ranges through the xdb provider.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from pathlib import Path

from idverify.geo.xdb import DATA_START, HEADER_SIZE, VECTOR_INDEX_SIZE

__all__ = ["write_xdb", "xdb_bytes"]

_VECTOR_POLICY = 1


def xdb_bytes(
    ranges: Iterable[tuple[int, int, str]],
    *,
    ip_version: int = 4,
    structure: int = 3,
    created_at: int | None = None,
) -> bytes:
    """The bytes of an xdb file holding ``ranges``.

    Args:
        ranges: (first, last, region) with addresses as integers, ascending and not
            overlapping; gaps are allowed (lookups there find nothing).
        ip_version: 4 or 6.
        structure: 3 (current), or 2 (the pre-2025 layout, IPv4 only).
        created_at: the Unix time to record; now when None.

    Returns:
        The file's contents.

    Raises:
        ValueError: bad arguments, ranges out of order, or a region longer than 65535 bytes.
    """
    if ip_version not in (4, 6) or structure not in (2, 3) or (structure == 2 and ip_version != 4):  # noqa: PLR2004
        raise ValueError("structure 2 holds IPv4 only; structure 3 holds IPv4 or IPv6")
    bits = 32 if ip_version == 4 else 128  # noqa: PLR2004
    region_data, segments = _regions_and_segments(ranges, bits)
    entry = struct.Struct("<IIHI") if ip_version == 4 else struct.Struct("<16s16sHI")  # noqa: PLR2004
    index_start = DATA_START + len(region_data)
    index = bytearray()
    vector = bytearray(VECTOR_INDEX_SIZE)
    for start, end, length, offset in segments:
        position = index_start + len(index)
        if ip_version == 4:  # noqa: PLR2004
            index += entry.pack(start, end, length, offset)
        else:
            index += entry.pack(start.to_bytes(16, "big"), end.to_bytes(16, "big"), length, offset)
        cell = (start >> (bits - 16)) * 8
        if not struct.unpack_from("<I", vector, cell)[0]:
            struct.pack_into("<I", vector, cell, position)
        # ip2region's maker stores the end of the cell's last entry (exclusive).
        struct.pack_into("<I", vector, cell + 4, position + entry.size)

    header = bytearray(HEADER_SIZE)
    struct.pack_into(
        "<HHIIIHH",
        header,
        0,
        structure,
        _VECTOR_POLICY,
        int(time.time()) if created_at is None else created_at,
        index_start,
        index_start + len(index) - entry.size,
        ip_version if structure == 3 else 0,  # noqa: PLR2004
        4 if structure == 3 else 0,  # noqa: PLR2004
    )
    return bytes(header + vector + region_data + index)


def _regions_and_segments(
    ranges: Iterable[tuple[int, int, str]], bits: int
) -> tuple[bytearray, list[tuple[int, int, int, int]]]:
    """The region data block and the (start, end, length, offset) segments, split per cell."""
    # Segments never cross a boundary of the leading two bytes, which the vector index keys on.
    cell_mask = (1 << (bits - 16)) - 1
    regions: dict[str, int] = {}
    region_data = bytearray()
    segments: list[tuple[int, int, int, int]] = []
    previous = -1
    for first, last, region in ranges:
        if not previous < first <= last < 1 << bits:
            raise ValueError("ranges must ascend without overlapping, inside the address space")
        previous = last
        encoded = region.encode()
        if not 0 < len(encoded) <= 0xFFFF:  # noqa: PLR2004
            raise ValueError("a region must be 1 to 65535 bytes of UTF-8")
        if region not in regions:
            regions[region] = DATA_START + len(region_data)
            region_data += encoded
        start = first
        while start <= last:
            end = min(last, start | cell_mask)
            segments.append((start, end, len(encoded), regions[region]))
            start = end + 1
    if not segments:
        raise ValueError("an xdb file needs at least one range")
    return region_data, segments


def write_xdb(
    path: Path,
    ranges: Iterable[tuple[int, int, str]],
    *,
    ip_version: int = 4,
    structure: int = 3,
    created_at: int | None = None,
) -> Path:
    """Write an xdb file holding ``ranges`` (see ``xdb_bytes``); returns ``path``.

    Raises:
        ValueError: as ``xdb_bytes``.
        OSError: the file cannot be written.
    """
    path.write_bytes(xdb_bytes(ranges, ip_version=ip_version, structure=structure, created_at=created_at))
    return path

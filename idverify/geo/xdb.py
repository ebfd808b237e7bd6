"""ip2region ``.xdb`` databases (structure 2 and 3, IPv4 or IPv6) held in memory.

Lookups go through py-ip2region's searcher over the bytes read at load; the segment index is
also read once at load, which checks it and yields the ranges for the resolver's fast table.
"""

from __future__ import annotations

import re
import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Literal

from ip2region import searcher as xdb_searcher
from ip2region import util as xdb_util

from idverify.geo.provider import (
    SUBDIVIDED_COUNTRIES,
    DatabaseInfo,
    GeoDatabaseError,
    IpRange,
    RawGeo,
    build_date_of,
)
from idverify.geo.regions import country_code_for_name, country_names

__all__ = ["HEADER_SIZE", "VECTOR_INDEX_SIZE", "XdbHeader", "XdbProvider", "parse_region"]

HEADER_SIZE = 256
# 256 x 256 cells of (first, end) segment-index pointers, one per leading two bytes.
VECTOR_INDEX_SIZE = 256 * 256 * 8
DATA_START = HEADER_SIZE + VECTOR_INDEX_SIZE
# Segment index entries: start, end, region length, region offset. IPv4 addresses are stored
# little-endian (a leftover of structure 2), IPv6 ones as their 16 network-order bytes.
_SEGMENT_FORMATS = {4: struct.Struct("<IIHI"), 6: struct.Struct("<16s16sHI")}
_ISO_CODE = re.compile(r"[A-Z]{2}")
_CHINESE_TERRITORIES = frozenset({"HK", "MO", "TW"})
_CJK = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True, slots=True)
class XdbHeader:
    """The fields of an xdb file's 256-byte header that matter for reading it.

    Attributes:
        structure: 2 (IPv4 only, before 2025) or 3 (IPv4 or IPv6).
        ip_version: 4 or 6.
        created_at: when the file was made, as a Unix time.
        first_segment: offset of the first segment-index entry.
        last_segment: offset of the last segment-index entry.
    """

    structure: int
    ip_version: int
    created_at: int
    first_segment: int
    last_segment: int

    @property
    def segment_size(self) -> int:
        """Bytes per segment-index entry."""
        return _SEGMENT_FORMATS[self.ip_version].size

    @property
    def segment_count(self) -> int:
        """Entries in the segment index."""
        return (self.last_segment - self.first_segment) // self.segment_size + 1

    @classmethod
    def parse(cls, data: bytes) -> XdbHeader:
        """Read and check the header of a whole xdb file.

        Raises:
            GeoDatabaseError: the file is too short, of an unknown structure, or its index
                pointers do not fit it.
        """
        if len(data) < DATA_START:
            raise GeoDatabaseError("xdb file is shorter than its header and vector index")
        structure, _, created_at, first, last, ip_version, pointer_bytes = struct.unpack_from(
            "<HHIIIHH", data
        )
        if structure == 2:  # noqa: PLR2004 - structure 2 knows only IPv4
            ip_version = 4
        elif structure != 3 or ip_version not in (4, 6) or pointer_bytes not in (0, 4):  # noqa: PLR2004
            raise GeoDatabaseError(f"unsupported xdb structure {structure} (IP version {ip_version})")
        header = cls(structure, ip_version, created_at, first, last)
        size = header.segment_size
        if not DATA_START <= first <= last or (last - first) % size or last + size > len(data):
            raise GeoDatabaseError("xdb segment index does not fit the file: it is truncated or corrupt")
        return header


class XdbProvider:
    """An xdb file, read fully into memory and checked at load.

    Use ``XdbProvider.from_bytes``; the file on disk is not touched again.
    """

    def __init__(self, data: bytes, path: Path | None, header: XdbHeader) -> None:
        self._data = data
        self._path = path
        self._header = header
        version = xdb_util.IPv4 if header.ip_version == 4 else xdb_util.IPv6  # noqa: PLR2004
        self._searcher = xdb_searcher.new_with_buffer(version, data)
        self._regions: dict[tuple[int, int], RawGeo | None] = {}
        self._distinct: dict[RawGeo, RawGeo] = {}
        self._check_vector_index()
        # Reading every segment once checks the index and fills the region cache.
        self._runs = list(self._read_segments())
        self._run_firsts = [first for first, _, _ in self._runs]

    @classmethod
    def from_bytes(cls, data: bytes, path: Path | None = None) -> XdbProvider:
        """Load an xdb file's contents.

        Args:
            data: the whole file.
            path: where it was read from, for ``info()``.

        Raises:
            GeoDatabaseError: it is not an xdb file, or it is truncated or corrupt.
        """
        return cls(data, path, XdbHeader.parse(data))

    def lookup(self, address: IPv4Address | IPv6Address) -> RawGeo | None:
        """What the file says about one address (see ``GeoProvider.lookup``)."""
        if address.version != self._header.ip_version:
            return None
        # Only addresses a segment covers go to the searcher: past the last segment of the
        # file's last cell, its binary search reads beyond the index and raises IndexError.
        value = int(address)
        run = bisect_right(self._run_firsts, value) - 1
        if run < 0 or value > self._runs[run][1]:
            return None
        region = self._searcher.search(address.packed)
        return parse_region(region) if region else None

    def ranges(self, version: Literal[4, 6]) -> Iterator[IpRange]:
        """Every segment of the file, neighbours with equal answers merged (see ``GeoProvider.ranges``)."""
        if version != self._header.ip_version:
            yield (0, (1 << (32 if version == 4 else 128)) - 1, None)  # noqa: PLR2004
            return
        yield from self._runs

    def info(self) -> DatabaseInfo:
        """Which database this is (see ``GeoProvider.info``)."""
        header = self._header
        return DatabaseInfo(
            type="xdb",
            path=self._path,
            name="ip2region",
            build_date=build_date_of(header.created_at),
            record_count=header.segment_count,
            ip_versions=frozenset({header.ip_version}),
        )

    def _check_vector_index(self) -> None:
        header = self._header
        cells = array("I", self._data[HEADER_SIZE:DATA_START])
        if sys.byteorder == "big":
            cells.byteswap()
        size, first, end = (
            header.segment_size,
            header.first_segment,
            header.last_segment + header.segment_size,
        )
        for index in range(0, len(cells), 2):
            start, stop = cells[index], cells[index + 1]
            if (start or stop) and not (first <= start < stop <= end and (start - first) % size == 0):
                raise GeoDatabaseError("xdb vector index points outside the segment index")

    def _read_segments(self) -> Iterator[IpRange]:
        header, data = self._header, self._data
        unpack = _SEGMENT_FORMATS[header.ip_version].iter_unpack
        index = data[header.first_segment : header.last_segment + header.segment_size]
        previous_end = -1
        run_first, run_last, run_answer = -1, -1, None
        for start_raw, end_raw, length, offset in unpack(index):
            first = start_raw if isinstance(start_raw, int) else int.from_bytes(start_raw, "big")
            last = end_raw if isinstance(end_raw, int) else int.from_bytes(end_raw, "big")
            if first > last or first <= previous_end:
                raise GeoDatabaseError("xdb segments overlap or are out of order")
            previous_end = last
            answer = self._region_at(offset, length)
            if run_first >= 0 and answer is run_answer and first == run_last + 1:
                run_last = last
                continue
            if run_first >= 0:
                yield (run_first, run_last, run_answer)
            run_first, run_last, run_answer = first, last, answer
        if run_first >= 0:
            yield (run_first, run_last, run_answer)

    def _region_at(self, offset: int, length: int) -> RawGeo | None:
        key = (offset, length)
        if key in self._regions:
            return self._regions[key]
        if offset < DATA_START or offset + length > self._header.first_segment:
            raise GeoDatabaseError("xdb segment points outside the region data")
        try:
            text = self._data[offset : offset + length].decode()
        except UnicodeDecodeError as error:
            raise GeoDatabaseError(f"xdb region at {offset} is not UTF-8") from error
        answer = parse_region(text)
        if answer is not None and answer.country_code not in SUBDIVIDED_COUNTRIES:
            answer = RawGeo(answer.country_code, answer.country_zh, answer.country_en)
        if answer is not None:
            # One object per distinct answer, so that runs merge by identity.
            answer = self._distinct.setdefault(answer, answer)
        self._regions[key] = answer
        return answer


def parse_region(region: str) -> RawGeo | None:
    """What an ip2region region string says.

    Three layouts exist: ``国家|区域|省份|城市|ISP`` (the classic data, ``中国|0|广东省|广州市|电信``),
    ``国家|省份|城市|ISP|ISO`` (2025 data, ``United States|California|0|Google LLC|US``) and
    ``国家|省份|城市|ISP``. ``0`` or an empty field means unknown.

    Returns:
        The answer, or None when the string names no country (``0|0|0|内网IP|内网IP``).
    """
    fields = ["" if field.strip() in {"", "0"} else field.strip() for field in region.split("|")]
    country = fields[0]
    if not country:
        return None
    code = ""
    if len(fields) >= 5 and _ISO_CODE.fullmatch(fields[4]) and country_names(fields[4]) is not None:  # noqa: PLR2004
        named = country_code_for_name(country)
        # The code must agree with the name, except that 中国 may stand before HK, MO or TW.
        if named in {None, fields[4]} or (named == "CN" and fields[4] in _CHINESE_TERRITORIES):
            code, province = fields[4], fields[1]
    if not code:
        province = fields[2] if len(fields) >= 5 else (fields[1] if len(fields) > 1 else "")  # noqa: PLR2004
        code = country_code_for_name(country) or ""
    country_zh, country_en = (country, "") if _CJK.search(country) else ("", country)
    province_zh, province_en = (province, "") if _CJK.search(province) else ("", province)
    return RawGeo(code, country_zh, country_en, "", province_zh, province_en)

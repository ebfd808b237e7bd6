"""The xdb provider and writer, against small files the tests write."""

from __future__ import annotations

import argparse
import io
import ipaddress
import random
import struct
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from ip2region import searcher, util

from idverify.cli.geo import add_geo_commands
from idverify.geo import UNKNOWN, GeoDatabaseError, GeoResolver, RawGeo, XdbProvider
from idverify.geo.xdb import DATA_START, parse_region
from idverify.geo.xdb_writer import write_xdb, xdb_bytes

CREATED = int(datetime(2025, 9, 1, 8, tzinfo=UTC).timestamp())


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


V4_RANGES = [
    (ip("1.0.0.0"), ip("1.0.0.255"), "澳大利亚|0|0|0|0"),
    (ip("1.0.1.0"), ip("1.0.3.255"), "中国|0|福建省|福州市|电信"),
    (ip("1.0.4.0"), ip("1.3.255.255"), "中国|0|广西壮族自治区|南宁市|电信"),
    (ip("8.8.8.0"), ip("8.8.8.255"), "United States|California|0|Google LLC|US"),
    (ip("10.0.0.0"), ip("10.255.255.255"), "0|0|0|内网IP|内网IP"),
]
V6_RANGES = [
    (ip("2001:200::"), ip("2001:200:ffff:ffff:ffff:ffff:ffff:ffff"), "Japan|Tokyo|0|WIDE Project|JP"),
    (ip("240e::"), ip("240e:0:0:ff:ffff:ffff:ffff:ffff"), "中国|广东省|深圳市|电信|CN"),
    (ip("240e:0:0:100::"), ip("240e:0:0:100::ff"), "中国|内蒙古|呼和浩特市|电信|CN"),
]


class TestWriter:
    @pytest.mark.parametrize("structure", [2, 3])
    def test_ip2region_reads_it_v4(self, structure: int) -> None:
        """py-ip2region's own searcher finds every range of a written IPv4 file, and nothing in the gaps."""
        found = searcher.new_with_buffer(util.IPv4, xdb_bytes(V4_RANGES, structure=structure))
        for first, last, region in V4_RANGES:
            for value in (first, last, (first + last) // 2):
                assert found.search(ipaddress.IPv4Address(value).packed) == region
        assert found.search("0.0.0.1") == ""
        assert found.search("1.4.0.0") == ""
        assert found.search("255.255.255.255") == ""

    def test_ip2region_reads_it_v6(self) -> None:
        """And so for IPv6 in structure 3."""
        found = searcher.new_with_buffer(util.IPv6, xdb_bytes(V6_RANGES, ip_version=6))
        for first, last, region in V6_RANGES:
            for value in (first, last):
                assert found.search(ipaddress.IPv6Address(value).packed) == region
        assert found.search("::1") == ""

    def test_header(self) -> None:
        """The header carries structure, time, index bounds and IP version."""
        data = xdb_bytes(V6_RANGES, ip_version=6, created_at=CREATED)
        structure, policy, created, first, last, version, pointer_bytes = struct.unpack_from("<HHIIIHH", data)
        assert (structure, policy, created, version, pointer_bytes) == (3, 1, CREATED, 6, 4)
        assert DATA_START < first <= last < len(data)

    @pytest.mark.parametrize(
        ("ranges", "options"),
        [
            ([], {}),
            ([(5, 4, "a")], {}),
            ([(0, 9, "a"), (9, 20, "b")], {}),
            ([(0, 9, "")], {}),
            ([(0, 9, "a")], {"structure": 2, "ip_version": 6}),
            ([(0, 2**32, "a")], {}),
        ],
    )
    def test_rejects(self, ranges: list[tuple[int, int, str]], options: dict[str, int]) -> None:
        """Empty, inverted, overlapping, out-of-space ranges and IPv6 in structure 2 are refused."""
        with pytest.raises(ValueError, match=r"range|region|structure"):
            xdb_bytes(ranges, **options)


class TestXdbProvider:
    @pytest.mark.parametrize("structure", [2, 3])
    def test_ipv4(self, tmp_path: Path, structure: int) -> None:
        """Lookups, info and ranges of an IPv4 file in either structure."""
        path = write_xdb(tmp_path / "v4.xdb", V4_RANGES, structure=structure, created_at=CREATED)
        provider = XdbProvider.from_bytes(path.read_bytes(), path)
        assert provider.lookup(ipaddress.ip_address("1.2.0.1")) == RawGeo(
            "CN", "中国", "", "", "广西壮族自治区", ""
        )
        assert provider.lookup(ipaddress.ip_address("8.8.8.8")) == RawGeo(
            "US", "", "United States", "", "", "California"
        )
        assert provider.lookup(ipaddress.ip_address("10.1.1.1")) is None
        assert provider.lookup(ipaddress.ip_address("9.9.9.9")) is None
        assert provider.lookup(ipaddress.ip_address("2400::1")) is None
        info = provider.info()
        assert (info.type, info.path, info.name, info.build_date, info.ip_versions) == (
            "xdb",
            path,
            "ip2region",
            date(2025, 9, 1),
            {4},
        )
        # Segments are split per /16, the vector index's cell: 3 + 4 (1.0.4.0-1.3.255.255) + 256 (10/8).
        assert info.record_count == 263
        assert [(first, last) for first, last, _ in provider.ranges(4)] == [
            (first, last) for first, last, _ in V4_RANGES
        ]
        assert list(provider.ranges(6)) == [(0, 2**128 - 1, None)]

    def test_ipv6(self, tmp_path: Path) -> None:
        """An IPv6 file answers IPv6 only; ranges drop subdivisions outside China."""
        path = write_xdb(tmp_path / "v6.xdb", V6_RANGES, ip_version=6)
        provider = XdbProvider.from_bytes(path.read_bytes(), path)
        assert provider.lookup(ipaddress.ip_address("240e::1")) == RawGeo("CN", "中国", "", "", "广东省", "")
        assert provider.lookup(ipaddress.ip_address("2001:200::1")) == RawGeo(
            "JP", "", "Japan", "", "", "Tokyo"
        )
        assert provider.lookup(ipaddress.ip_address("1.0.0.1")) is None
        assert provider.info().ip_versions == {6}
        assert [answer for _, _, answer in provider.ranges(6)] == [
            RawGeo("JP", "", "Japan"),
            RawGeo("CN", "中国", "", "", "广东省", ""),
            RawGeo("CN", "中国", "", "", "内蒙古", ""),
        ]

    def test_equal_neighbours_merge(self) -> None:
        """Adjacent segments with one answer come as one range."""
        ranges = [(0, 99, "中国|0|广东省|广州市|电信"), (100, 199, "中国|0|广东省|深圳市|联通")]
        provider = XdbProvider.from_bytes(xdb_bytes(ranges))
        assert [(first, last) for first, last, _ in provider.ranges(4)] == [(0, 199)]


class TestCorruptXdb:
    @pytest.fixture
    def good(self) -> bytes:
        return xdb_bytes(V4_RANGES)

    @pytest.mark.parametrize("keep", [0, 255, DATA_START - 1, DATA_START + 10, -1, -14])
    def test_truncated(self, good: bytes, keep: int) -> None:
        """A truncated file is refused."""
        with pytest.raises(GeoDatabaseError):
            XdbProvider.from_bytes(good[:keep])

    @pytest.mark.parametrize(
        ("offset", "value"),
        [
            (0, struct.pack("<H", 9)),  # unknown structure
            (16, struct.pack("<H", 5)),  # unknown IP version
            (12, struct.pack("<I", 2**31)),  # index end past the file
            (8, struct.pack("<I", 5)),  # index start inside the header
            (256, struct.pack("<II", 3, 2**30)),  # vector index cell outside the index
        ],
    )
    def test_bad_header_or_vector_index(self, good: bytes, offset: int, value: bytes) -> None:
        """Headers and vector indexes that do not fit the file are refused."""
        data = bytearray(good)
        data[offset : offset + len(value)] = value
        with pytest.raises(GeoDatabaseError):
            XdbProvider.from_bytes(bytes(data))

    def test_segments_out_of_order(self, good: bytes) -> None:
        """Segments that overlap or go backwards are refused."""
        first = struct.unpack_from("<I", good, 8)[0]
        data = bytearray(good)
        data[first + 14 : first + 18] = struct.pack("<I", 0)
        with pytest.raises(GeoDatabaseError, match="order"):
            XdbProvider.from_bytes(bytes(data))

    def test_region_pointer_out_of_range(self, good: bytes) -> None:
        """A segment pointing outside the region data is refused."""
        first = struct.unpack_from("<I", good, 8)[0]
        data = bytearray(good)
        data[first + 10 : first + 14] = struct.pack("<I", 10)
        with pytest.raises(GeoDatabaseError, match="region"):
            XdbProvider.from_bytes(bytes(data))

    def test_region_not_utf8(self, good: bytes) -> None:
        """Region bytes that are not UTF-8 are refused."""
        data = bytearray(good)
        data[DATA_START] = 0xFF
        with pytest.raises(GeoDatabaseError, match="UTF-8"):
            XdbProvider.from_bytes(bytes(data))


class TestParseRegion:
    @pytest.mark.parametrize(
        ("region", "expected"),
        [
            ("中国|0|广东省|广州市|电信", RawGeo("CN", "中国", "", "", "广东省", "")),
            ("中国|华南|广东省|0|0", RawGeo("CN", "中国", "", "", "广东省", "")),
            ("中国|0|0|0|0", RawGeo("CN", "中国", "", "", "", "")),
            ("美国|0|加利福尼亚|0|GE", RawGeo("US", "美国", "", "", "加利福尼亚", "")),
            ("中国|广东省|深圳市|电信|CN", RawGeo("CN", "中国", "", "", "广东省", "")),
            (
                "United States|California|0|Google LLC|US",
                RawGeo("US", "", "United States", "", "", "California"),
            ),
            ("Australia|Queensland|0|0|AU", RawGeo("AU", "", "Australia", "", "", "Queensland")),
            ("中国|广东省|深圳市|家庭宽带", RawGeo("CN", "中国", "", "", "广东省", "")),
            ("中国|台湾省|台北市|中华电信|TW", RawGeo("TW", "中国", "", "", "台湾省", "")),
            ("日本", RawGeo("JP", "日本", "", "", "", "")),
            ("某岛国|0|0|0|0", RawGeo("", "某岛国", "", "", "", "")),
        ],
    )
    def test_layouts(self, region: str, expected: RawGeo) -> None:
        """Classic, 2025 and four-field layouts, Chinese or English names."""
        assert parse_region(region) == expected

    @pytest.mark.parametrize("region", ["", "0|0|0|内网IP|内网IP", "0", " |0|0|0|0"])
    def test_no_country(self, region: str) -> None:
        """Rows that name no country give None."""
        assert parse_region(region) is None


class TestPartialCoverage:
    """Files that leave addresses out, as the project's own writer makes them: those are no data."""

    @pytest.mark.parametrize(
        ("version", "ranges", "after_last"),
        [
            (4, V4_RANGES[:4], ["8.8.9.1", "8.8.255.255"]),
            (6, V6_RANGES, ["240e:0:0:100::100", "240e:0:ffff::1"]),
        ],
    )
    def test_addresses_after_the_last_segment_are_no_data(
        self, tmp_path: Path, version: int, ranges: list[tuple[int, int, str]], after_last: list[str]
    ) -> None:
        """Past the last segment of the file's last cell, lookup answers None and the resolver 未知."""
        path = write_xdb(tmp_path / f"v{version}.xdb", ranges, ip_version=version)
        provider = XdbProvider.from_bytes(path.read_bytes(), path)
        resolver = GeoResolver([path], check_interval=0)
        for address in after_last:
            assert provider.lookup(ipaddress.ip_address(address)) is None, address
            location = resolver.lookup(address)
            assert (location.display, location.country_code) == (UNKNOWN.display, ""), address
        resolver.close()

    def test_lookup_agrees_with_the_ranges_everywhere(self, tmp_path: Path) -> None:
        """Around and inside every segment, and at random, lookup answers exactly where a range does."""
        path = write_xdb(tmp_path / "v4.xdb", V4_RANGES[:4])
        provider = XdbProvider.from_bytes(path.read_bytes(), path)
        covered = [(first, last) for first, last, _ in V4_RANGES[:4]]
        generator = random.Random(18)  # noqa: S311 - reproducible probes, not secrets
        probes = [value for first, last in covered for value in (first - 1, first, last, last + 1)]
        probes += [generator.getrandbits(32) for _ in range(3000)]
        probes += [(8 << 24 | 8 << 16) + generator.getrandbits(16) for _ in range(1000)]
        for value in probes:
            inside = any(first <= value <= last for first, last in covered)
            answer = provider.lookup(ipaddress.IPv4Address(value))
            assert (answer is not None) == inside, ipaddress.IPv4Address(value)

    def test_geo_lookup_command_answers_unknown(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``idverify geo lookup`` prints 未知 for an address past the file's last segment."""
        path = write_xdb(tmp_path / "v4.xdb", V4_RANGES[:4])
        parser = argparse.ArgumentParser(prog="idverify")
        add_geo_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["geo", "lookup", "--database", str(path), "8.8.9.1"])
        out = io.StringIO()
        assert args.handler(args, out) == 0
        assert out.getvalue().split("\t")[:2] == ["8.8.9.1", "未知"]
        assert capsys.readouterr().err == ""

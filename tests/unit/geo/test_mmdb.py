"""The mmdb provider, against small files the tests write."""

from __future__ import annotations

import argparse
import io
import ipaddress
import itertools
import json
from pathlib import Path
from typing import Any

import maxminddb
import pytest
from geo_builders import CHINA, SMALL_MMDB, city, place, write_mmdb
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from idverify.cli.geo import add_geo_commands
from idverify.geo import GeoDatabaseError, GeoResolver, Ipv4Alias, MmdbProvider, RawGeo
from idverify.geo.mmdb import raw_geo_of_record


def load(path: Path) -> MmdbProvider:
    return MmdbProvider.from_bytes(path.read_bytes(), path)


class TestMmdbProvider:
    def test_lookup(self, small_mmdb: Path) -> None:
        """Lookups return the country and first subdivision of the record."""
        provider = load(small_mmdb)
        assert provider.lookup(ipaddress.ip_address("1.0.0.7")) == RawGeo(
            "CN", "中国", "China", "GD", "广东省", "Guangdong"
        )
        assert provider.lookup(ipaddress.ip_address("2400::1")) == RawGeo(
            "CN", "中国", "China", "BJ", "北京市", "Beijing"
        )
        assert provider.lookup(ipaddress.ip_address("9.9.9.9")) is None
        assert provider.lookup(ipaddress.ip_address("6.0.0.1")) is None

    def test_info(self, small_mmdb: Path) -> None:
        """Info names the file, its type, build date and networks."""
        info = load(small_mmdb).info()
        assert (info.type, info.path, info.name, info.record_count) == (
            "mmdb",
            small_mmdb,
            "GeoLite2-City",
            len(SMALL_MMDB),
        )
        assert info.ip_versions == {4, 6}
        assert info.build_date is not None

    @pytest.mark.parametrize("version", [4, 6])
    def test_ranges_agree_with_the_reader(self, small_mmdb: Path, version: int) -> None:
        """Every range's answer is what maxminddb says at its ends, subdivisions kept for China only.

        An alias of the IPv4 tree answers, at each end, as the IPv4 address in its bits does.
        """
        provider = load(small_mmdb)
        ranges = list(provider.ranges(version))  # type: ignore[arg-type]
        assert all(first <= last for first, last, _ in ranges)
        assert all(previous[1] < following[0] for previous, following in itertools.pairwise(ranges))
        assert any(isinstance(answer, Ipv4Alias) for _, _, answer in ranges) == (version == 6)
        v4_answers = list(provider.ranges(4))
        for first, last, answer in ranges:
            for value in (first, last):
                address = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
                expected = provider.lookup(address)
                if expected is not None and expected.country_code != "CN":
                    expected = RawGeo(expected.country_code, expected.country_zh, expected.country_en)
                found = answer
                if isinstance(answer, Ipv4Alias):
                    embedded = (value >> answer.shift) & 0xFFFFFFFF
                    found = next(a for first4, last4, a in v4_answers if first4 <= embedded <= last4)
                assert found == expected

    def test_ipv4_only_file(self, tmp_path: Path) -> None:
        """An IPv4 database has no IPv6 data and answers None for IPv6."""
        path = write_mmdb(
            tmp_path / "v4.mmdb", {"1.0.0.0/8": city(CHINA, place("SH", "上海", "Shanghai"))}, ip_version=4
        )
        provider = load(path)
        assert provider.info().ip_versions == {4}
        assert provider.lookup(ipaddress.ip_address("1.2.3.4")) == RawGeo(
            "CN", "中国", "China", "SH", "上海", "Shanghai"
        )
        assert provider.lookup(ipaddress.ip_address("2400::1")) is None
        assert list(provider.ranges(6)) == [(0, 2**128 - 1, None)]

    def test_dbip_style_names_only(self, tmp_path: Path) -> None:
        """DB-IP Lite style records (names, no subdivision codes) come through."""
        record = {
            "country": place("CN", "中国", "China"),
            "subdivisions": [place("", en="Guangxi Zhuang Autonomous Region")],
        }
        provider = load(
            write_mmdb(tmp_path / "dbip.mmdb", {"1.0.0.0/8": record}, database_type="DBIP-City-Lite")
        )
        assert next(answer for first, _, answer in provider.ranges(4) if first == 1 << 24) == RawGeo(
            "CN", "中国", "China", "", "", "Guangxi Zhuang Autonomous Region"
        )
        assert provider.info().name == "DBIP-City-Lite"

    def test_record_without_geo(self) -> None:
        """Records that are not GeoIP2-shaped give None."""
        assert raw_geo_of_record({"continent": {"code": "EU"}}) is None
        assert raw_geo_of_record({"country": "not a map"}) is None


class TestCorruptMmdb:
    @pytest.mark.parametrize("keep", [0, 100, 0.5, -20])
    def test_truncated(self, small_mmdb: Path, keep: float) -> None:
        """A truncated file is refused."""
        data = small_mmdb.read_bytes()
        cut = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
        with pytest.raises(GeoDatabaseError):
            MmdbProvider.from_bytes(data[:cut])

    def test_tree_points_outside_the_data(self, small_mmdb: Path) -> None:
        """A search tree whose records point past the data section is refused."""
        data = bytearray(small_mmdb.read_bytes())
        data[0:200] = b"\xff" * 200
        with pytest.raises(GeoDatabaseError):
            MmdbProvider.from_bytes(bytes(data))

    def test_tree_with_a_cycle(self, small_mmdb: Path) -> None:
        """A search tree whose nodes point back up is refused, not walked forever."""
        data = bytearray(small_mmdb.read_bytes())
        provider = load(small_mmdb)
        node_count = provider._metadata.node_count
        assert provider._metadata.record_size in (24, 28, 32)
        width = provider._metadata.record_size // 4
        # Point every node's records at node 1, so that the tree never ends.
        for node in range(node_count):
            data[node * width : (node + 1) * width] = _both_records(1, provider._metadata.record_size)
        with pytest.raises(GeoDatabaseError, match=r"deeper|cycle"):
            MmdbProvider.from_bytes(bytes(data))

    def test_garbage(self) -> None:
        """Bytes that are no mmdb file are refused."""
        with pytest.raises(GeoDatabaseError):
            MmdbProvider.from_bytes(b"\xab\xcd\xefMaxMind.com" + b"\x00" * 64)


def _both_records(value: int, record_size: int) -> bytes:
    if record_size == 28:
        left, right = value.to_bytes(4, "big"), value.to_bytes(4, "big")
        return left[1:] + bytes([(left[0] << 4) | right[0]]) + right[1:]
    return (value << record_size | value).to_bytes(record_size // 4, "big")


UINT64_MAX = 2**64 - 1


def write_mmdb_with_epoch(path: Path, build_epoch: int) -> Path:
    """A small mmdb file whose metadata says it was built at ``build_epoch`` (a uint64).

    ``build_epoch = 2**64 - 1`` is what MaxMind's test file ``libmaxminddb-uint64-max-epoch.mmdb``
    holds; the ``maxminddb`` reader opens it.
    """

    class EpochWriter(MMDBWriter):
        def _build_meta(self) -> dict[str, Any]:
            return {**super()._build_meta(), "build_epoch": build_epoch}

    writer = EpochWriter(
        ip_version=6, database_type="Test-Epoch", languages=["en"], description="x", ipv4_compatible=True
    )
    writer.insert_network(IPSet(["1.0.0.0/24"]), city(CHINA, place("GD", "广东省", "Guangdong")))
    writer.to_db_file(str(path))
    return path


def with_epoch_as_bytes(data: bytes) -> bytes:
    """The file with its build_epoch's uint64 replaced by a byte string of the same length."""
    key = data.rindex(b"build_epoch") + len(b"build_epoch")
    control, extended = data[key], data[key + 1]
    size = control & 0x1F
    assert (control >> 5, extended) == (0, 9 - 7)  # an extended type: uint64
    # Type 4 (bytes) of size + 1: one control byte and the payload fill the same span.
    return data[:key] + bytes([4 << 5 | (size + 1)]) + b"\x00" + data[key + 2 :]


class TestOddMetadata:
    def test_the_uint64_max_epoch_file_loads_with_no_build_date(self, tmp_path: Path) -> None:
        """A build time past what a date can hold is no build date, not a crash."""
        path = write_mmdb_with_epoch(tmp_path / "uint64-max-epoch.mmdb", UINT64_MAX)
        assert maxminddb.open_database(str(path)).metadata().build_epoch == UINT64_MAX
        provider = load(path)
        assert provider.info().build_date is None
        location = GeoResolver([path], check_interval=0).lookup("1.0.0.1")
        assert (location.display, location.source, location.source_build_date) == ("广东", "Test-Epoch", None)

    def test_geo_lookup_answers_with_the_uint64_max_epoch_file(self, tmp_path: Path) -> None:
        """``idverify geo lookup`` answers from that file and prints no build date."""
        path = write_mmdb_with_epoch(tmp_path / "uint64-max-epoch.mmdb", UINT64_MAX)
        parser = argparse.ArgumentParser(prog="idverify")
        add_geo_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["geo", "lookup", "--json", "--database", str(path), "1.0.0.1"])
        out = io.StringIO()
        assert args.handler(args, out) == 0
        answer = json.loads(out.getvalue())
        assert (answer["display"], answer["source_build_date"]) == ("广东", "")

    @pytest.mark.parametrize("build_epoch", [10**12, 253402300800])
    def test_epochs_past_year_9999_are_no_build_date(self, tmp_path: Path, build_epoch: int) -> None:
        """Times a date cannot hold (after 9999-12-31) load as no build date."""
        assert load(write_mmdb_with_epoch(tmp_path / "late.mmdb", build_epoch)).info().build_date is None

    def test_an_epoch_that_is_not_a_number_is_no_build_date(self, tmp_path: Path) -> None:
        """A build_epoch of the wrong type loads as no build date."""
        path = tmp_path / "bytes-epoch.mmdb"
        path.write_bytes(with_epoch_as_bytes(write_mmdb_with_epoch(tmp_path / "x.mmdb", 1).read_bytes()))
        # The pure-Python reader, which the provider uses over the bytes in memory, takes it.
        reader = maxminddb.open_database(io.BytesIO(path.read_bytes()), maxminddb.MODE_FD)
        assert isinstance(reader.metadata().build_epoch, bytes)
        assert load(path).info().build_date is None
        assert GeoResolver([path], check_interval=0).lookup("1.0.0.1").display == "广东"

    def test_a_reload_to_the_uint64_max_epoch_file_is_served(self, tmp_path: Path, small_mmdb: Path) -> None:
        """Reloading to such a file switches to it."""
        resolver = GeoResolver([small_mmdb], check_interval=0)
        small_mmdb.write_bytes(write_mmdb_with_epoch(tmp_path / "late.mmdb", UINT64_MAX).read_bytes())
        assert resolver.reload()
        assert resolver.info()[0].name == "Test-Epoch"

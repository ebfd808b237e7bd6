"""The resolver: lookups through the fast table, and hot reload of the database files."""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import threading
import weakref
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Literal

import pytest
from geo_builders import CHINA, SMALL_MMDB, city, place, write_mmdb

from idverify.domain.errors import InvalidArgument
from idverify.geo import (
    UNKNOWN,
    DatabaseInfo,
    GeoDatabaseError,
    GeoResolver,
    IpLocation,
    Ipv4Alias,
    RawGeo,
    display_location,
    is_special,
    open_database,
)
from idverify.geo.provider import IpRange
from idverify.geo.xdb_writer import write_xdb

REPLACEMENT = {
    "1.0.0.0/24": city(place("JP", "日本", "Japan")),
    "2400::/16": city(CHINA, place("SH", "上海", "Shanghai")),
}


SIX_TO_FOUR = (0x2002 << 112, (0x2003 << 112) - 1)


class RangesProvider:
    """A provider given as its ranges; an Ipv4Alias range answers from its own IPv4 ranges."""

    def __init__(self, name: str, v4: list[IpRange], v6: list[IpRange] | None = None) -> None:
        self.name = name
        self._ranges: dict[int, list[IpRange]] = {4: v4} if v6 is None else {4: v4, 6: v6}
        self.asked: list[str] = []

    def lookup(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> RawGeo | None:
        self.asked.append(str(address))
        value = int(address)
        for first, last, answer in self._ranges.get(address.version, []):
            if first <= value <= last:
                if isinstance(answer, Ipv4Alias):
                    return self.lookup(ipaddress.IPv4Address((value >> answer.shift) & 0xFFFFFFFF))
                return answer
        return None

    def ranges(self, version: Literal[4, 6]) -> Iterator[IpRange]:
        yield from self._ranges.get(version, [(0, (1 << 128) - 1, None)])

    def info(self) -> DatabaseInfo:
        return DatabaseInfo("mmdb", None, self.name, date(2026, 1, 1), 1, frozenset(self._ranges))


def guangdong_with_6to4(name: str) -> RangesProvider:
    """1.0.0.0/8 in Guangdong, and 2002::/16 aliased to the IPv4 ranges as an mmdb file has it."""
    return RangesProvider(
        name,
        [
            (0, (1 << 24) - 1, None),
            (1 << 24, (2 << 24) - 1, RawGeo("CN", "中国", "China", "GD")),
            (2 << 24, 2**32 - 1, None),
        ],
        [
            (0, SIX_TO_FOUR[0] - 1, None),
            (*SIX_TO_FOUR, Ipv4Alias(80)),
            (SIX_TO_FOUR[1] + 1, 2**128 - 1, None),
        ],
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def replace_atomically(target: Path, source: Path) -> None:
    source.replace(target)


class TestLookup:
    @pytest.mark.parametrize(
        ("ip", "display", "code", "region"),
        [
            ("1.0.0.1", "广东", "CN", "CN-GD"),
            ("::ffff:1.0.0.1", "广东", "CN", "CN-GD"),
            ("1.0.1.200", "内蒙古", "CN", "CN-NM"),
            ("1.0.3.1", "中国", "CN", ""),
            ("2.0.1.1", "美国", "US", ""),
            ("3.0.0.1", "日本", "JP", ""),
            ("4.0.0.1", "中国香港", "HK", ""),
            ("5.0.0.1", "中国台湾", "TW", ""),
            ("2400:1234::1", "北京", "CN", "CN-BJ"),
            ("2a00:1::5", "德国", "DE", ""),
            ("2a00:1:0:1::5", "法国", "FR", ""),
            ("2a00:1:0:1:8000::5", "德国", "DE", ""),
        ],
    )
    def test_known(self, small_mmdb: Path, ip: str, display: str, code: str, region: str) -> None:
        """Answers carry the label, codes and the database's name and date."""
        resolver = GeoResolver([small_mmdb], check_interval=0)
        location = resolver.lookup(ip)
        assert (location.display, location.country_code, location.region_code) == (display, code, region)
        assert location.source == "GeoLite2-City"
        assert location.source_build_date == resolver.info()[0].build_date

    @pytest.mark.parametrize("ip", ["6.0.0.1", "9.9.9.9", "2a01::1"])
    def test_database_does_not_know(self, small_mmdb: Path, ip: str) -> None:
        """Unknown to the database: 未知, naming the database."""
        location = GeoResolver([small_mmdb], check_interval=0).lookup(ip)
        assert (location.display, location.display_en, location.source) == (
            "未知",
            "Unknown",
            "GeoLite2-City",
        )

    @pytest.mark.parametrize(
        "ip",
        [
            "10.0.0.1",
            "192.168.1.1",
            "100.64.1.1",
            "127.0.0.1",
            "203.0.113.1",
            "::1",
            "fe80::1%eth0",
            "2001:db8::1",
            "ff02::1",
        ],
    )
    def test_special(self, small_mmdb: Path, ip: str) -> None:
        """Special-purpose addresses are 未知 without asking any database."""
        assert GeoResolver([small_mmdb], check_interval=0).lookup(ip) is UNKNOWN

    def test_malformed(self, small_mmdb: Path) -> None:
        """Malformed addresses raise BAD_IP naming the field given."""
        resolver = GeoResolver([small_mmdb], check_interval=0)
        with pytest.raises(InvalidArgument) as raised:
            resolver.lookup("1.2.3", field="login_ip")
        assert (raised.value.reason, raised.value.field) == ("BAD_IP", "login_ip")

    def test_table_agrees_with_the_provider(self, small_mmdb: Path) -> None:
        """For addresses all over the space, the fast table answers as policy(provider) does."""
        resolver = GeoResolver([small_mmdb], check_interval=0)
        provider = open_database(small_mmdb)
        info = provider.info()
        generator = random.Random(5)  # noqa: S311 - reproducible probes, not secrets
        probes: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        for network in SMALL_MMDB:
            net = ipaddress.ip_network(network)
            probes += [
                net.network_address,
                net.broadcast_address,
                net.network_address - 1,
                net.broadcast_address + 1,
            ]
        probes += [ipaddress.IPv4Address(generator.getrandbits(32)) for _ in range(2000)]
        probes += [ipaddress.IPv6Address(generator.getrandbits(128)) for _ in range(500)]
        for address in probes:
            if is_special(address.version, int(address)):
                expected = UNKNOWN
            else:
                raw = provider.lookup(address)
                expected = display_location(raw, source=info.name, build_date=info.build_date)
            assert resolver.lookup(str(address)) == expected, address

    def test_table_agrees_with_the_xdb_provider(self, tmp_path: Path) -> None:
        """For an xdb file with gaps, the table answers as policy(py-ip2region's searcher) does."""
        segments = [
            (1 << 24, (1 << 24) + 255, "澳大利亚|0|0|0|0"),
            ((1 << 24) + 256, (1 << 24) + 1023, "中国|0|福建省|福州市|电信"),
            ((1 << 24) + 1024, (2 << 24) - 1, "中国|0|广西壮族自治区|南宁市|电信"),
            (8 << 24, (9 << 24) - 1, "United States|California|0|Google LLC|US"),
        ]
        path = write_xdb(tmp_path / "v4.xdb", segments)
        resolver = GeoResolver([path], check_interval=0)
        provider = open_database(path)
        info = provider.info()
        generator = random.Random(7)  # noqa: S311 - reproducible probes, not secrets
        probes = [value for first, last, _ in segments for value in (first - 1, first, last, last + 1)]
        probes += [generator.getrandbits(32) for _ in range(2000)]
        for value in probes:
            address = ipaddress.IPv4Address(value)
            if is_special(4, value):
                expected = UNKNOWN
            else:
                raw = provider.lookup(address)
                expected = display_location(raw, source=info.name, build_date=info.build_date)
            assert resolver.lookup(str(address)) == expected, address

    def test_6to4_answers_as_the_ipv4_address_it_carries(self) -> None:
        """An alias of the IPv4 data answers from the IPv4 table, and the file is never asked."""
        provider = guangdong_with_6to4("one")
        resolver = GeoResolver(providers=[provider])
        assert resolver.lookup("2002:100:1::1").display == "广东"
        assert resolver.lookup("2002:200:1::1") == resolver.lookup("2.0.0.1")
        assert resolver.lookup("2.0.0.1").display == UNKNOWN.display
        assert resolver.answers_from_tables_alone
        assert provider.asked == []

    def test_an_alias_answers_from_its_own_file(self) -> None:
        """With IPv4 from another file, an alias asks its own file, which the resolver keeps."""
        v4 = RangesProvider("v4", [(0, 2**32 - 1, RawGeo("CN", "中国", "China", "BJ"))])
        both = guangdong_with_6to4("both")
        resolver = GeoResolver(providers=[v4, both])
        assert resolver.lookup("1.0.0.1").display == "北京"
        assert resolver.lookup("2002:100:1::1").display == "广东"
        assert both.asked == ["2002:100:1::1", "1.0.0.1"]
        assert not resolver.answers_from_tables_alone

    def test_keeps_no_provider_its_tables_replace(self, small_mmdb: Path) -> None:
        """Once the tables answer every address, the provider (the whole file) can be freed."""
        provider = open_database(small_mmdb)
        freed = weakref.ref(provider)
        resolver = GeoResolver(providers=[provider])
        del provider
        assert freed() is None
        assert resolver.answers_from_tables_alone
        assert resolver.lookup("1.0.0.1").display == "广东"
        assert resolver.lookup("2a00:1:0:1::5").display == "法国"

    def test_separate_ipv4_and_ipv6_files(self, tmp_path: Path) -> None:
        """ip2region ships IPv4 and IPv6 in two files; each answers its own version."""
        v4 = write_xdb(tmp_path / "v4.xdb", [(1 << 24, (2 << 24) - 1, "中国|0|广东省|广州市|电信")])
        v6 = write_xdb(
            tmp_path / "v6.xdb",
            [(0x240E << 112, (0x240F << 112) - 1, "中国|西藏|拉萨市|电信|CN")],
            ip_version=6,
        )
        resolver = GeoResolver([v4, v6], check_interval=0)
        assert resolver.lookup("1.2.3.4").display == "广东"
        assert resolver.lookup("240e::1").display == "西藏"
        assert resolver.lookup("240e::1").source == "ip2region"
        assert [info.ip_versions for info in resolver.info()] == [{4}, {6}]

    def test_ipv4_only_database_answers_ipv6_unknown(self, tmp_path: Path) -> None:
        """With no IPv6 data loaded, IPv6 addresses are 未知."""
        v4 = write_xdb(tmp_path / "v4.xdb", [(1 << 24, (2 << 24) - 1, "中国|0|广东省|广州市|电信")])
        assert GeoResolver([v4], check_interval=0).lookup("2400::1") is UNKNOWN

    def test_providers_in_memory(self, small_mmdb: Path) -> None:
        """A resolver can serve providers already loaded; it has nothing to reload."""
        resolver = GeoResolver(providers=[open_database(small_mmdb)])
        assert resolver.lookup("1.0.0.1").display == "广东"
        assert resolver.reload() is False
        with pytest.raises(ValueError, match="not both"):
            GeoResolver([small_mmdb], providers=[open_database(small_mmdb)])

    def test_country_names_from_table(self, tmp_path: Path) -> None:
        """country_names_from='table' shows the ISO table's names."""
        path = write_mmdb(tmp_path / "kr.mmdb", {"1.0.0.0/8": city(place("KR", "大韩民国", "South Korea"))})
        assert GeoResolver([path], check_interval=0).lookup("1.1.1.1").display == "大韩民国"
        assert (
            GeoResolver([path], check_interval=0, country_names_from="table").lookup("1.1.1.1").display
            == "韩国"
        )

    def test_unusable_file_at_start(self, tmp_path: Path) -> None:
        """At start-up an unusable file is an error, naming the file."""
        bad = tmp_path / "bad.mmdb"
        bad.write_bytes(b"not a database" * 100)
        with pytest.raises(GeoDatabaseError, match=r"bad\.mmdb"):
            GeoResolver([bad])
        with pytest.raises(GeoDatabaseError, match="cannot read"):
            GeoResolver([tmp_path / "missing.mmdb"])


class TestHotReload:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    def tick(self, resolver: GeoResolver, clock: FakeClock) -> IpLocation:
        """Let a check interval pass and make a lookup (which checks), then wait for a reload."""
        clock.now += 1.5
        location = resolver.lookup("1.0.0.1")
        resolver.wait_idle(30)
        return location

    def test_atomic_replacement_picked_up(self, small_mmdb: Path, tmp_path: Path, clock: FakeClock) -> None:
        """A file renamed over the database is served after it has held still for one check."""
        resolver = GeoResolver([small_mmdb], clock=clock)
        assert resolver.lookup("1.0.0.1").display == "广东"
        replace_atomically(small_mmdb, write_mmdb(tmp_path / "new.mmdb", REPLACEMENT))
        assert self.tick(resolver, clock).display == "广东"  # seen changed; waits one interval
        self.tick(resolver, clock)
        assert resolver.lookup("1.0.0.1").display == "日本"
        assert resolver.lookup("2400::1").display == "上海"
        resolver.close()

    def test_rewrite_in_place_picked_up(self, small_mmdb: Path, tmp_path: Path, clock: FakeClock) -> None:
        """A file overwritten in place (same inode, as cp does) is picked up too."""
        resolver = GeoResolver([small_mmdb], clock=clock)
        small_mmdb.write_bytes(write_mmdb(tmp_path / "new.mmdb", REPLACEMENT).read_bytes())
        self.tick(resolver, clock)
        self.tick(resolver, clock)
        assert resolver.lookup("1.0.0.1").display == "日本"
        resolver.close()

    def test_no_check_before_the_interval(self, small_mmdb: Path, tmp_path: Path, clock: FakeClock) -> None:
        """Files are checked at most once per interval."""
        resolver = GeoResolver([small_mmdb], clock=clock)
        replace_atomically(small_mmdb, write_mmdb(tmp_path / "new.mmdb", REPLACEMENT))
        for _ in range(5):
            clock.now += 0.1
            assert resolver.lookup("1.0.0.1").display == "广东"
            resolver.wait_idle(30)
        assert resolver.lookup("1.0.0.1").display == "广东"
        resolver.close()

    @pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
    def test_unusable_replacement_refused(
        self, small_mmdb: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, damage: str
    ) -> None:
        """A truncated, corrupt or missing new file is refused with one logged error; the old data stays."""
        resolver = GeoResolver([small_mmdb], clock=clock)
        data = small_mmdb.read_bytes()
        if damage == "truncate":
            small_mmdb.write_bytes(data[: len(data) // 2])
        elif damage == "garbage":
            small_mmdb.write_bytes(os.urandom(len(data)))
        else:
            small_mmdb.unlink()
        with caplog.at_level(logging.ERROR, logger="idverify.geo"):
            for _ in range(4):
                assert self.tick(resolver, clock).display == "广东"
        errors = [record for record in caplog.records if record.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "refused" in errors[0].getMessage()
        assert resolver.lookup("1.0.0.1").display == "广东"
        resolver.close()

    def test_good_file_after_a_bad_one(self, small_mmdb: Path, tmp_path: Path, clock: FakeClock) -> None:
        """After a refused file, the next good one is served."""
        resolver = GeoResolver([small_mmdb], clock=clock)
        small_mmdb.write_bytes(b"broken")
        self.tick(resolver, clock)
        self.tick(resolver, clock)
        replace_atomically(small_mmdb, write_mmdb(tmp_path / "new.mmdb", REPLACEMENT))
        self.tick(resolver, clock)
        self.tick(resolver, clock)
        assert resolver.lookup("1.0.0.1").display == "日本"
        resolver.close()

    def test_forced_reload(self, small_mmdb: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """reload() (SIGHUP) reads the files now, whether or not they look changed."""
        resolver = GeoResolver([small_mmdb], check_interval=0)
        replace_atomically(small_mmdb, write_mmdb(tmp_path / "new.mmdb", REPLACEMENT))
        with caplog.at_level(logging.INFO, logger="idverify.geo"):
            assert resolver.reload() is True
        assert resolver.lookup("1.0.0.1").display == "日本"
        assert any("loaded" in record.getMessage() for record in caplog.records)
        small_mmdb.write_bytes(b"broken")
        assert resolver.reload() is False
        assert resolver.lookup("1.0.0.1").display == "日本"

    def test_request_reload_runs_in_background(self, small_mmdb: Path, tmp_path: Path) -> None:
        """request_reload() returns at once and the new data follows."""
        resolver = GeoResolver([small_mmdb], check_interval=0)
        replace_atomically(small_mmdb, write_mmdb(tmp_path / "new.mmdb", REPLACEMENT))
        resolver.request_reload()
        resolver.wait_idle(30)
        assert resolver.lookup("1.0.0.1").display == "日本"
        resolver.close()
        resolver.request_reload()  # closed: nothing happens
        assert resolver.lookup("1.0.0.1").display == "日本"

    def test_lookups_never_fail_during_reloads(self, small_mmdb: Path, tmp_path: Path) -> None:
        """Threads looking up while the database is swapped back and forth all get an old or a new answer."""
        old = small_mmdb.read_bytes()
        new = write_mmdb(tmp_path / "new.mmdb", REPLACEMENT).read_bytes()
        resolver = GeoResolver([small_mmdb], check_interval=0)
        stop = threading.Event()
        seen: set[str] = set()
        failures: list[BaseException] = []

        def look() -> None:
            while not stop.is_set():
                try:
                    seen.add(resolver.lookup("1.0.0.1").display)
                    resolver.lookup("2400::1")
                    resolver.lookup("2a00:1:0:1::1")
                except BaseException as error:  # noqa: BLE001 - any failure fails the test
                    failures.append(error)

        threads = [threading.Thread(target=look) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for round_number in range(12):
                staged = tmp_path / f"staged-{round_number}.mmdb"
                staged.write_bytes(new if round_number % 2 == 0 else old)
                replace_atomically(small_mmdb, staged)
                assert resolver.reload()
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert failures == []
        assert seen <= {"广东", "日本"}
        assert seen == {"广东", "日本"}

    def test_bundled_database_is_not_reloaded(
        self, small_mmdb: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With no file configured the bundled database is used, with a warning, and never reloaded."""
        monkeypatch.setattr("idverify.geo.database.default_database_path", lambda: small_mmdb)
        with caplog.at_level(logging.WARNING, logger="idverify.geo"):
            resolver = GeoResolver()
        assert any("December 2019" in record.getMessage() for record in caplog.records)
        assert resolver.lookup("1.0.0.1").display == "广东"
        assert resolver.reload() is False

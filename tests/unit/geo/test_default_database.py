"""The bundled GeoLite2 City of December 2019, for well-known addresses (as that file has them)."""

from __future__ import annotations

from datetime import date

import maxminddb
import pytest

from idverify.geo import GeoResolver


class TestBundledDatabase:
    @pytest.mark.parametrize(
        ("ip", "display", "display_en", "country", "region"),
        [
            ("8.8.8.8", "美国", "United States", "US", ""),
            ("2001:4860:4860::8888", "美国", "United States", "US", ""),
            ("::ffff:8.8.8.8", "美国", "United States", "US", ""),
            ("2002:808:808::1", "美国", "United States", "US", ""),
            ("1.1.1.1", "澳大利亚", "Australia", "AU", ""),
            ("9.9.9.9", "法国", "France", "FR", ""),
            ("202.12.27.33", "日本", "Japan", "JP", ""),
            ("193.99.144.80", "德国", "Germany", "DE", ""),
            ("202.96.128.86", "广东", "Guangdong", "CN", "CN-GD"),
            ("210.21.4.130", "广东", "Guangdong", "CN", "CN-GD"),
            ("180.76.76.76", "北京", "Beijing", "CN", "CN-BJ"),
            ("61.135.169.121", "北京", "Beijing", "CN", "CN-BJ"),
            ("2001:da8::1", "北京", "Beijing", "CN", "CN-BJ"),
            ("223.5.5.5", "浙江", "Zhejiang", "CN", "CN-ZJ"),
            ("221.7.92.98", "重庆", "Chongqing", "CN", "CN-CQ"),
            ("202.100.64.68", "陕西", "Shaanxi", "CN", "CN-SN"),
            ("124.31.0.1", "西藏", "Xizang", "CN", "CN-XZ"),
            ("114.114.114.114", "中国", "China", "CN", ""),
            ("2400:da00::6666", "中国", "China", "CN", ""),
            ("202.45.84.58", "中国香港", "Hong Kong, China", "HK", ""),
            ("202.175.3.3", "中国澳门", "Macao, China", "MO", ""),
            ("168.95.1.1", "中国台湾", "Taiwan, China", "TW", ""),
        ],
    )
    def test_well_known_addresses(
        self, default_resolver: GeoResolver, ip: str, display: str, display_en: str, country: str, region: str
    ) -> None:
        """Public resolvers and carriers' DNS servers land where the 2019 file puts them."""
        location = default_resolver.lookup(ip)
        assert (location.display, location.display_en, location.country_code, location.region_code) == (
            display,
            display_en,
            country,
            region,
        )
        assert (location.source, location.source_build_date) == ("GeoLite2-City", date(2019, 12, 24))

    @pytest.mark.parametrize(
        "ip", ["10.0.0.1", "192.168.0.1", "100.64.0.1", "198.51.100.1", "fd00::1", "::1"]
    )
    def test_special_addresses(self, default_resolver: GeoResolver, ip: str) -> None:
        """Special-purpose addresses are 未知 there too."""
        assert default_resolver.lookup(ip).display == "未知"

    @pytest.mark.parametrize("ip", ["2001:0:808:808::1", "2001:0:808:808:8000:f227:bec5:dd5c"])
    def test_teredo_is_unknown_though_the_file_aliases_it(
        self, default_resolver: GeoResolver, ip: str
    ) -> None:
        """Teredo (2001::/32) is special-purpose: 未知, where the file's reader answers its relay's place.

        The file aliases Teredo to its IPv4 data at the relay server's address (bits 32-63, here
        8.8.8.8), which says where the relay is, not the client.
        """
        path = default_resolver.info()[0].path
        assert path is not None
        with maxminddb.open_database(str(path)) as reader:
            record = reader.get(ip)
        assert isinstance(record, dict)
        assert record["country"]["iso_code"] == "US"
        location = default_resolver.lookup(ip)
        assert (location.display, location.country_code) == ("未知", "")

    def test_only_the_tables_stay_in_memory(self, default_resolver: GeoResolver) -> None:
        """Its tables answer every address (aliases of the IPv4 tree included): the file is freed."""
        assert default_resolver.answers_from_tables_alone

    def test_info(self, default_resolver: GeoResolver) -> None:
        """The bundled file is a GeoLite2 City mmdb of 24 December 2019 with both IP versions."""
        (info,) = default_resolver.info()
        assert (info.type, info.name, info.build_date, info.ip_versions) == (
            "mmdb",
            "GeoLite2-City",
            date(2019, 12, 24),
            {4, 6},
        )
        assert info.record_count > 3_000_000

"""The display policy, case by case."""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idverify.geo import UNKNOWN, IpLocation, RawGeo, display_location, is_special
from idverify.geo.policy import SPECIAL_NETWORKS_V4, SPECIAL_NETWORKS_V6

BUILT = date(2024, 5, 1)


def show(raw: RawGeo | None, **options: str) -> IpLocation:
    return display_location(raw, source="TestDB", build_date=BUILT, **options)  # type: ignore[arg-type]


def china(code: str = "", zh: str = "", en: str = "") -> RawGeo:
    return RawGeo("CN", "中国", "China", code, zh, en)


class TestMainland:
    @pytest.mark.parametrize(
        ("raw", "display", "display_en", "region"),
        [
            (china("GD", "广东省", "Guangdong"), "广东", "Guangdong", "CN-GD"),
            (china("BJ", "北京市", "Beijing"), "北京", "Beijing", "CN-BJ"),
            (china("SH", "上海", "Shanghai"), "上海", "Shanghai", "CN-SH"),
            (china("TJ", "天津市", "Tianjin"), "天津", "Tianjin", "CN-TJ"),
            (china("CQ", "重庆", "Chongqing"), "重庆", "Chongqing", "CN-CQ"),
            (
                china("NM", "内蒙古自治区", "Inner Mongolia Autonomous Region"),
                "内蒙古",
                "Inner Mongolia",
                "CN-NM",
            ),
            (china("GX", "广西壮族自治区", "Guangxi"), "广西", "Guangxi", "CN-GX"),
            (china("XZ", "西藏自治区", "Tibet"), "西藏", "Xizang", "CN-XZ"),
            (china("NX", "宁夏回族自治区", "Ningxia Hui Autonomous Region"), "宁夏", "Ningxia", "CN-NX"),
            (china("XJ", "新疆", "Xinjiang"), "新疆", "Xinjiang", "CN-XJ"),
        ],
    )
    def test_province_short_name(self, raw: RawGeo, display: str, display_en: str, region: str) -> None:
        """A mainland address shows its province's short name, without 省/市/自治区."""
        assert show(raw) == IpLocation(display, display_en, "CN", region, "TestDB", BUILT)

    @pytest.mark.parametrize(
        "raw",
        [
            china(zh="广西壮族自治区"),
            china(en="Guangxi Zhuang Autonomous Region"),
            china("CN-GX"),
            china("45"),
            china("CN-45"),
            RawGeo("", "中国", "", "", "广西壮族自治区", ""),
            RawGeo("", "", "China", "", "", "Guangxi"),
        ],
    )
    def test_province_from_any_spelling(self, raw: RawGeo) -> None:
        """Codes old and new and names in either language all give the same province."""
        assert (show(raw).display, show(raw).region_code) == ("广西", "CN-GX")

    @pytest.mark.parametrize(
        ("name", "short"),
        [
            ("内蒙古自治区", "内蒙古"),
            ("广西壮族自治区", "广西"),
            ("宁夏回族自治区", "宁夏"),
            ("新疆维吾尔自治区", "新疆"),
            ("西藏自治区", "西藏"),
        ],
    )
    def test_autonomous_region_suffixes_dropped(self, name: str, short: str) -> None:
        """ip2region's full Chinese names lose their 自治区 suffixes."""
        assert show(china(zh=name)).display == short

    def test_no_province_known(self) -> None:
        """A mainland address with no province known shows 中国."""
        assert show(china()) == IpLocation("中国", "China", "CN", "", "TestDB", BUILT)

    def test_unknown_province_name(self) -> None:
        """A subdivision name that is no province shows 中国, not the odd name."""
        assert show(china(zh="火星省")).display == "中国"


class TestHongKongMacauTaiwan:
    @pytest.mark.parametrize(
        ("raw", "display", "code"),
        [
            (RawGeo("HK", "香港", "Hong Kong"), "中国香港", "HK"),
            (RawGeo("HK", "", "Hong Kong SAR"), "中国香港", "HK"),
            (RawGeo("MO", "澳门", "Macao"), "中国澳门", "MO"),
            (RawGeo("TW", "中华民国", "Taiwan"), "中国台湾", "TW"),
            (RawGeo("", "台湾", ""), "中国台湾", "TW"),
            (RawGeo("", "", "Taiwan, Province of China"), "中国台湾", "TW"),
            (RawGeo("", "香港特别行政区", ""), "中国香港", "HK"),
            (china(zh="香港"), "中国香港", "HK"),
            (china(zh="台湾省"), "中国台湾", "TW"),
            (china(en="Macau"), "中国澳门", "MO"),
            (china("HK"), "中国香港", "HK"),
            (china("71"), "中国台湾", "TW"),
        ],
    )
    def test_whatever_the_database_calls_them(self, raw: RawGeo, display: str, code: str) -> None:
        """Filed as countries or as parts of CN, under any name, they show as parts of China."""
        location = show(raw)
        assert (location.display, location.country_code, location.region_code) == (display, code, "")

    def test_english_labels(self) -> None:
        """The English labels say the same."""
        assert [show(RawGeo(code)).display_en for code in ("HK", "MO", "TW")] == [
            "Hong Kong, China",
            "Macao, China",
            "Taiwan, China",
        ]

    def test_table_names_do_not_change_them(self) -> None:
        """Preferring the table's names changes nothing for them."""
        assert show(RawGeo("TW", "中华民国"), country_names_from="table").display == "中国台湾"


class TestOtherCountries:
    @pytest.mark.parametrize(
        ("raw", "display", "display_en"),
        [
            (
                RawGeo("US", "美国", "United States", "CA", "加利福尼亚州", "California"),
                "美国",
                "United States",
            ),
            (RawGeo("JP", "日本", "Japan"), "日本", "Japan"),
            (RawGeo("DE", "德国", "Germany", "NI", "下萨克森", "Lower Saxony"), "德国", "Germany"),
        ],
    )
    def test_country_name_from_database(self, raw: RawGeo, display: str, display_en: str) -> None:
        """Elsewhere the country's Chinese name shows, never a state or city."""
        assert show(raw) == IpLocation(display, display_en, raw.country_code, "", "TestDB", BUILT)

    def test_database_name_preferred(self) -> None:
        """The database's own zh-CN name wins by default."""
        assert show(RawGeo("KR", "大韩民国", "South Korea")).display == "大韩民国"

    def test_table_names_on_request(self) -> None:
        """With table names, every database gives the same label."""
        location = show(RawGeo("CD", "扎伊尔", "DR Congo"), country_names_from="table")
        assert (location.display, location.display_en) == ("刚果（金）", "DR Congo")  # noqa: RUF001

    @pytest.mark.parametrize(
        ("raw", "display", "display_en"),
        [
            (RawGeo("JP", "", "Japan"), "日本", "Japan"),
            (RawGeo("DE"), "德国", "Germany"),
            (RawGeo("fr"), "法国", "France"),
            (RawGeo("", "", "United States"), "美国", "United States"),
            (RawGeo("", "美国"), "美国", "United States"),
        ],
    )
    def test_iso_table_when_database_lacks_chinese(self, raw: RawGeo, display: str, display_en: str) -> None:
        """Without a zh-CN name (or without a code) the ISO 3166 table supplies it."""
        assert (show(raw).display, show(raw).display_en) == (display, display_en)

    def test_user_assigned_code(self) -> None:
        """Kosovo's user-assigned XK code still gets a Chinese name."""
        assert show(RawGeo("XK", "", "Kosovo")).display == "科索沃"

    def test_unmappable_chinese_name_shown(self) -> None:
        """A Chinese country name the tables lack is shown as the database gives it."""
        assert show(RawGeo("", "某岛国", "")).display == "某岛国"


class TestUnknown:
    @pytest.mark.parametrize("raw", [None, RawGeo(), RawGeo("ZZ"), RawGeo("", "", "Atlantis")])
    def test_database_does_not_know(self, raw: RawGeo | None) -> None:
        """No country known: 未知 / Unknown, with the source that was asked."""
        assert show(raw) == IpLocation("未知", "Unknown", "", "", "TestDB", BUILT)
        assert not show(raw).is_known

    def test_unknown_constant(self) -> None:
        """UNKNOWN names no source: no database was asked."""
        assert (UNKNOWN.display, UNKNOWN.display_en, UNKNOWN.source, UNKNOWN.is_known) == (
            "未知",
            "Unknown",
            "",
            False,
        )


SPECIAL_EXAMPLES = [
    "0.0.0.0",  # noqa: S104 - an address to classify, not to bind
    "10.1.2.3",
    "100.64.0.1",
    "100.127.255.255",
    "127.0.0.1",
    "169.254.10.10",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::1.2.3.4",
    "64:ff9b::1.2.3.4",
    "100::1",
    "2001::1",
    "2001:db8::1",
    "3fff::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
]
ORDINARY_EXAMPLES = [
    "1.0.0.1",
    "8.8.8.8",
    "100.63.255.255",
    "100.128.0.0",
    "172.32.0.0",
    "198.20.0.0",
    "223.255.255.255",
    "2400::1",
    "2001:200::1",
    "2a00::1",
    "3ffe::1",
]


_IPADDRESS_FLAGS = (
    "is_private",
    "is_reserved",
    "is_loopback",
    "is_link_local",
    "is_site_local",
    "is_multicast",
    "is_unspecified",
)


def _flagged(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ipaddress flags the address as not global unicast (site-local exists in IPv6 only)."""
    return any(getattr(address, flag, False) for flag in _IPADDRESS_FLAGS)


class TestSpecialRanges:
    @pytest.mark.parametrize("text", SPECIAL_EXAMPLES)
    def test_special(self, text: str) -> None:
        """Private, loopback, link-local, CGNAT, documentation, benchmarking, multicast, reserved: special."""
        address = ipaddress.ip_address(text)
        assert is_special(address.version, int(address))

    @pytest.mark.parametrize("text", ORDINARY_EXAMPLES)
    def test_ordinary(self, text: str) -> None:
        """Public unicast addresses, even right next to a special range, are not."""
        address = ipaddress.ip_address(text)
        assert not is_special(address.version, int(address))

    @pytest.mark.parametrize("network", [*SPECIAL_NETWORKS_V4, *SPECIAL_NETWORKS_V6], ids=str)
    def test_range_edges(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        """Both ends of every special network are special."""
        assert is_special(network.version, int(network.network_address))
        assert is_special(network.version, int(network.broadcast_address))

    @given(st.integers(0, 2**32 - 1))
    def test_agrees_with_ipaddress_v4(self, value: int) -> None:
        """What ipaddress flags (private, reserved, ...) is special; nothing special is global unicast."""
        address = ipaddress.IPv4Address(value)
        special = is_special(4, value)
        assert special if _flagged(address) else True
        assert not special or not address.is_global or address.is_multicast

    @given(st.integers(0, 2**128 - 1))
    def test_agrees_with_ipaddress_v6(self, value: int) -> None:
        """Every IPv6 address ipaddress flags is special."""
        assert is_special(6, value) if _flagged(ipaddress.IPv6Address(value)) else True


class TestTheContractSaysWhatIsShown:
    """IpLocation's comments in proto/idverify/v1/common.proto are what callers read: they match.

    Each example label the comments give is what the policy returns for such a place, so a
    comment that drifts from the server (it once promised "Hong Kong SAR") fails here.
    """

    # A place of each kind the comments name, and what it shows in Chinese and English.
    PLACES: ClassVar[list[tuple[RawGeo | None, str, str]]] = [
        (china("GD", "广东省", "Guangdong"), "广东", "Guangdong"),
        (china(), "中国", "China"),
        (RawGeo("HK", "香港", "Hong Kong"), "中国香港", "Hong Kong, China"),
        (RawGeo("MO", "澳门", "Macao"), "中国澳门", "Macao, China"),
        (RawGeo("TW", "台湾", "Taiwan"), "中国台湾", "Taiwan, China"),
        (RawGeo("US", "美国", "United States", "CA", "加利福尼亚州", "California"), "美国", "United States"),
        (None, "未知", "Unknown"),
    ]

    @staticmethod
    def comment(field: str) -> str:
        """The comment lines above ``field`` in message IpLocation, joined with spaces."""
        text = (Path(__file__).resolve().parents[3] / "proto/idverify/v1/common.proto").read_text(
            encoding="utf-8"
        )
        message = text[text.index("message IpLocation {") :]
        lines: list[str] = []
        for line in message.splitlines()[1:]:
            stripped = line.strip()
            if stripped.startswith("//"):
                lines.append(stripped.removeprefix("//").strip())
            elif re.fullmatch(rf"string {field} = \d+;", stripped):
                return " ".join(lines)
            else:
                lines = []
        raise AssertionError(f"no field {field} in IpLocation")

    def test_the_places_show_as_listed_here(self) -> None:
        for raw, display, display_en in self.PLACES:
            assert (show(raw).display, show(raw).display_en) == (display, display_en), raw

    def test_every_chinese_example_is_a_label_shown(self) -> None:
        """``display``'s comment lists examples after its colon: each is one of the labels."""
        examples = [e.strip() for e in self.comment("display").split(":", 1)[1].rstrip(".").split(",")]
        assert len(examples) >= 3
        assert set(examples) <= {display for _, display, _ in self.PLACES}

    def test_every_english_label_is_in_the_comment_and_every_example_is_shown(self) -> None:
        comment = self.comment("display_en")
        for _, _, display_en in self.PLACES:
            assert display_en in comment, display_en
        shown = {display_en for _, _, display_en in self.PLACES}
        # The "X, China" labels and the examples in parentheses, e.g. (Guangdong).
        examples = re.findall(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)*, China\b", comment)
        examples += re.findall(r"\(([A-Z][A-Za-z ]+)[;)]", comment)
        assert len(examples) >= 4
        assert set(examples) <= shown, set(examples) - shown
        assert "SAR" not in comment

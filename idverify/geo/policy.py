"""The display policy: which label an address gets, from what its database says.

Mainland China shows the province's short name, Hong Kong, Macau and Taiwan show 中国香港,
中国澳门 and 中国台湾, other places their country's Chinese name, and special-purpose or unknown
addresses show 未知. Pure functions, no I/O.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from collections.abc import Iterable
from datetime import date
from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from idverify.geo.location import UNKNOWN, IpLocation
from idverify.geo.provider import RawGeo
from idverify.geo.regions import country_code_for_name, country_names, province_for

__all__ = [
    "SPECIAL_NETWORKS_V4",
    "SPECIAL_NETWORKS_V6",
    "CountryNames",
    "display_location",
    "is_special",
]

# Where a country's Chinese name comes from: the database's own zh-CN name when it has one,
# or always the ISO 3166 table (the same label whichever database is mounted).
CountryNames = Literal["database", "table"]

# Addresses that never identify a place on the public internet: RFC 6890 and the IANA
# special-purpose registries (private, loopback, link-local, shared/CGNAT, documentation,
# benchmarking, protocol assignments), multicast and the reserved class E.
SPECIAL_NETWORKS_V4: tuple[IPv4Network, ...] = tuple(
    IPv4Network(text)
    for text in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)

# Global unicast is 2000::/3 only; everything outside it (unspecified, loopback, IPv4-mapped
# and -compatible, NAT64, discard, unique-local, link-local, site-local, multicast, reserved)
# is special, and so are the protocol-assignment and documentation blocks inside it.
SPECIAL_NETWORKS_V6: tuple[IPv6Network, ...] = tuple(
    IPv6Network(text)
    for text in (
        "::/3",
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
        "4000::/2",
        "8000::/1",
    )
)


def _merged_bounds(
    networks: Iterable[IPv4Network | IPv6Network],
) -> tuple[list[int], list[int]]:
    starts: list[int] = []
    ends: list[int] = []
    for network in sorted(networks, key=lambda network: int(network.network_address)):
        first, last = int(network.network_address), int(network.broadcast_address)
        if ends and first <= ends[-1] + 1:
            ends[-1] = max(ends[-1], last)
        else:
            starts.append(first)
            ends.append(last)
    return starts, ends


_BOUNDS = {4: _merged_bounds(SPECIAL_NETWORKS_V4), 6: _merged_bounds(SPECIAL_NETWORKS_V6)}


def is_special(version: int, address: int) -> bool:
    """Whether an address lies in a special-purpose range, whose location is always 未知.

    Args:
        version: 4 or 6.
        address: the address as an integer (IPv4-mapped addresses already turned into IPv4).
    """
    starts, ends = _BOUNDS[version]
    index = bisect_right(starts, address) - 1
    return index >= 0 and address <= ends[index]


def _is_chinese(text: str) -> bool:
    return any(unicodedata.name(char, "").startswith("CJK UNIFIED") for char in text)


def display_location(
    raw: RawGeo | None,
    *,
    source: str,
    build_date: date | None,
    country_names_from: CountryNames = "database",
) -> IpLocation:
    """The label to show for what a database says about an address.

    Args:
        raw: the database's answer, or None when it has none.
        source: the database's name, copied into the answer.
        build_date: the database's build date, copied into the answer.
        country_names_from: where a foreign country's Chinese name comes from.

    Returns:
        The location; 未知 (with the source filled in) when the database knows no country.
    """
    if raw is None:
        return _unknown(source, build_date)
    code = raw.country_code.upper()
    if country_names(code) is None:
        code = country_code_for_name(raw.country_zh) or country_code_for_name(raw.country_en) or ""
    if code == "CN":
        division = province_for(raw.subdivision_code, (raw.subdivision_zh, raw.subdivision_en))
        if division is None:
            return IpLocation("中国", "China", "CN", "", source, build_date)
        if division.is_mainland:
            return IpLocation(division.name_zh, division.name_en, "CN", division.code, source, build_date)
        code = division.country_code
    table_names = country_names(code) if code else None
    if code in {"HK", "MO", "TW"} and table_names is not None:
        # Whatever the database calls them, they show as parts of China.
        return IpLocation(table_names[0], table_names[1], code, "", source, build_date)
    prefer_database = country_names_from == "database" or table_names is None
    name_zh = raw.country_zh if _is_chinese(raw.country_zh) else ""
    name_en = raw.country_en if not _is_chinese(raw.country_en) else ""
    if table_names is not None:
        name_zh = name_zh if prefer_database and name_zh else table_names[0]
        name_en = name_en if prefer_database and name_en else table_names[1]
    if not name_zh:
        return _unknown(source, build_date)
    return IpLocation(name_zh, name_en or "Unknown", code, "", source, build_date)


def _unknown(source: str, build_date: date | None) -> IpLocation:
    return IpLocation(UNKNOWN.display, UNKNOWN.display_en, "", "", source, build_date)

"""Builders of small mmdb files with known ranges (xdb files: ``idverify.geo.xdb_writer``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def place(code: str = "", zh: str = "", en: str = "") -> dict[str, Any]:
    """A GeoIP2-style country or subdivision map with the names given."""
    names = {key: value for key, value in (("zh-CN", zh), ("en", en)) if value}
    result: dict[str, Any] = {"names": names}
    if code:
        result["iso_code"] = code
    return result


def city(country: dict[str, Any] | None = None, subdivision: dict[str, Any] | None = None) -> dict[str, Any]:
    """A GeoIP2 City-style record: continent, location and a city besides what matters."""
    record: dict[str, Any] = {
        "continent": {"code": "AS", "names": {"en": "Asia", "zh-CN": "亚洲"}},
        "location": {
            "accuracy_radius": 50,
            "latitude": 23.1167,
            "longitude": 113.25,
            "time_zone": "Asia/Shanghai",
        },
        "city": {"names": {"en": "Somewhere", "zh-CN": "某地"}},
    }
    if country is not None:
        record["country"] = country
        record["registered_country"] = country
    if subdivision is not None:
        record["subdivisions"] = [subdivision, place("X", en="A district")]
    return record


CHINA = place("CN", "中国", "China")

# The contents of the small mmdb file most tests use: network -> record.
SMALL_MMDB: dict[str, dict[str, Any]] = {
    "1.0.0.0/24": city(CHINA, place("GD", "广东省", "Guangdong")),
    "1.0.1.0/24": city(CHINA, place("NM", "内蒙古自治区", "Inner Mongolia Autonomous Region")),
    "1.0.2.0/23": city(CHINA),
    "2.0.0.0/16": city(place("US", "美国", "United States"), place("CA", "加利福尼亚州", "California")),
    "3.0.0.0/16": city(place("JP", en="Japan")),
    "4.0.0.0/16": city(place("HK", "香港", "Hong Kong")),
    "5.0.0.0/16": city(place("TW", "中华民国", "Taiwan")),
    "6.0.0.0/16": {"continent": {"code": "EU", "names": {"en": "Europe"}}},
    "2400::/16": city(CHINA, place("BJ", "北京市", "Beijing")),
    "2a00:1::/64": city(place("DE", "德国", "Germany")),
    "2a00:1:0:1::/65": city(place("FR", "法国", "France")),
    "2a00:1:0:1:8000::/65": city(place("DE", "德国", "Germany")),
}


def write_mmdb(
    path: Path,
    networks: dict[str, dict[str, Any]],
    *,
    ip_version: int = 6,
    database_type: str = "GeoLite2-City",
) -> Path:
    """Write an mmdb file holding ``networks`` with mmdb-writer."""
    writer = MMDBWriter(
        ip_version=ip_version,
        database_type=database_type,
        languages=["en", "zh-CN"],
        description="idverify test database",
        ipv4_compatible=ip_version == 6,
    )
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path

"""The IP-location answer shown to users: labels in Chinese and English, and where they came from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["UNKNOWN", "IpLocation"]


@dataclass(frozen=True, slots=True)
class IpLocation:
    """Where an address is, at the granularity the display policy allows.

    Attributes:
        display: the label shown to users (``广东``, ``中国香港``, ``美国``, ``未知``).
        display_en: the same in English (``Guangdong``, ``Hong Kong, China``, ``Unknown``).
        country_code: ISO 3166-1 alpha-2 code (``CN``, ``HK``, ``US``), empty when unknown.
        region_code: ISO 3166-2 code of a mainland province (``CN-GD``), else empty.
        source: the database that answered (``GeoLite2-City``, ``ip2region``); empty when no
            database was asked (private, reserved and other special-purpose addresses).
        source_build_date: the day that database was built, or None.
    """

    display: str
    display_en: str
    country_code: str = ""
    region_code: str = ""
    source: str = ""
    source_build_date: date | None = None

    @property
    def is_known(self) -> bool:
        """Whether the location is known (the label is not 未知)."""
        return self.display != UNKNOWN.display


UNKNOWN = IpLocation(display="未知", display_en="Unknown")

"""The small interface every IP database sits behind, and the raw answer it gives.

A provider says what its file says about an address; deciding what to show is the display
policy's job (``idverify.geo.policy``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Literal, Protocol

from idverify.domain.errors import ConfigError

__all__ = [
    "SUBDIVIDED_COUNTRIES",
    "DatabaseInfo",
    "GeoDatabaseError",
    "GeoProvider",
    "IpRange",
    "Ipv4Alias",
    "RawGeo",
    "build_date_of",
]

# The display policy shows a subdivision only for these countries ("" is a record whose country
# code is missing), so ``GeoProvider.ranges`` may leave subdivisions out everywhere else: that
# spares decoding them at load and lets neighbouring networks of one country merge.
SUBDIVIDED_COUNTRIES = frozenset({"CN", ""})


class GeoDatabaseError(ConfigError):
    """A database file cannot be used: unreadable, of an unknown type, corrupt or truncated."""


@dataclass(frozen=True, slots=True)
class RawGeo:
    """What a database says about an address, before the display policy.

    Every field is empty when the database does not say.

    Attributes:
        country_code: ISO 3166-1 alpha-2 code, upper case (``CN``).
        country_zh: the database's Chinese name of the country (``中国``).
        country_en: its English name (``China``).
        subdivision_code: the first-level subdivision's code as the database gives it
            (``GD``, ``CN-GD`` or ``44``).
        subdivision_zh: its Chinese name (``广东省``).
        subdivision_en: its English name (``Guangdong``).
    """

    country_code: str = ""
    country_zh: str = ""
    country_en: str = ""
    subdivision_code: str = ""
    subdivision_zh: str = ""
    subdivision_en: str = ""


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """Which database a provider serves.

    Attributes:
        type: ``mmdb`` or ``xdb``.
        path: the file it was read from, or None when it came from memory.
        name: what the file calls itself (``GeoLite2-City``, ``ip2region``).
        build_date: the day the file was built (UTC), or None if it does not say.
        record_count: address ranges with data: networks of an mmdb search tree, segments of
            an xdb index.
        ip_versions: the IP versions it has data for.
    """

    type: Literal["mmdb", "xdb"]
    path: Path | None
    name: str
    build_date: date | None
    record_count: int
    ip_versions: frozenset[int]


@dataclass(frozen=True, slots=True)
class Ipv4Alias:
    """An IPv6 range the file answers from its IPv4 data (an mmdb file's alias of its IPv4 tree).

    The answer for an address there is the file's answer for the IPv4 address in its bits
    ``(address >> shift) & 0xFFFFFFFF``: ``::ffff:0:0/96`` and ``::/96`` carry it in their last
    32 bits (shift 0), 6to4's ``2002::/16`` right after the prefix (shift 80), Teredo's
    ``2001::/32`` likewise (shift 64).
    """

    shift: int


def build_date_of(epoch: object) -> date | None:
    """The UTC day of a file's build time in Unix seconds, or None when it does not say one.

    A file's header is data like any other: a time of 0, of another type than an integer, or
    past what a date holds (MaxMind's test file of a ``2**64 - 1`` epoch) is no build date.
    """
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch <= 0:
        return None
    try:
        return datetime.fromtimestamp(epoch, tz=UTC).date()
    except (OverflowError, ValueError, OSError):
        return None


# first address, last address (both as integers), and what the database says about them.
IpRange = tuple[int, int, RawGeo | Ipv4Alias | None]


class GeoProvider(Protocol):
    """An IP database fully loaded into memory."""

    def lookup(self, address: IPv4Address | IPv6Address) -> RawGeo | None:
        """What the database says about one address.

        Args:
            address: the address; IPv4-mapped IPv6 addresses are expected as IPv4.

        Returns:
            The database's answer, or None when it has no data for the address.
        """
        ...

    def ranges(self, version: Literal[4, 6]) -> Iterator[IpRange]:
        """Every range of the address space with its answer, ascending and not overlapping.

        Adjacent ranges with the same answer may come as one, and subdivisions may be left out
        for countries outside ``SUBDIVIDED_COUNTRIES``. An IPv6 range the file answers from its
        IPv4 data comes as an ``Ipv4Alias``. Addresses that no range covers are answered by
        ``lookup``.

        Args:
            version: 4 or 6.

        Raises:
            GeoDatabaseError: the file's index is corrupt.
        """
        ...

    def info(self) -> DatabaseInfo:
        """Which database this is."""
        ...

"""IP-location display: database providers (mmdb, ip2region xdb), the display policy and the resolver."""

from idverify.geo.address import BAD_IP, parse_address
from idverify.geo.database import DEFAULT_DATABASE_WARNING, default_database_path, open_database, sniff_kind
from idverify.geo.location import UNKNOWN, IpLocation
from idverify.geo.mmdb import MmdbProvider
from idverify.geo.policy import CountryNames, display_location, is_special
from idverify.geo.provider import DatabaseInfo, GeoDatabaseError, GeoProvider, Ipv4Alias, RawGeo
from idverify.geo.resolver import GeoResolver
from idverify.geo.xdb import XdbProvider

__all__ = [
    "BAD_IP",
    "DEFAULT_DATABASE_WARNING",
    "UNKNOWN",
    "CountryNames",
    "DatabaseInfo",
    "GeoDatabaseError",
    "GeoProvider",
    "GeoResolver",
    "IpLocation",
    "Ipv4Alias",
    "MmdbProvider",
    "RawGeo",
    "XdbProvider",
    "default_database_path",
    "display_location",
    "is_special",
    "open_database",
    "parse_address",
    "sniff_kind",
]

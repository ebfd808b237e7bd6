"""Fixtures of the geo tests: a small mmdb file and the bundled database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from geo_builders import SMALL_MMDB, write_mmdb

from idverify.geo import GeoResolver


@pytest.fixture
def small_mmdb(tmp_path: Path) -> Path:
    return write_mmdb(tmp_path / "small.mmdb", SMALL_MMDB)


@pytest.fixture(scope="session")
def default_resolver() -> Iterator[GeoResolver]:
    """The bundled GeoLite2 City of December 2019 (loading it takes seconds: once per run)."""
    resolver = GeoResolver()
    yield resolver
    resolver.close()

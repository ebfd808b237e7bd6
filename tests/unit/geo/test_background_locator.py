"""The server's IP locator: a database file it cannot use is one line in the log, never a traceback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from geo_builders import SMALL_MMDB, write_mmdb

from idverify.config import GeoSettings
from idverify.domain.errors import FailedPrecondition
from idverify.flows.ip_locator import BackgroundLocator


def wait_loaded(locator: BackgroundLocator, ip: str = "1.0.0.1") -> str:
    """The display label of ``ip`` once the locator has loaded (or failed to load) its file."""
    return asyncio.run(locator.locate(ip)).display


class TestLoadErrors:
    @pytest.mark.parametrize("contents", [b"not a database" * 100, b"", b"\xab\xcd\xefMaxMind.com"])
    def test_an_unusable_file_at_load_is_one_line(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, contents: bytes
    ) -> None:
        """The load error names the file and the reason on one line; IP calls are FAILED_PRECONDITION."""
        bad = tmp_path / "bad.mmdb"
        bad.write_bytes(contents)
        with caplog.at_level(logging.ERROR, logger="idverify.geo"):
            locator = BackgroundLocator(GeoSettings(database=str(bad)))
            with pytest.raises(FailedPrecondition):
                wait_loaded(locator)
        errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert errors[0].exc_info is None
        message = errors[0].getMessage()
        assert "bad.mmdb" in message
        assert "\n" not in message

    def test_a_good_file_loads(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A usable file is served with no error logged."""
        path = write_mmdb(tmp_path / "small.mmdb", SMALL_MMDB)
        with caplog.at_level(logging.ERROR, logger="idverify.geo"):
            locator = BackgroundLocator(GeoSettings(database=str(path)))
            assert wait_loaded(locator) == "广东"
        locator.close()
        assert not [record for record in caplog.records if record.levelno >= logging.ERROR]

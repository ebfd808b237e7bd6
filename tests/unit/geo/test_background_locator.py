"""The server's IP locator: a database file it cannot use is one line in the log, never a traceback."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from geo_builders import SMALL_MMDB, write_mmdb

from idverify.config import GeoSettings
from idverify.domain.errors import FailedPrecondition, StoreUnavailable
from idverify.flows import ip_locator
from idverify.flows.ip_locator import BackgroundLocator
from idverify.geo import GeoResolver


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


class TestRetryAfterAFailedLoad:
    """A database that could not be loaded at start is loaded once it is fixed, without a restart."""

    def test_a_lookup_loads_a_file_fixed_after_the_failed_load(self, tmp_path: Path) -> None:
        """The file is replaced by a good one: a later lookup sees the change and answers from it."""
        path = tmp_path / "late.mmdb"
        path.write_bytes(b"not yet a database" * 100)
        locator = BackgroundLocator(GeoSettings(database=str(path)))
        with pytest.raises(FailedPrecondition):
            wait_loaded(locator)
        write_mmdb(path, SMALL_MMDB)
        deadline = time.monotonic() + 10
        while True:
            try:
                label = wait_loaded(locator)
                break
            except FailedPrecondition:
                assert time.monotonic() < deadline, "the fixed file was never loaded"
                time.sleep(0.1)
        locator.close()
        assert label == "广东"

    def test_a_reload_loads_a_file_fixed_after_the_failed_load(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With lookups not looking at the files, SIGHUP's reload loads the fixed file."""
        monkeypatch.setattr(ip_locator, "RETRY_CHECK_SECONDS", 3600.0)
        path = tmp_path / "late.mmdb"
        path.write_bytes(b"not yet a database" * 100)
        locator = BackgroundLocator(GeoSettings(database=str(path)))
        for _ in range(2):  # the second lookup looks at the files, then not for an hour
            with pytest.raises(FailedPrecondition):
                wait_loaded(locator)
        write_mmdb(path, SMALL_MMDB)
        with pytest.raises(FailedPrecondition):
            wait_loaded(locator)
        locator.reload()
        assert wait_loaded(locator) == "广东"
        locator.close()

    def test_an_unchanged_bad_file_is_not_loaded_again(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Lookups after a failed load do not read the same bad file again: one error in the log."""
        path = tmp_path / "bad.mmdb"
        path.write_bytes(b"not a database" * 100)
        with caplog.at_level(logging.ERROR, logger="idverify.geo"):
            locator = BackgroundLocator(GeoSettings(database=str(path)))
            for _ in range(3):
                with pytest.raises(FailedPrecondition):
                    wait_loaded(locator)
                time.sleep(ip_locator.RETRY_CHECK_SECONDS)
        assert len([record for record in caplog.records if record.levelno >= logging.ERROR]) == 1


class TestWaitingForTheLoad:
    """Lookups that arrive while the tables load wait on the event loop, bounded, then GEO_LOADING."""

    # Serial: it counts the whole process's threads, and on a loaded machine a thread an earlier
    # test left behind ended during the burst (one thread fewer, in the parallel phase).
    @pytest.mark.serial
    def test_a_burst_waits_without_a_thread_each_and_hears_geo_loading(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write_mmdb(tmp_path / "small.mmdb", SMALL_MMDB)
        release = threading.Event()
        real_resolver = ip_locator.GeoResolver

        def slow_resolver(*args: Any, **kwargs: Any) -> GeoResolver:
            release.wait(60)  # a build that takes as long as the test says
            return real_resolver(*args, **kwargs)

        monkeypatch.setattr(ip_locator, "GeoResolver", slow_resolver)
        locator = BackgroundLocator(GeoSettings(database=str(path)), load_wait_seconds=0.5)

        async def burst() -> tuple[list[BaseException | ip_locator.Label], int]:
            threads_before = threading.active_count()
            calls = [asyncio.ensure_future(locator.locate("1.0.0.1")) for _ in range(200)]
            await asyncio.sleep(0.2)
            threads_while_waiting = threading.active_count() - threads_before
            return await asyncio.gather(*calls, return_exceptions=True), threads_while_waiting

        answers, extra_threads = asyncio.run(burst())
        assert extra_threads == 0
        assert all(isinstance(a, StoreUnavailable) and a.reason == "GEO_LOADING" for a in answers)

        async def one_waiting_through_the_end() -> str:
            waiting = asyncio.ensure_future(locator.locate("1.0.0.1"))
            await asyncio.sleep(0.1)
            release.set()
            return (await waiting).display

        locator._load_wait_seconds = 60.0
        assert asyncio.run(one_waiting_through_the_end()) == "广东"
        locator.close()

    def test_the_wait_fits_inside_the_servers_call_limit(self, tmp_path: Path) -> None:
        path = write_mmdb(tmp_path / "small.mmdb", SMALL_MMDB)
        assert (
            ip_locator.open_locator(GeoSettings(database=str(path)), call_limit_seconds=3)._load_wait_seconds
            == 2
        )
        assert (
            ip_locator.open_locator(
                GeoSettings(database=str(path)), call_limit_seconds=600
            )._load_wait_seconds
            == ip_locator.LOAD_WAIT_SECONDS
        )

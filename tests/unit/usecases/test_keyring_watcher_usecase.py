"""KeyringWatcher over an in-memory ServerReports: reloads and reports, no Redis.

Each test shows one decision of the watcher: a changed keyring file taken (after its versions
are recorded), a refused one kept out, one that cannot be checked yet read again at the next
look, and the report of what the server holds, renewed and withdrawn.
``tests/unit/flows/test_server_reports.py`` and the e2e key-rotation tests run it over Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from idverify.domain.errors import ConfigError, StoreUnavailable
from idverify.flows.keyring_watcher import KeyringWatcher, ServerKeyring
from idverify.flows.schema_version import SCHEMA_VERSION
from idverify.privacy.keyring import Keyring, LiveKeyring, save_keyring_file
from idverify.testing.memory_server_reports import MemoryServerReports


class Recorder:
    """The ``record`` hook: remembers the keyrings it was asked to check, refuses or fails on demand."""

    def __init__(self) -> None:
        self.seen: list[Keyring] = []
        self.fail: Exception | None = None

    async def __call__(self, keyring: Keyring) -> None:
        self.seen.append(keyring)
        if self.fail is not None:
            raise self.fail


def watched(tmp_path: Path) -> tuple[Keyring, LiveKeyring, Path]:
    keyring = Keyring.generate()
    path = tmp_path / "keyring.json"
    save_keyring_file(keyring, path)
    return keyring, LiveKeyring(keyring), path


async def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    _, live, path = watched(tmp_path)
    record = Recorder()
    watcher = KeyringWatcher(live, path, MemoryServerReports(), 1.0, record=record)
    assert not await watcher.reload_if_changed()
    assert record.seen == []


async def test_an_edit_made_before_the_watcher_was_built_is_taken_at_its_first_look(tmp_path: Path) -> None:
    """A worker reads the keyring at start and builds its watcher later: an edit in between counts."""
    keyring, live, path = watched(tmp_path)
    rotated = keyring.with_new_wrapping_key()
    save_keyring_file(rotated, path)
    record = Recorder()
    watcher = KeyringWatcher(live, path, MemoryServerReports(), 1.0, record=record)
    assert await watcher.reload_if_changed()
    assert [k.wrapping_versions for k in record.seen] == [rotated.wrapping_versions]
    assert live.wrapping_current == rotated.wrapping_current


async def test_a_keyring_from_the_environment_is_never_reloaded(tmp_path: Path) -> None:
    keyring, live, _ = watched(tmp_path)
    watcher = KeyringWatcher(live, None, MemoryServerReports(), 1.0)
    assert not await watcher.reload_if_changed()
    assert live.current is keyring


async def test_a_new_version_is_recorded_then_taken(tmp_path: Path) -> None:
    keyring, live, path = watched(tmp_path)
    record = Recorder()
    watcher = KeyringWatcher(live, path, MemoryServerReports(), 1.0, record=record)
    rotated = keyring.with_new_wrapping_key()
    save_keyring_file(rotated, path)
    assert await watcher.reload_if_changed()
    assert [k.wrapping_versions for k in record.seen] == [rotated.wrapping_versions]
    assert live.wrapping_current == rotated.wrapping_current != keyring.wrapping_current
    assert not await watcher.reload_if_changed()  # the same file again


async def test_a_keyring_the_record_refuses_is_not_taken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keyring, live, path = watched(tmp_path)
    record = Recorder()
    record.fail = ConfigError("keyring: wrapping key w9 was never recorded")
    watcher = KeyringWatcher(live, path, MemoryServerReports(), 1.0, record=record)
    save_keyring_file(keyring.with_new_wrapping_key(), path)
    assert not await watcher.reload_if_changed()
    assert live.current is keyring
    assert "keyring file not taken" in caplog.text
    assert not await watcher.reload_if_changed()  # refused for good: not read again until it changes
    assert len(record.seen) == 1


async def test_a_keyring_changing_a_held_secret_is_refused(tmp_path: Path) -> None:
    keyring, live, path = watched(tmp_path)
    watcher = KeyringWatcher(live, path, MemoryServerReports(), 1.0)
    save_keyring_file(Keyring.generate(), path)  # other secrets under the same version names
    assert not await watcher.reload_if_changed()
    assert live.current is keyring


async def test_a_keyring_that_cannot_be_checked_yet_is_read_again(tmp_path: Path) -> None:
    keyring, live, path = watched(tmp_path)
    record = Recorder()
    record.fail = StoreUnavailable("redis unavailable: ConnectionError")
    watcher = KeyringWatcher(live, path, MemoryServerReports(), 1.0, record=record)
    rotated = keyring.with_new_pepper()
    save_keyring_file(rotated, path)
    assert not await watcher.reload_if_changed()
    assert live.current is keyring
    record.fail = None
    assert await watcher.reload_if_changed()  # the file did not change, yet it is read again
    assert live.pepper_current == rotated.pepper_current


async def test_the_report_names_the_versions_held_and_this_releases_schema(tmp_path: Path) -> None:
    keyring, live, path = watched(tmp_path)
    reports = MemoryServerReports()
    watcher = KeyringWatcher(live, path, reports, 1.0)
    await watcher.report()
    [report] = await reports.running()
    assert report == ServerKeyring(
        report.instance,
        keyring.wrapping_current,
        keyring.wrapping_versions,
        keyring.pepper_current,
        schema=SCHEMA_VERSION,
    )
    save_keyring_file(keyring.with_new_wrapping_key(), path)
    await watcher.reload_if_changed()
    await watcher.report()
    [renewed] = await reports.running()
    assert (renewed.instance, renewed.wrapping_current) == (report.instance, live.wrapping_current)
    await watcher.withdraw()
    assert await reports.running() == []


async def test_the_watcher_runs_on_while_the_store_is_down_and_withdraws_quietly(tmp_path: Path) -> None:
    _, live, path = watched(tmp_path)
    reports = MemoryServerReports()
    reports.down = True
    watcher = KeyringWatcher(live, path, reports, 0.01)
    task = asyncio.create_task(watcher.run())
    await asyncio.sleep(0.05)
    assert not task.done()  # a report that fails does not end the loop
    reports.down = False
    await asyncio.sleep(0.05)
    assert len(await reports.running()) == 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    reports.down = True
    await watcher.withdraw()  # on shutdown with Redis gone: nothing raised

"""The data directory: start-up checks that name the setting, and the one-holder lock."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from idverify.data_dir import (
    LOCK_FILE,
    DataDirInUse,
    DataDirLock,
    check_witness_dirs,
    prepare_data_dir,
    prepare_tiles_dir,
)
from idverify.domain.errors import ConfigError


class TestPrepareDataDir:
    def test_a_new_directory_is_made_private(self, tmp_path: Path) -> None:
        """A missing data dir under an existing folder is created with mode 0700."""
        prepare_data_dir(tmp_path / "data")
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700

    def test_an_existing_directory_is_left_alone(self, tmp_path: Path) -> None:
        """An existing data dir keeps its mode and contents."""
        tmp_path.chmod(0o750)
        (tmp_path / "keep").write_text("x", encoding="utf-8")
        prepare_data_dir(tmp_path)
        assert tmp_path.stat().st_mode & 0o777 == 0o750
        assert (tmp_path / "keep").exists()

    def test_a_file_is_refused(self, tmp_path: Path) -> None:
        """A file where the directory should be is a configuration error naming data_dir."""
        (tmp_path / "file").write_text("x", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"^data_dir: .*/file is not a directory$"):
            prepare_data_dir(tmp_path / "file")

    def test_a_path_under_a_file_names_the_file(self, tmp_path: Path) -> None:
        """A path through a file names that file."""
        (tmp_path / "file").write_text("x", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"/file is not a directory$"):
            prepare_data_dir(tmp_path / "file" / "a" / "data")

    def test_a_missing_parent_is_refused_not_created(self, tmp_path: Path) -> None:
        """A missing parent (most often a typo) is named, and nothing is created."""
        with pytest.raises(ConfigError, match=r"/typo does not exist$"):
            prepare_data_dir(tmp_path / "typo" / "data")
        assert not (tmp_path / "typo").exists()


class TestDataDirLock:
    def test_a_second_holder_is_refused_with_the_first_ones_pid(self, tmp_path: Path) -> None:
        """While held, the lock refuses another taker and names the holder's pid."""
        with DataDirLock.acquire(tmp_path):
            with pytest.raises(DataDirInUse) as refused:
                DataDirLock.acquire(tmp_path)
            assert refused.value.holder == os.getpid()
            assert (
                str(refused.value)
                == f"data directory {tmp_path} is in use by another idverify process (pid {os.getpid()})"
            )

    def test_released_it_can_be_taken_again(self, tmp_path: Path) -> None:
        """After release (or the holder's end) the next taker gets the lock."""
        DataDirLock.acquire(tmp_path).release()
        with DataDirLock.acquire(tmp_path) as again:
            assert again.descriptor >= 0
        assert (tmp_path / LOCK_FILE).stat().st_mode & 0o777 == 0o600

    def test_a_forked_child_keeps_it_after_the_parent_lets_go(self, tmp_path: Path) -> None:
        """A worker (forked) shares the lock: it stays held until the last holder has closed it."""
        lock = DataDirLock.acquire(tmp_path)
        ready_r, ready_w = os.pipe()
        done_r, done_w = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child's coverage is not collected
            os.close(ready_r)
            os.close(done_w)
            os.write(ready_w, b"R")
            os.read(done_r, 1)
            os._exit(0)
        os.close(ready_w)
        os.close(done_r)
        try:
            os.read(ready_r, 1)
            lock.release()
            with pytest.raises(DataDirInUse):
                DataDirLock.acquire(tmp_path)
        finally:
            os.write(done_w, b"D")
            os.waitpid(child, 0)
        DataDirLock.acquire(tmp_path).release()

    def test_an_unwritable_directory_names_data_dir(self) -> None:
        """A directory root cannot write into either (sysfs, like a read-only mount) names data_dir."""
        with pytest.raises(ConfigError, match=r"^data_dir: /sys/kernel is not writable \("):
            DataDirLock.acquire(Path("/sys/kernel"))


class TestWitnessDirs:
    def test_an_existing_writable_directory_passes(self, tmp_path: Path) -> None:
        check_witness_dirs((str(tmp_path),))

    def test_a_missing_witness_is_refused_not_created(self, tmp_path: Path) -> None:
        """A witness that is not there is a mount that failed: making one would witness nothing."""
        refused = r"^audit_witness_dirs: .*/gone is not a directory \(is it mounted\?\)$"
        with pytest.raises(ConfigError, match=refused):
            check_witness_dirs((str(tmp_path / "gone"),))
        assert not (tmp_path / "gone").exists()


class TestTilesDir:
    def test_a_missing_directory_is_made_for_the_service_alone(self, tmp_path: Path) -> None:
        prepare_tiles_dir(str(tmp_path / "tiles"))
        assert stat.S_IMODE((tmp_path / "tiles").stat().st_mode) == 0o700
        assert list((tmp_path / "tiles").iterdir()) == []  # the write probe left nothing

    def test_off_touches_nothing(self) -> None:
        prepare_tiles_dir("")

    @pytest.mark.parametrize(
        ("path", "refused"),
        [
            ("{tmp}/file", r"^audit_tiles_dir: .*/file is not a directory$"),
            ("{tmp}/file/tiles", r"^audit_tiles_dir: cannot write in .*/file/tiles \(Not a directory\)$"),
            # Root may write anywhere but where nothing may be written, as sysfs or a read-only mount.
            ("/sys/kernel", r"^audit_tiles_dir: cannot write in /sys/kernel \(Permission denied\)$"),
        ],
    )
    def test_a_careless_path_is_one_line_naming_the_setting(
        self, tmp_path: Path, path: str, refused: str
    ) -> None:
        (tmp_path / "file").write_text("not a directory", encoding="utf-8")
        with pytest.raises(ConfigError, match=refused):
            prepare_tiles_dir(path.format(tmp=tmp_path))

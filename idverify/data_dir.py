"""The data directory: checked once at start-up, and held by one server at a time.

A server (its supervisor, and the workers it forks, which inherit the lock) holds an exclusive
``flock`` on ``<data_dir>/idverify.lock`` for its whole life. A second server on the same
directory would start a second embedded redis-server on the same append-only file, and on its
exit that one deletes the first one's socket; the lock turns that into a refusal. The kernel
drops the lock with the last process holding it, so a killed server leaves no stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from idverify.domain.errors import ConfigError

LOCK_FILE = "idverify.lock"


class DataDirInUse(RuntimeError):
    """Another process holds the data directory's lock.

    Attributes:
        data_dir: the directory.
        holder: the pid written by the process holding the lock (0 when unknown).
    """

    def __init__(self, data_dir: Path, holder: int) -> None:
        who = f" (pid {holder})" if holder else ""
        super().__init__(f"data directory {data_dir} is in use by another idverify process{who}")
        self.data_dir = data_dir
        self.holder = holder


def prepare_data_dir(data_dir: Path) -> None:
    """Creates the data directory (mode 0700) unless it exists; its parent must exist.

    A missing parent is refused rather than created: it is most often a typo, and a server on a
    fresh directory would quietly generate a new keyring and a new Redis beside the real ones.

    Raises:
        ConfigError: naming ``data_dir`` when the path is a file, lies under a file or a missing
            folder, or cannot be created.
    """
    if data_dir.is_dir():
        return
    if data_dir.exists():
        raise ConfigError(f"data_dir: {data_dir} is not a directory")
    missing = _first_non_directory(data_dir.absolute().parent)
    if missing is not None:
        what = "is not a directory" if missing.exists() else "does not exist"
        raise ConfigError(f"data_dir: {data_dir}: {missing} {what}")
    try:
        data_dir.mkdir(mode=0o700)
    except FileExistsError:
        return  # another process made it a moment ago
    except OSError as exc:
        raise ConfigError(f"data_dir: cannot create {data_dir} ({exc.strerror})") from None


def check_witness_dirs(witness_dirs: tuple[str, ...]) -> None:
    """Each audit witness directory exists and this process may write in it.

    They are never created: a witness is another machine's mount, and a missing one is a mount
    that failed, where a fresh directory would witness nothing.

    Raises:
        ConfigError: naming the first directory that is missing or not writable.
    """
    for item in witness_dirs:
        witness = Path(item)
        if not witness.is_dir():
            raise ConfigError(f"audit_witness_dirs: {witness} is not a directory (is it mounted?)")
        if not os.access(witness, os.W_OK | os.X_OK):
            raise ConfigError(f"audit_witness_dirs: {witness} is not writable by this user")


def prepare_tiles_dir(tiles_dir: str) -> None:
    """Creates the audit tiles directory (0700) unless it exists, and checks it can be written.

    Unlike a witness it may be created: it is this server's own volume, filled from Redis.

    Raises:
        ConfigError: naming ``audit_tiles_dir`` when the path is a file, cannot be created, or
            a file cannot be written in it.
    """
    if not tiles_dir:
        return
    directory = Path(tiles_dir)
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        probe, name = tempfile.mkstemp(dir=directory, prefix=".probe-")
    except FileExistsError:
        raise ConfigError(f"audit_tiles_dir: {directory} is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"audit_tiles_dir: cannot write in {directory} ({exc.strerror})") from None
    os.close(probe)
    Path(name).unlink()


def _first_non_directory(path: Path) -> Path | None:
    """The first component of ``path`` that is missing or not a directory, if any."""
    for ancestor in (*reversed(path.parents), path):
        if not ancestor.is_dir():
            return ancestor
    return None


@dataclass
class DataDirLock:
    """An exclusive lock on a data directory, held until :meth:`release` or the process's end.

    A forked child shares the lock (the same open file); a child started by ``exec`` does not.
    """

    data_dir: Path
    descriptor: int

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Takes the lock without waiting and writes this process's pid into the lock file.

        Raises:
            DataDirInUse: when another process holds it.
            ConfigError: naming ``data_dir`` when the lock file cannot be created there.
        """
        path = data_dir / LOCK_FILE
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"data_dir: {data_dir} is not writable ({exc.strerror})") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(descriptor)
            os.close(descriptor)
            raise DataDirInUse(data_dir, holder) from None
        except OSError as exc:
            os.close(descriptor)
            raise ConfigError(f"data_dir: {data_dir} cannot be locked ({exc.strerror})") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        return cls(data_dir, descriptor)

    def release(self) -> None:
        """Gives the lock up (the pid stays in the file: only the lock counts)."""
        if self.descriptor >= 0:
            os.close(self.descriptor)
            self.descriptor = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _read_pid(descriptor: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(descriptor, 32, 0).decode("ascii").strip() or 0)
    return 0


__all__ = ["LOCK_FILE", "DataDirInUse", "DataDirLock", "prepare_data_dir", "prepare_tiles_dir"]

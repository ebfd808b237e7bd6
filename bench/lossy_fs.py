"""A FUSE filesystem that loses what was never synced, to simulate a power loss.

    python bench/lossy_fs.py BACKING MOUNTPOINT   # runs in the foreground until unmounted

Everything under MOUNTPOINT lives in BACKING, except file contents written since the file's last
``fsync``/``fdatasync``: those stay in this process's memory, as they would in the kernel's page
cache, and reads see them. SIGUSR1 is the power cut: every unsynced write is dropped. Metadata
(create, rename, unlink, mkdir, truncate) reaches BACKING at once; disks with a volatile cache
can lose those too, so this errs on the side of losing less.
"""

# The methods are libfuse's operations, called by name with libfuse's arguments and its string
# paths: their signatures and os-level calls follow that API, not this project's style.
# ruff: noqa: ARG002, D102

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import mfusepy as fuse  # type: ignore[import-untyped]

_STAT_FIELDS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime", "st_ctime")
_STATVFS_FIELDS = (
    "f_bsize",
    "f_frsize",
    "f_blocks",
    "f_bfree",
    "f_bavail",
    "f_files",
    "f_ffree",
    "f_namemax",
)


class LossyFs(fuse.Operations):  # type: ignore[misc]
    """Passes everything through to a backing directory except unsynced file contents."""

    use_ns = True  # utimens gets nanoseconds, as os.utime(ns=...) takes them

    def __init__(self, backing: str) -> None:
        self._backing = Path(backing)
        self._lock = threading.Lock()
        # path -> (writes since the last sync, in order; the file's size as readers see it)
        self._unsynced: dict[str, tuple[list[tuple[int, bytes]], int]] = {}

    def power_cut(self) -> None:
        """Drops every write not synced yet."""
        with self._lock:
            self._unsynced.clear()

    def _real(self, path: str) -> Path:
        return self._backing / path.lstrip("/")

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        try:
            st = os.lstat(self._real(path))
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno) from exc
        attributes = {
            key: getattr(st, key)
            for key in (
                "st_mode",
                "st_nlink",
                "st_uid",
                "st_gid",
                "st_size",
                "st_atime",
                "st_mtime",
                "st_ctime",
            )
        }
        with self._lock:
            if path in self._unsynced:
                attributes["st_size"] = self._unsynced[path][1]
        return attributes

    def readdir(self, path: str, fh: Any) -> list[str]:
        return [".", "..", *(child.name for child in self._real(path).iterdir())]

    def statfs(self, path: str) -> dict[str, Any]:
        st = os.statvfs(self._real(path))
        return {key: getattr(st, key) for key in _STATVFS_FIELDS}

    def mkdir(self, path: str, mode: int) -> None:
        self._real(path).mkdir(mode)

    def rmdir(self, path: str) -> None:
        self._real(path).rmdir()

    def unlink(self, path: str) -> None:
        with self._lock:
            self._unsynced.pop(path, None)
        self._real(path).unlink()

    def rename(self, old: str, new: str) -> None:
        with self._lock:
            pending = self._unsynced.pop(old, None)
            self._unsynced.pop(new, None)
            if pending is not None:
                self._unsynced[new] = pending
        self._real(old).rename(self._real(new))

    def chmod(self, path: str, mode: int) -> None:
        self._real(path).chmod(mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.chown(self._real(path), uid, gid)

    def utimens(self, path: str, times: Any = None) -> None:
        os.utime(self._real(path), ns=times)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        os.close(os.open(self._real(path), os.O_WRONLY | os.O_CREAT, mode))
        return 0

    def open(self, path: str, flags: int) -> int:
        if not self._real(path).exists():
            raise fuse.FuseOSError(errno.ENOENT)
        return 0

    def truncate(self, path: str, length: int, fh: Any = None) -> None:
        self._sync(path)
        os.truncate(self._real(path), length)

    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        with self._real(path).open("rb") as handle:
            handle.seek(offset)
            data = bytearray(handle.read(size))
        with self._lock:
            writes, logical_size = self._unsynced.get(path, ([], -1))
            if logical_size < 0:
                return bytes(data)
            end = min(offset + size, logical_size)
            data.extend(b"\0" * max(0, end - offset - len(data)))
            for at, chunk in writes:
                low, high = max(at, offset), min(at + len(chunk), end)
                if low < high:
                    data[low - offset : high - offset] = chunk[low - at : high - at]
            return bytes(data[: max(0, end - offset)])

    def write(self, path: str, data: bytes, offset: int, fh: Any) -> int:
        with self._lock:
            writes, logical_size = self._unsynced.get(path, ([], -1))
            if logical_size < 0:
                logical_size = self._real(path).stat().st_size
            writes.append((offset, bytes(data)))
            self._unsynced[path] = (writes, max(logical_size, offset + len(data)))
        return len(data)

    def fsync(self, path: str, datasync: int, fh: Any) -> None:
        self._sync(path)

    def flush(self, path: str, fh: Any) -> None:
        """Closing a file does not sync it."""

    def release(self, path: str, fh: Any) -> None:
        """Neither does releasing it."""

    def _sync(self, path: str) -> None:
        with self._lock:
            writes, _ = self._unsynced.pop(path, ([], -1))
        if not writes:
            return
        descriptor = os.open(self._real(path), os.O_WRONLY)
        try:
            for at, chunk in writes:
                os.pwrite(descriptor, chunk, at)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def main() -> None:
    backing, mountpoint = sys.argv[1], sys.argv[2]
    filesystem = LossyFs(backing)
    signal.signal(signal.SIGUSR1, lambda *_: filesystem.power_cut())
    fuse.FUSE(filesystem, mountpoint, foreground=True, nothreads=False, direct_io=True)


if __name__ == "__main__":
    main()

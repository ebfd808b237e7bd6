"""Files written whole and durably: complete under their name or absent, private from the first byte.

The keyring, the audit log's signing keys, the published heads and the audit tiles are all
written the same way: the bytes go to a fresh ``O_EXCL`` temporary beside the target (no other
file is reused, and the bytes never sit in a file with wider permissions), are synced to disk,
and then appear under the final name in one step; the directory is synced after, so the new
name survives a power loss too. ``os.replace`` takes the place of an existing file;
``os.link`` publishes a new one and fails rather than replace what is there, which makes
creation safe when several processes race for it and keeps write-once files written once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["PRIVATE", "make_private_dirs", "sync_directory", "write_durable_file"]

PRIVATE = 0o600


def write_durable_file(
    path: Path, data: bytes, *, overwrite: bool, mode: int = PRIVATE, sync_parent: bool = True
) -> None:
    """Writes ``data`` to ``path`` as a complete file of ``mode``, atomically and durably.

    With ``sync_parent`` False the file's bytes are synced but its name is not: the caller
    syncs the directory (``sync_directory``) before anything relies on the name, once for all
    the files it wrote there.

    Raises:
        FileExistsError: ``overwrite`` is False and ``path`` exists (nothing was changed).
        OSError: the directory is not writable, or the disk is full.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), PRIVATE
    )
    try:
        try:
            # The umask can only narrow the mode it was opened with; fchmod pins it exactly.
            os.fchmod(descriptor, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if overwrite:
            temporary.replace(path)
        else:
            path.hardlink_to(temporary)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    if sync_parent:
        sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Makes the directory's new entries durable (a no-op where a directory cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_private_dirs(directory: Path) -> list[Path]:
    """Creates the directory and its missing parents, each 0700.

    ``mkdir(parents=True)`` would give the parents the umask's mode.

    Returns:
        The directories it created, outermost first (their parents hold new names).
    """
    missing: list[Path] = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    created: list[Path] = []
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another writer made it meanwhile
            path.mkdir(mode=0o700)
            created.append(path)
    return created

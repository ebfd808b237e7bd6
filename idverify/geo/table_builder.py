"""Builds the IP tables of database files into a table cache, in a process of its own.

A build allocates about a hundred MiB of short-lived objects, and an allocator keeps much of what
was freed: built in the worker that needed the tables, they would leave it ~15 MiB bigger than the
workers that only map them. In a process of its own, all of it goes back when the process ends.

    python -m idverify.geo.table_builder CACHE_DIR KEY KIND COUNTRY_NAMES PATH...

KIND is ``mmdb``, ``xdb`` or empty. Exit status 0: the cache file is written; 2: a database file is
unusable (the reason on stderr, one line); 3: a file changed since the caller took its digest.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import idverify
from idverify.geo.database import DigestedFile
from idverify.geo.provider import GeoDatabaseError
from idverify.geo.resolver import build_snapshot
from idverify.geo.table_cache import TableCache, tables_key

__all__ = ["build_in_own_process"]

_UNUSABLE = 2
_CHANGED = 3
# A cold build of a large file takes seconds on a quiet machine, many times that on a busy one.
_BUILD_TIMEOUT_SECONDS = 600


def build_in_own_process(
    cache: TableCache, key: str, paths: Sequence[Path], kind: str | None, country_names_from: str
) -> None:
    """Writes the tables of ``key`` into ``cache`` from another process, and waits for it.

    Raises:
        GeoDatabaseError: a file is unusable, or changed since its digest was taken.
        OSError: the process could not run or write the file.
    """
    package_root = str(Path(idverify.__file__).resolve().parent.parent)
    search_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", __name__, str(cache.directory), key, kind or "", country_names_from]
    try:
        finished = subprocess.run(  # noqa: S603 - this interpreter, this module, our arguments
            [*command, *map(str, paths)],
            capture_output=True,
            env={**os.environ, "PYTHONPATH": search_path},
            timeout=_BUILD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise OSError(f"the IP table build took over {_BUILD_TIMEOUT_SECONDS} s") from error
    lines = finished.stderr.decode(errors="replace").strip().splitlines()
    reason = lines[-1] if lines else f"exit status {finished.returncode}"
    if finished.returncode in {_UNUSABLE, _CHANGED}:
        raise GeoDatabaseError(reason)
    if finished.returncode != 0:
        raise OSError(f"the IP table build failed: {reason}")


def main(argv: Sequence[str]) -> int:
    """Builds and writes; returns the exit status (see the module's description)."""
    directory, key, kind, country_names_from, *paths = argv
    if country_names_from not in {"database", "table"}:
        sys.stderr.write(f"country names come from database or table, not {country_names_from!r}\n")
        return _UNUSABLE
    try:
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(DigestedFile(Path(path))) for path in paths]
            if tables_key([file.digest for file in files], kind or None, country_names_from) != key:
                sys.stderr.write("an IP database file changed while it was being loaded\n")
                return _CHANGED
            snapshot = build_snapshot(
                files,
                tuple(file.identity for file in files),
                kind or None,
                "table" if country_names_from == "table" else "database",
            )
            TableCache(Path(directory)).write(key, snapshot.infos, snapshot.table_v4, snapshot.table_v6)
    except GeoDatabaseError as error:
        sys.stderr.write(f"{error}\n")
        return _UNUSABLE
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Prints the packages whose installed version differs from a lock file's pin.

``scripts/test --latest`` runs it in its throwaway venv, so a failing run names the releases that
are new since the lock was made.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, str]:
    """The lock's pins, by canonical package name."""
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            pins[_canonical(match[1])] = match[2]
    return pins


def main(argv: list[str]) -> int:
    """Prints one line a package that differs; returns 0 either way (this only informs)."""
    if len(argv) != 1:
        print("usage: lock_diff.py LOCK_FILE", file=sys.stderr)
        return 2
    pins = locked_versions(Path(argv[0]))
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    changed = [
        f"{name}: {pins.get(name, 'not locked')} -> {version}"
        for name, version in sorted(installed.items())
        if name in pins and pins[name] != version
    ]
    print("\n".join(changed) if changed else "none: the lock holds the newest allowed versions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

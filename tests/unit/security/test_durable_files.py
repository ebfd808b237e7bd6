"""write_durable_file: whole files of an exact mode, new ones never replacing what is there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from idverify.security.durable_files import write_durable_file


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    old = os.umask(0)
    try:
        write_durable_file(target, b"secret", overwrite=False)
    finally:
        os.umask(old)
    assert target.read_bytes() == b"secret"
    assert mode_of(target) == 0o600


def test_a_mode_asked_for_is_the_mode_given(tmp_path: Path) -> None:
    target = tmp_path / "key.pub"
    write_durable_file(target, b"public", overwrite=False, mode=0o644)
    assert mode_of(target) == 0o644


def test_a_new_file_never_replaces_one_that_is_there(tmp_path: Path) -> None:
    target = tmp_path / "tile"
    target.write_bytes(b"first")
    with pytest.raises(FileExistsError):
        write_durable_file(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tile"]  # no temporary left behind


def test_overwriting_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "heads.json"
    target.write_bytes(b"old and longer")
    write_durable_file(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"
    assert mode_of(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heads.json"]

"""The heads file: the newest head per tenant survives racing writers, restores and damage."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.checkpoint import SignedHead, TreeHead, TreeHeadSigner
from idverify.audit.published_heads import (
    HEADS_FILE,
    HeadsFileError,
    PublishedHeads,
    merge_heads_files,
    read_heads_file,
)

SIGNER = TreeHeadSigner(Ed25519PrivateKey.generate())


def signed(size: int, time_ms: int = 1_000) -> SignedHead:
    return SIGNER.sign(TreeHead("idverify/default", size, bytes([size % 256]) * 32, time_ms))


def test_a_head_is_kept_with_mode_0600_and_read_back(tmp_path: Path) -> None:
    heads = PublishedHeads(tmp_path)
    assert heads.record("default", signed(5))
    assert stat.S_IMODE((tmp_path / HEADS_FILE).stat().st_mode) == 0o600
    again = PublishedHeads(tmp_path).get("default")
    assert again is not None
    assert again.signed == signed(5)
    assert again.found_size is None


def test_a_smaller_head_never_replaces_a_larger_one(tmp_path: Path) -> None:
    first, second = PublishedHeads(tmp_path), PublishedHeads(tmp_path)
    assert first.record("default", signed(9))
    assert not second.record("default", signed(7))
    assert second.record("other", signed(1))
    assert sorted(first.read()) == ["default", "other"]
    record = first.get("default")
    assert record is not None
    assert record.signed.head.size == 9


def test_the_first_rollback_found_stays_until_acknowledged(tmp_path: Path) -> None:
    heads = PublishedHeads(tmp_path)
    heads.record("default", signed(9))
    checkpoint = signed(9).checkpoint
    assert heads.mark_rolled_back("default", checkpoint, 4)
    assert not heads.mark_rolled_back("default", checkpoint, 6)
    assert not heads.record("default", signed(12))
    record = heads.get("default")
    assert record is not None
    assert record.found_size == 4
    assert not heads.acknowledge("default", signed(8).checkpoint)
    assert heads.acknowledge("default", checkpoint)
    assert heads.get("default") is None
    assert heads.record("default", signed(5))


def test_a_restore_keeps_the_newest_head_of_each_tenant(tmp_path: Path) -> None:
    old, new = PublishedHeads(tmp_path / "old"), PublishedHeads(tmp_path / "new")
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old.record("default", signed(4))
    old.record("gone", signed(2))
    new.record("default", signed(8))
    merged = merge_heads_files(read_heads_file(old.path), read_heads_file(new.path))
    assert {tenant: record.signed.head.size for tenant, record in merged.items()} == {"default": 8, "gone": 2}


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"format": 2, "tenants": {}}',
        '{"format": 1}',
        '{"format": 1, "tenants": {"default": {"checkpoint": "eA==", "key_id": "k", "signature": ""}}}',
        '{"format": 1, "tenants": {"default": []}}',
    ],
)
def test_a_damaged_file_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / HEADS_FILE).write_text(text)
    with pytest.raises(HeadsFileError):
        PublishedHeads(tmp_path).read()

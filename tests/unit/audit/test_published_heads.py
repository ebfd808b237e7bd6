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


def test_a_witness_keeps_the_newest_head_when_the_data_directory_goes_back(tmp_path: Path) -> None:
    data, witness = tmp_path / "data", tmp_path / "witness"
    data.mkdir()
    witness.mkdir()
    heads = PublishedHeads(data, [witness])
    heads.record("default", signed(4))
    older = (data / HEADS_FILE).read_bytes()
    heads.record("default", signed(9))
    assert read_heads_file(witness / HEADS_FILE)["default"].signed == signed(9)
    # A restore brings back the data directory as it was; the witness is not in the backup.
    (data / HEADS_FILE).write_bytes(older)
    record = PublishedHeads(data, [witness]).get("default")
    assert record is not None
    assert record.signed == signed(9)
    # Without the witness the restored directory would have forgotten the larger head.
    alone = PublishedHeads(data).get("default")
    assert alone is not None
    assert alone.signed == signed(4)


def test_replicas_sharing_a_witness_see_each_others_heads(tmp_path: Path) -> None:
    witness = tmp_path / "witness"
    for directory in ("a", "b", "witness"):
        (tmp_path / directory).mkdir()
    first, second = PublishedHeads(tmp_path / "a", [witness]), PublishedHeads(tmp_path / "b", [witness])
    assert first.record("default", signed(7))
    assert not second.record("default", signed(5))
    record = second.get("default")
    assert record is not None
    assert record.signed.head.size == 7
    # The next write of the second replica brings the first one's head into its own file too.
    assert second.record("other", signed(1))
    assert read_heads_file(second.path)["default"].signed == signed(7)


def test_a_rollback_and_its_acknowledgement_reach_every_file(tmp_path: Path) -> None:
    data, witness = tmp_path / "data", tmp_path / "witness"
    data.mkdir()
    witness.mkdir()
    heads = PublishedHeads(data, [witness])
    heads.record("default", signed(9))
    checkpoint = signed(9).checkpoint
    assert heads.mark_rolled_back("default", checkpoint, 3)
    for path in (data / HEADS_FILE, witness / HEADS_FILE):
        assert read_heads_file(path)["default"].found_size == 3
    assert heads.acknowledge("default", checkpoint)
    # No stale head is left in the witness to raise the same rollback again.
    assert read_heads_file(data / HEADS_FILE) == {}
    assert read_heads_file(witness / HEADS_FILE) == {}
    assert PublishedHeads(data, [witness]).get("default") is None


def test_a_witness_that_cannot_be_written_stops_the_head(tmp_path: Path) -> None:
    data, witness = tmp_path / "data", tmp_path / "witness"
    data.mkdir()
    witness.mkdir()
    heads = PublishedHeads(data, [witness])
    heads.record("default", signed(2))
    (witness / HEADS_FILE).unlink()
    (witness / HEADS_FILE).mkdir()  # replacing a directory fails for every user, root included
    with pytest.raises(IsADirectoryError):
        heads.record("default", signed(5))

"""The export file and its offline verification: every kind of tampering is found at its entry."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import merkle
from idverify.audit.checkpoint import SignedHead, TreeHead, TreeHeadSigner
from idverify.audit.export import (
    ExportFormatError,
    entry_line,
    head_line,
    read_head_line,
    verify_export,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SIZE = 13


def leaf(index: int, note: str = "") -> bytes:
    return (
        f'{{"v":1,"seq":{index},"time_ms":{1_700_000_000_000 + index},"type":"verification.started",'
        f'"verification_id":"","account":"","method":"sms","outcome":"started","reason":"{note}",'
        '"steps":[],"principal":"default/registrar/ab","request_id":"","trace_id":"","attributes":{}}'
    ).encode()


def export(size: int = SIZE, signer: TreeHeadSigner | None = None) -> list[bytes]:
    leaves = [leaf(i) for i in range(size)]
    hashes = [merkle.leaf_hash(x) for x in leaves]
    head = TreeHead("idverify/default", size, merkle.root(hashes), 1_700_000_000_999)
    signed = (signer or TreeHeadSigner(KEY)).sign(head)
    return [head_line(signed)] + [
        entry_line(i, x, h) for i, (x, h) in enumerate(zip(leaves, hashes, strict=True))
    ]


def check(lines: list[bytes]) -> tuple[bool, int | None, str]:
    report = verify_export(lines, KEY.public_key())
    return report.ok, report.first_bad, report.problem


class TestIntactExports:
    @pytest.mark.parametrize("size", [0, 1, 2, 7, 8, SIZE])
    def test_an_untouched_export_verifies(self, size: int) -> None:
        """Every entry in place, the root and the signature verify."""
        report = verify_export(export(size), KEY.public_key())
        assert report.ok
        assert (report.entries, report.tree_size, report.first_bad) == (size, size, None)

    def test_lines_are_json_and_the_entry_is_the_leaf_verbatim(self) -> None:
        """Each line parses as JSON; the entry sits in it byte for byte."""
        lines = export()
        assert json.loads(lines[0])["signed_tree_head"]["tree_size"] == SIZE
        assert json.loads(lines[4])["entry"]["seq"] == 3
        assert leaf(3) in lines[4]

    def test_a_head_line_round_trips(self) -> None:
        """The head read back from its line is the head written."""
        signed = TreeHeadSigner(KEY).sign(TreeHead("idverify/t", 3, merkle.EMPTY_ROOT, 5))
        assert read_head_line(head_line(signed)) == signed


class TestTampering:
    @pytest.mark.parametrize("index", [0, 5, SIZE - 1])
    def test_an_altered_entry_is_found(self, index: int) -> None:
        """Changing one entry's content names that entry."""
        lines = export()
        lines[1 + index] = lines[1 + index].replace(b'"reason":""', b'"reason":"X"')
        assert check(lines)[:2] == (False, index)

    def test_one_flipped_bit_is_found(self) -> None:
        """A single bit flipped inside an entry names it."""
        lines = export()
        line = bytearray(lines[7])
        line[line.index(b"sms") + 1] ^= 0x01
        lines[7] = bytes(line)
        assert check(lines)[:2] == (False, 6)

    @pytest.mark.parametrize("index", [0, 4, SIZE - 1])
    def test_a_removed_entry_is_found(self, index: int) -> None:
        """Deleting a line names the position it left empty."""
        lines = export()
        del lines[1 + index]
        ok, first_bad, problem = check(lines)
        assert (ok, first_bad) == (False, index)
        assert "removed" in problem

    def test_swapped_entries_are_found(self) -> None:
        """Two entries in each other's place name the first of them."""
        lines = export()
        lines[4], lines[5] = lines[5], lines[4]
        assert check(lines)[:2] == (False, 3)

    def test_an_entry_appended_after_the_head_is_found(self) -> None:
        """A line past the signed size names index tree_size."""
        lines = export()
        extra = leaf(SIZE)
        lines.append(entry_line(SIZE, extra, merkle.leaf_hash(extra)))
        ok, first_bad, problem = check(lines)
        assert (ok, first_bad) == (False, SIZE)
        assert "after the signed tree size" in problem

    def test_a_renumbered_insertion_is_found(self) -> None:
        """An inserted entry renumbered to fit, with its own hash, is still caught by the signed hashes."""
        lines = export()
        forged = leaf(2, "forged")
        lines[3] = entry_line(2, forged, merkle.leaf_hash(forged))
        ok, first_bad, _ = check(lines)
        assert not ok
        assert first_bad is None  # its leaf hash was rewritten: detected, position unprovable

    def test_an_entry_that_moved_with_its_line_fixed_up_is_still_detected(self) -> None:
        """Reordering that also rewrites index and seq fails on the root."""
        lines = export()
        a, b = leaf(3).replace(b'"seq":3', b'"seq":4'), leaf(4).replace(b'"seq":4', b'"seq":3')
        lines[4], lines[5] = entry_line(3, b, merkle.leaf_hash(b)), entry_line(4, a, merkle.leaf_hash(a))
        assert not check(lines)[0]

    def test_truncation_of_the_last_entry_is_found(self) -> None:
        """A file that stops early names the first missing index."""
        assert check(export()[:-1])[:2] == (False, SIZE - 1)

    def test_a_garbled_line_is_found(self) -> None:
        """A line that is not an entry line names its position."""
        lines = export()
        lines[3] = b"not json at all"
        assert check(lines)[:2] == (False, 2)


class TestHeadChecks:
    def test_a_head_signed_by_another_key_fails(self) -> None:
        """An export signed by a different key does not verify."""
        other = TreeHeadSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))))
        ok, first_bad, problem = check(export(signer=other))
        assert (ok, first_bad) == (False, None)
        assert "signed by key" in problem

    def test_a_changed_tree_size_breaks_the_signature(self) -> None:
        """Raising the head's size to cover an appended entry breaks the signature."""
        lines = export()
        document = json.loads(lines[0])
        document["signed_tree_head"]["tree_size"] = SIZE + 1
        lines[0] = json.dumps(document).encode()
        ok, _, problem = check(lines)
        assert not ok
        assert "does not verify" in problem

    def test_a_forged_signature_fails(self) -> None:
        """A signature with one bit flipped fails."""
        lines = export()
        signed = read_head_line(lines[0])
        flipped = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
        lines[0] = head_line(dataclasses.replace(signed, signature=flipped))
        assert not check(lines)[0]

    @pytest.mark.parametrize("first", [b"", b"{}", b"[]", b'{"format":"idverify-audit-export","version":2}'])
    def test_a_file_that_is_not_an_export_fails(self, first: bytes) -> None:
        """An empty file or a foreign first line is refused with a reason."""
        ok, _, problem = check([first] if first else [])
        assert not ok
        assert problem

    def test_entries_spanning_lines_cannot_be_exported(self) -> None:
        """entry_line refuses bytes with a newline (entries never have one)."""
        with pytest.raises(ExportFormatError):
            entry_line(0, b'{"a":\n1}', merkle.leaf_hash(b""))

    def test_the_root_is_what_the_signature_covers(self) -> None:
        """A head over another root fails on the entries, with the signature intact."""
        signed = TreeHeadSigner(KEY).sign(TreeHead("idverify/default", SIZE, merkle.leaf_hash(b"x"), 1))
        lines = [head_line(signed), *export()[1:]]
        ok, _, problem = check(lines)
        assert not ok
        assert problem
        assert isinstance(read_head_line(lines[0]), SignedHead)

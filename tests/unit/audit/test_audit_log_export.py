"""The export file and its offline verification: every kind of tampering is found at its entry."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import merkle
from idverify.audit.checkpoint import SignedHead, TreeHead, TreeHeadSigner, public_key_pem
from idverify.audit.export import (
    ExportFormatError,
    entry_line,
    head_line,
    read_head_line,
    verify_export,
)
from idverify.cli.audit import add_audit_commands

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


class TestStatedLeafHashes:
    @pytest.mark.parametrize("index", [0, 6, SIZE - 1])
    def test_a_changed_leaf_hash_with_its_entry_untouched_fails_at_that_entry(self, index: int) -> None:
        """One hex digit of a stated leaf_hash changed names that entry, though the entries verify."""
        lines = export()
        line = lines[1 + index]
        start = line.index(b'"leaf_hash":"') + len(b'"leaf_hash":"')
        digit = b"0" if line[start : start + 1] != b"0" else b"1"
        lines[1 + index] = line[:start] + digit + line[start + 1 :]
        ok, first_bad, problem = check(lines)
        assert (ok, first_bad) == (False, index)
        assert "leaf_hash" in problem

    def test_an_altered_entry_and_leaf_hash_pair_is_named_when_only_one_changed(self) -> None:
        """An entry altered under its old leaf hash is still named as altered, not as a hash problem."""
        lines = export()
        lines[3] = lines[3].replace(b'"reason":""', b'"reason":"Y"')
        ok, first_bad, problem = check(lines)
        assert (ok, first_bad) == (False, 2)
        assert "altered" in problem


class TestMalformedLines:
    @pytest.mark.parametrize(
        "line",
        [
            b'{"index":2,"leaf_hash":"' + b"0" * 64 + b'","entry":[}',
            b'{"index":2,"leaf_hash":"' + b"0" * 64 + b'","entry": [',
            b'{"index":2,"leaf_hash":"' + b"0" * 64 + b'","entry":{"v":1,"seq":2,',
            b'{"index":2,"leaf_hash":"' + b"0" * 64 + b'","entry":{"v":1,"seq":2},"more":1}',
            b'{"index":2,"leaf_hash":"' + b"0" * 64 + b'","entry":{"seq":2}}',
            b"not json at all",
            b"",
        ],
    )
    def test_a_malformed_line_is_reported_as_malformed_at_its_line(self, line: bytes) -> None:
        """A line that is not a well-formed entry line names its position and file line, not a reordering."""
        lines = export()
        lines[3] = line
        ok, first_bad, problem = check(lines)
        assert (ok, first_bad) == (False, 2)
        assert "malformed" in problem
        assert "line 4" in problem
        assert "removed" not in problem
        assert "reordered" not in problem


class TestOrigin:
    def test_the_report_carries_the_origin(self) -> None:
        """The report says which log the export is of."""
        report = verify_export(export(), KEY.public_key())
        assert report.ok
        assert report.origin == "idverify/default"

    def test_an_expected_origin_that_matches_verifies(self) -> None:
        """Naming the log the export is of verifies."""
        assert verify_export(export(), KEY.public_key(), expected_origin="idverify/default").ok

    def test_another_tenants_export_fails(self) -> None:
        """An export of another tenant's log, signed by the same key, fails when the origin is named."""
        report = verify_export(export(), KEY.public_key(), expected_origin="idverify/tenant-b")
        assert not report.ok
        assert report.first_bad is None
        assert "idverify/default" in report.problem
        assert "idverify/tenant-b" in report.problem


def run_verify(*argv: str) -> tuple[int, str]:
    """Runs ``idverify audit verify`` in process; returns the exit code and standard output."""
    parser = argparse.ArgumentParser(prog="idverify")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", "verify", *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = args.handler(args)
    return status, out.getvalue()


class TestVerifyCommand:
    @pytest.fixture
    def files(self, tmp_path: Path) -> tuple[Path, Path]:
        path, key = tmp_path / "audit.jsonl", tmp_path / "log.pub"
        path.write_bytes(b"".join(line.rstrip(b"\n") + b"\n" for line in export()))
        key.write_bytes(public_key_pem(KEY.public_key()))
        return path, key

    def test_ok_prints_the_origin(self, files: tuple[Path, Path]) -> None:
        """A good export prints OK with the log's origin."""
        status, output = run_verify(str(files[0]), "--public-key", str(files[1]))
        assert status == 0
        assert output.startswith("OK: idverify/default:")

    def test_origin_flag_checks_the_log(self, files: tuple[Path, Path]) -> None:
        """--origin naming another log fails with exit 1; naming this one passes."""
        status, output = run_verify(str(files[0]), "--public-key", str(files[1]), "--origin", "idverify/x")
        assert status == 1
        assert output.startswith("FAILED:")
        assert "idverify/x" in output
        ok, _ = run_verify(str(files[0]), "--public-key", str(files[1]), "--origin", "idverify/default")
        assert ok == 0

    def test_a_changed_leaf_hash_fails_naming_the_entry(self, files: tuple[Path, Path]) -> None:
        """The CLI fails on a changed leaf hash and names the entry."""
        lines = files[0].read_bytes().splitlines(keepends=True)
        start = lines[5].index(b'"leaf_hash":"') + len(b'"leaf_hash":"')
        lines[5] = lines[5][:start] + (b"a" if lines[5][start] != ord("a") else b"b") + lines[5][start + 1 :]
        files[0].write_bytes(b"".join(lines))
        status, output = run_verify(str(files[0]), "--public-key", str(files[1]))
        assert status == 1
        assert "first bad entry: 4:" in output


class TestTokenlessCommands:
    @pytest.mark.parametrize("command", [["public-key"], ["export", "--out", "-"]])
    def test_a_log_read_without_a_token_is_one_line_and_exit_2(
        self,
        command: list[str],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """No fallback to the bootstrap token file: that token reads no log."""
        monkeypatch.delenv("IDVERIFY_TOKEN", raising=False)
        (tmp_path / "bootstrap-token").write_text("ivk_default.x.y\n", encoding="utf-8")
        parser = argparse.ArgumentParser()
        add_audit_commands(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["audit", "--data-dir", str(tmp_path), *command])
        assert args.handler(args) == 2
        expected = "token: an auditor's or admin's token is needed (--token or IDVERIFY_TOKEN)"
        assert capsys.readouterr().err.splitlines() == [f"idverify: configuration error: {expected}"]

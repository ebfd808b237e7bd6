"""The export file of a tenant's log, and its offline verification with only a public key.

An export is JSON lines. The first line holds the signed tree head; then one line per entry,
in index order, up to the head's tree size::

    {"format":"idverify-audit-export","version":1,"signed_tree_head":{"origin":...,"tree_size":N,
     "root_hash":"<base64>","timestamp_ms":T,"key_id":...,"signature":"<base64>"}}
    {"index":0,"leaf_hash":"<hex>","entry":{"v":1,"seq":0,...}}

``entry`` is the stored entry byte for byte (the Merkle leaf), so ``jq`` reads it and the
verifier hashes exactly the bytes the server hashed; it is cut out of the line, never
re-encoded. ``leaf_hash`` is the hash the server's tree holds for the entry.

Verification recomputes every leaf hash and the root, checks the Ed25519 signature over
the checkpoint, and (when the caller names one) that the head's origin is the log expected: one
key may sign every tenant's log, so the signature alone does not say whose export it is. It then
names the first bad entry: a malformed line (by its line number), a line whose position, index or
``seq`` disagree (entries removed, reordered or inserted), a line past the signed tree size
(appended after the head), or an entry that does not hash to its stated ``leaf_hash``. Which
side of such a mismatch changed is told by which of the two trees folds to the signed root: the
entries' (the stated hash was altered) or the stated hashes' (the entry was altered, here or in
the server's store). Only someone who also rewrites the leaf hashes to match hides *which* entry
changed; the signature still shows *that* one did. Memory stays O(log n): two compact ranges,
whatever the file's size.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from idverify.audit.checkpoint import (
    CheckpointError,
    SignatureError,
    SignedHead,
    TreeHead,
    verify_signed_head,
)
from idverify.audit.merkle import CompactRange, leaf_hash

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ExportFormatError",
    "VerifyReport",
    "entry_line",
    "head_line",
    "read_head_line",
    "verify_export",
]

EXPORT_FORMAT = "idverify-audit-export"
EXPORT_VERSION = 1
_ENTRY_LINE = re.compile(rb'\{"index":(0|[1-9][0-9]*),"leaf_hash":"([0-9a-f]{64})","entry":(.*)\}')
_ENTRY_SEQ = re.compile(rb'\{"v":1,"seq":(0|[1-9][0-9]*),')
_FIRST_ENTRY_LINE = 2  # the signed head is line 1


class ExportFormatError(ValueError):
    """A line that is not part of an export of this version."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What verifying an export found.

    Attributes:
        ok: the signature verifies and the entries are exactly the signed log.
        tree_size: the signed head's tree size (0 when the head could not be read).
        entries: entry lines read.
        first_bad: the index of the first bad entry, or None (all good, or not locatable).
        problem: what is wrong, in words; empty when ``ok``.
        origin: the log the signed head names (``idverify/<tenant>``); empty when the head
            could not be read or its signature does not verify.
    """

    ok: bool
    tree_size: int
    entries: int
    first_bad: int | None = None
    problem: str = ""
    origin: str = ""


def head_line(signed: SignedHead) -> bytes:
    """The first line of an export."""
    document = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "signed_tree_head": {
            "origin": signed.head.origin,
            "tree_size": signed.head.size,
            "root_hash": base64.b64encode(signed.head.root_hash).decode("ascii"),
            "timestamp_ms": signed.head.timestamp_ms,
            "key_id": signed.key_id,
            "signature": base64.b64encode(signed.signature).decode("ascii"),
        },
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def entry_line(index: int, leaf: bytes, stored_leaf_hash: bytes) -> bytes:
    """One entry's line.

    Raises:
        ExportFormatError: the leaf spans lines (entries never do) or the hash is not 32 bytes.
    """
    if b"\n" in leaf or b"\r" in leaf:
        raise ExportFormatError(f"entry {index} spans several lines")
    if len(stored_leaf_hash) != len(leaf_hash(b"")):
        raise ExportFormatError(f"entry {index} has no stored leaf hash")
    return b'{"index":%d,"leaf_hash":"%s","entry":%s}\n' % (index, stored_leaf_hash.hex().encode(), leaf)


def read_head_line(line: bytes) -> SignedHead:
    """The signed head of an export's first line.

    Raises:
        ExportFormatError: the line is not an export head of this version.
    """
    try:
        document = json.loads(line)
    except ValueError:
        document = None
    if not isinstance(document, dict) or (document.get("format"), document.get("version")) != (
        EXPORT_FORMAT,
        EXPORT_VERSION,
    ):
        raise ExportFormatError(f"not an {EXPORT_FORMAT} version {EXPORT_VERSION} file")
    try:
        head = document["signed_tree_head"]
        return SignedHead(
            head=TreeHead(
                origin=head["origin"],
                size=head["tree_size"],
                root_hash=base64.b64decode(head["root_hash"], validate=True),
                timestamp_ms=head["timestamp_ms"],
            ),
            key_id=head["key_id"],
            signature=base64.b64decode(head["signature"], validate=True),
        )
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, CheckpointError) as error:
        raise ExportFormatError(
            f"the first line is not a signed tree head ({type(error).__name__})"
        ) from None


def verify_export(
    lines: Iterable[bytes], public_key: Ed25519PublicKey, *, expected_origin: str | None = None
) -> VerifyReport:
    """Checks an export against the log's public key.

    Args:
        lines: the file's lines (with or without their newlines), head first.
        public_key: the log's key, obtained apart from the file.
        expected_origin: the log the export must be of (``idverify/<tenant>``); None accepts
            any log the key signs (the report's ``origin`` says which).

    Returns:
        The report; ``ok`` only when the signature verifies, the origin is the one expected,
        and every entry is in place.
    """
    stream = iter(lines)
    first = next(stream, None)
    if first is None:
        return VerifyReport(ok=False, tree_size=0, entries=0, problem="the file is empty")
    try:
        signed = read_head_line(first)
        verify_signed_head(signed, public_key)
    except (ExportFormatError, SignatureError) as error:
        return VerifyReport(ok=False, tree_size=0, entries=0, problem=str(error))
    size, origin = signed.head.size, signed.head.origin
    if expected_origin is not None and origin != expected_origin:
        return VerifyReport(
            ok=False,
            tree_size=size,
            entries=0,
            problem=f"the export is of log {origin!r}, not {expected_origin!r}",
            origin=origin,
        )
    scan = _Scan(size)
    for line in stream:
        if not scan.add(line.rstrip(b"\r\n")):
            break
    return dataclasses.replace(scan.report(signed.head.root_hash), origin=origin)


def _malformed(position: int, why: str) -> tuple[int, str]:
    """The finding for a malformed line: the file's line number (the head is line 1) and why."""
    return position, f"line {position + _FIRST_ENTRY_LINE} is malformed: {why}"


def _entry_json_problem(entry: bytes) -> str | None:
    """Why an entry is not a JSON object, or None when it is one.

    Parsed only for a line already found wrong (a JSON parse costs five times the leaf hash):
    a malformed entry that hashes to a signed leaf cannot exist, since the server stores
    canonical JSON, so the root check covers the lines never parsed.
    """
    try:
        document = json.loads(entry)
    except ValueError:
        return "its entry is not JSON"
    if not isinstance(document, dict):
        return "its entry is not a JSON object"
    return None


class _Scan:
    """Folds entry lines into two trees: of the entries as found, and of their stated leaf hashes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self.computed = CompactRange()
        self.stated = CompactRange()
        self.misplaced: tuple[int, str] | None = None
        self.first_mismatch: int | None = None

    def add(self, line: bytes) -> bool:
        """Takes the next line; False once the first misplaced entry is found (nothing after it matters)."""
        position = self.count
        self.count += 1
        if position >= self.size:
            self.misplaced = (position, f"entry {position} comes after the signed tree size {self.size}")
            return False
        matched = _ENTRY_LINE.fullmatch(line)
        if matched is None:
            self.misplaced = _malformed(position, "not an export entry line")
            return False
        index, stated, entry = int(matched[1]), bytes.fromhex(matched[2].decode()), matched[3]
        seq = _ENTRY_SEQ.match(entry)
        if index != position or seq is None or int(seq[1]) != position:
            self.misplaced = self._out_of_place(position, index, seq, entry)
            return False
        computed = leaf_hash(entry)
        if computed != stated and self.first_mismatch is None:
            malformed = _entry_json_problem(entry)
            if malformed is not None:
                self.misplaced = _malformed(position, malformed)
                return False
            self.first_mismatch = position
        self.computed = self.computed.append(computed)[0]
        self.stated = self.stated.append(stated)[0]
        return True

    @staticmethod
    def _out_of_place(
        position: int, index: int, seq: re.Match[bytes] | None, entry: bytes
    ) -> tuple[int, str]:
        """The finding for a line whose index or seq is not its position, or that has no seq."""
        malformed = _entry_json_problem(entry)
        if malformed is not None:
            return _malformed(position, malformed)
        if seq is None:
            return _malformed(position, 'its entry does not begin {"v":1,"seq":<n>,')
        found = index if index != position else int(seq[1])
        return (
            position,
            f"position {position} holds entry {found}: entries were removed, reordered or inserted",
        )

    def report(self, root: bytes) -> VerifyReport:
        if self.misplaced is None and self.count < self.size:
            self.misplaced = (
                self.count,
                f"the file ends after {self.count} of {self.size} entries: entries were removed",
            )
        entries_signed = self.computed.root() == root
        if self.misplaced is None and self.first_mismatch is None and entries_signed:
            return VerifyReport(ok=True, tree_size=self.size, entries=self.count)
        candidates: list[tuple[int, str]] = []
        if self.misplaced is not None:
            candidates.append(self.misplaced)
        if self.first_mismatch is not None:
            candidates.append((self.first_mismatch, self._mismatch(self.first_mismatch, root)))
        if candidates:
            index, problem = min(candidates)
            return VerifyReport(
                ok=False, tree_size=self.size, entries=self.count, first_bad=index, problem=problem
            )
        return VerifyReport(
            ok=False,
            tree_size=self.size,
            entries=self.count,
            problem="the entries do not fold to the signed root and their leaf hashes were altered "
            "too: which entry changed cannot be told",
        )

    def _mismatch(self, index: int, root: bytes) -> str:
        """What an entry that does not hash to its stated leaf_hash means, by which tree is signed."""
        complete = self.misplaced is None and self.computed.size == self.size
        if complete and self.computed.root() == root:
            return f"the leaf_hash stated for entry {index} was altered: the entries are the signed log"
        if self.stated.size == self.size and self.stated.root() == root:
            return f"entry {index} was altered: it does not hash to its signed leaf"
        return f"entry {index} does not hash to its stated leaf_hash"

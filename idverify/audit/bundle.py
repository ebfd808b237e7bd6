"""Offline check of a person's data export (``ExportAccountDataResponse`` as protobuf JSON).

What is checked, with the log's public key only: the signed head's signature, and for every
audit entry that its bytes are an entry of the account (its index, one of the bundle's audit
pseudonyms) and that its inclusion proof leads from the entry to the signed root. What the
bundle says beside its entries (account view, consents) is the server's word, not proven here.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import json_format

from idverify.audit.checkpoint import (
    CheckpointError,
    SignatureError,
    SignedHead,
    TreeHead,
    verify_signed_head,
)
from idverify.audit.events import EntryFormatError, parse_entry
from idverify.audit.merkle import ProofError, leaf_hash, verify_inclusion
from idverify.v1 import account_pb2, audit_pb2

__all__ = ["BundleFormatError", "BundleReport", "verify_bundle"]

_NANOS_PER_MS = 1_000_000


class BundleFormatError(ValueError):
    """The file is not an account data bundle."""


@dataclass(frozen=True, slots=True)
class BundleReport:
    """The outcome of a check: ok, or the first problem found (and the entry it is in, if any)."""

    ok: bool
    origin: str
    tree_size: int
    entries: int
    first_bad: int | None = None
    problem: str = ""


def verify_bundle(
    document: bytes, public_key: Ed25519PublicKey, *, expected_origin: str | None = None
) -> BundleReport:
    """Checks a bundle's head signature and every entry's inclusion proof.

    Raises:
        BundleFormatError: the document is not an ``ExportAccountDataResponse`` in JSON, or has no head.
    """
    bundle = account_pb2.ExportAccountDataResponse()
    try:
        json_format.Parse(document, bundle)
    except json_format.ParseError as error:
        raise BundleFormatError(f"not an account data bundle: {error}") from None
    if not bundle.HasField("head"):
        raise BundleFormatError("the bundle has no signed tree head")
    message = bundle.head
    try:
        head = _verified_head(message, public_key, expected_origin)
        pseudonyms = set(bundle.audit_pseudonyms)
        for entry in bundle.audit_entries:
            _check_entry(entry, head, pseudonyms)
    except _Bad as bad:
        return BundleReport(
            ok=False,
            origin=message.origin,
            tree_size=message.tree_size,
            entries=len(bundle.audit_entries),
            first_bad=bad.index,
            problem=str(bad),
        )
    return BundleReport(ok=True, origin=head.origin, tree_size=head.size, entries=len(bundle.audit_entries))


class _Bad(ValueError):
    """One problem found, in entry ``index`` (None: in the head)."""

    def __init__(self, problem: str, index: int | None = None) -> None:
        super().__init__(problem)
        self.index = index


def _verified_head(
    message: audit_pb2.SignedTreeHead, public_key: Ed25519PublicKey, expected_origin: str | None
) -> TreeHead:
    stamp = message.timestamp
    if stamp.nanos % _NANOS_PER_MS:
        raise _Bad("the head's timestamp is not a whole millisecond: it is not the one signed")
    try:
        head = TreeHead(
            message.origin,
            message.tree_size,
            message.root_hash,
            stamp.seconds * 1000 + stamp.nanos // _NANOS_PER_MS,
        )
        verify_signed_head(SignedHead(head, message.key_id, message.signature), public_key)
    except (CheckpointError, SignatureError) as error:
        raise _Bad(f"the signed head does not verify: {error}") from None
    if expected_origin is not None and head.origin != expected_origin:
        raise _Bad(f"the head is of log {head.origin!r}, not {expected_origin!r}")
    return head


def _check_entry(entry: account_pb2.ProvenAuditEntry, head: TreeHead, pseudonyms: set[str]) -> None:
    try:
        event = parse_entry(entry.leaf)
    except EntryFormatError as error:
        raise _Bad(f"entry {entry.index} is not an audit entry: {error}", entry.index) from None
    if event.index != entry.index:
        raise _Bad(f"entry {entry.index} says it is entry {event.index}", entry.index)
    if event.account not in pseudonyms:
        raise _Bad(f"entry {entry.index} is not about this account", entry.index)
    try:
        verify_inclusion(
            leaf_hash(entry.leaf), entry.index, head.size, list(entry.inclusion_proof), head.root_hash
        )
    except ProofError as error:
        raise _Bad(f"entry {entry.index}: {error}", entry.index) from None

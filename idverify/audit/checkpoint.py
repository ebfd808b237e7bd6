"""Signed tree heads for the audit log: canonical checkpoint bytes, Ed25519 signing and keys.

The signature covers the checkpoint text exactly, in the spirit of the transparency-dev checkpoint format.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from idverify.audit.merkle import HASH_SIZE
from idverify.security.durable_files import write_durable_file

__all__ = [
    "CheckpointError",
    "KeyFormatError",
    "SignatureError",
    "SignedHead",
    "TreeHead",
    "TreeHeadSigner",
    "checkpoint_bytes",
    "generate_signing_key_file",
    "key_id_for",
    "load_private_key",
    "load_public_key",
    "parse_checkpoint",
    "private_key_pem",
    "public_key_pem",
    "read_private_key_file",
    "read_public_key_file",
    "verify_signed_head",
    "write_private_key_file",
    "write_public_key_file",
]

_MAX_SIZE = 2**64 - 1  # The proto carries tree sizes as uint64.
_MAX_TIMESTAMP_MS = 2**63 - 1
# Python's int() also takes signs, spaces, underscores and non-ASCII digits; a canonical
# decimal is none of those and has no leading zero.
_DECIMAL = re.compile(rb"0|[1-9][0-9]*")
_CHECKPOINT_LINES = 4
_KEY_ID_BYTES = 8
_PRIVATE_KEY_MODE = 0o600
_PUBLIC_KEY_MODE = 0o644


class CheckpointError(ValueError):
    """Bytes that are not a canonical checkpoint, or a tree head that cannot be written as one."""


class SignatureError(ValueError):
    """A signed tree head does not verify under the given public key."""


class KeyFormatError(ValueError):
    """A PEM document that is not an Ed25519 key of the expected kind."""


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The state of one tenant's log at one moment: what a checkpoint commits to.

    Attributes:
        origin: names the log (``idverify/<tenant>``); one line of printable text.
        size: the number of entries, ``0 <= size < 2**64``.
        root_hash: the RFC 6962 root of those entries, ``HASH_SIZE`` bytes.
        timestamp_ms: when the head was produced, in milliseconds since the Unix epoch.
    """

    origin: str
    size: int
    root_hash: bytes
    timestamp_ms: int

    def __post_init__(self) -> None:
        """Refuse a head that has no single canonical checkpoint text.

        Raises:
            CheckpointError: the origin is empty or not printable on one line, or a number or
                the root hash is out of range.
        """
        # A newline in the origin would let it forge the lines that follow it.
        if not self.origin or not self.origin.isprintable():
            raise CheckpointError("origin must be a non-empty line of printable text")
        if not 0 <= self.size <= _MAX_SIZE:
            raise CheckpointError(f"tree size {self.size} is out of range")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"root hash is {len(self.root_hash)} bytes, want {HASH_SIZE}")
        if not 0 <= self.timestamp_ms <= _MAX_TIMESTAMP_MS:
            raise CheckpointError(f"timestamp {self.timestamp_ms} is out of range")


def checkpoint_bytes(head: TreeHead) -> bytes:
    """Return the canonical checkpoint text of a tree head, the bytes a signature covers.

    Four lines, each ending in a newline: the origin, the size in decimal, the root hash in
    standard base64, and the timestamp in milliseconds in decimal. The first three are the
    transparency-dev checkpoint body; the timestamp is its first extension line.
    """
    root_b64 = base64.b64encode(head.root_hash).decode("ascii")
    return f"{head.origin}\n{head.size}\n{root_b64}\n{head.timestamp_ms}\n".encode()


def parse_checkpoint(data: bytes) -> TreeHead:
    """Read a tree head back from its checkpoint text.

    Only the exact output of ``checkpoint_bytes`` is accepted, so a signature checked over
    ``data`` is a signature over the head returned.

    Raises:
        CheckpointError: ``data`` is not a canonical checkpoint.
    """
    lines = data.split(b"\n")
    # Splitting after the last newline leaves one empty piece.
    if len(lines) != _CHECKPOINT_LINES + 1 or lines[-1]:
        raise CheckpointError(f"a checkpoint is {_CHECKPOINT_LINES} lines, each ending in a newline")
    origin_line, size_line, root_line, timestamp_line = lines[:_CHECKPOINT_LINES]
    if not _DECIMAL.fullmatch(size_line) or not _DECIMAL.fullmatch(timestamp_line):
        raise CheckpointError("size and timestamp must be canonical decimals")
    try:
        origin = origin_line.decode("utf-8")
        root_hash = base64.b64decode(root_line, validate=True)
    except (UnicodeDecodeError, binascii.Error) as error:
        raise CheckpointError("origin must be UTF-8 and the root hash base64") from error
    head = TreeHead(origin, int(size_line), root_hash, int(timestamp_line))
    if checkpoint_bytes(head) != data:
        # Catches non-canonical base64 (stray padding bits) and the like.
        raise CheckpointError("checkpoint is not in canonical form")
    return head


@dataclass(frozen=True, slots=True)
class SignedHead:
    """A tree head with the Ed25519 signature over its checkpoint bytes.

    Attributes:
        head: the tree head signed.
        key_id: ``key_id_for`` of the public key that verifies it.
        signature: the 64-byte Ed25519 signature over ``checkpoint``.
    """

    head: TreeHead
    key_id: str
    signature: bytes

    @property
    def checkpoint(self) -> bytes:
        """The canonical bytes the signature covers."""
        return checkpoint_bytes(self.head)


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """Return the short name of a signing key: hex of the first 8 bytes of SHA-256(raw key)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:_KEY_ID_BYTES].hex()


class TreeHeadSigner:
    """Signs tree heads with one Ed25519 key.

    Args:
        private_key: the log's signing key.
        key_id: the key's id; derived with ``key_id_for`` when omitted.

    Raises:
        ValueError: ``key_id`` is given and is not the id of this key, so no verifier would
            find the key by it.
    """

    __slots__ = ("_key_id", "_private_key")

    def __init__(self, private_key: Ed25519PrivateKey, key_id: str | None = None) -> None:
        derived = key_id_for(private_key.public_key())
        if key_id is not None and key_id != derived:
            raise ValueError(f"key id {key_id!r} does not belong to this key ({derived})")
        self._private_key = private_key
        self._key_id = derived

    def __repr__(self) -> str:
        # Never the key itself (STYLE 8).
        return f"TreeHeadSigner(key_id={self._key_id!r})"

    @property
    def key_id(self) -> str:
        """The id of the signing key."""
        return self._key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The public half of the signing key, to publish to verifiers."""
        return self._private_key.public_key()

    def sign(self, head: TreeHead) -> SignedHead:
        """Sign the checkpoint bytes of ``head``."""
        signature = self._private_key.sign(checkpoint_bytes(head))
        return SignedHead(head=head, key_id=self._key_id, signature=signature)


def verify_signed_head(signed: SignedHead, public_key: Ed25519PublicKey) -> None:
    """Check a signed tree head against a trusted public key.

    Args:
        signed: the signed head, as received.
        public_key: the log's public key, from configuration, never from the message.

    Raises:
        SignatureError: the key id names another key, or the signature does not verify over
            the head's checkpoint bytes.
    """
    expected = key_id_for(public_key)
    if signed.key_id != expected:
        raise SignatureError(f"head is signed by key {signed.key_id!r}, not {expected!r}")
    try:
        public_key.verify(signed.signature, signed.checkpoint)
    except InvalidSignature as error:
        raise SignatureError(f"signature over the head of size {signed.head.size} does not verify") from error


# ---------------------------------------------------------------------------------------------
# Keys.


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    """Return the key as unencrypted PKCS#8 PEM; the caller must keep it secret."""
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    """Return the key as SubjectPublicKeyInfo PEM."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """Read an unencrypted PKCS#8 PEM Ed25519 private key.

    Raises:
        KeyFormatError: the PEM is not readable, is encrypted, or holds another kind of key.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        # The library's message may quote the input; say only what went wrong.
        raise KeyFormatError("not an unencrypted PEM private key") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError(f"private key is {type(key).__name__}, want Ed25519")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """Read a SubjectPublicKeyInfo PEM Ed25519 public key.

    Raises:
        KeyFormatError: the PEM is not readable or holds another kind of key.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise KeyFormatError("not a PEM public key") from error
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError(f"public key is {type(key).__name__}, want Ed25519")
    return key


def read_private_key_file(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read a private signing key from a PEM file.

    Raises:
        OSError: the file cannot be read.
        KeyFormatError: the file does not hold an unencrypted Ed25519 private key.
    """
    return load_private_key(Path(path).read_bytes())


def read_public_key_file(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Read a public verification key from a PEM file.

    Raises:
        OSError: the file cannot be read.
        KeyFormatError: the file does not hold an Ed25519 public key.
    """
    return load_public_key(Path(path).read_bytes())


def write_private_key_file(private_key: Ed25519PrivateKey, path: str | os.PathLike[str]) -> None:
    """Write a private key as PKCS#8 PEM to a new file readable by its owner only (0600).

    The file appears complete or not at all, and an existing file is never replaced: losing a
    log's signing key is not something a typo should be able to do.

    Raises:
        FileExistsError: ``path`` already exists.
        OSError: the file cannot be written.
    """
    write_durable_file(Path(path), private_key_pem(private_key), overwrite=False, mode=_PRIVATE_KEY_MODE)


def write_public_key_file(public_key: Ed25519PublicKey, path: str | os.PathLike[str]) -> None:
    """Write a public key as SubjectPublicKeyInfo PEM to a new file (0644).

    Raises:
        FileExistsError: ``path`` already exists.
        OSError: the file cannot be written.
    """
    write_durable_file(Path(path), public_key_pem(public_key), overwrite=False, mode=_PUBLIC_KEY_MODE)


def generate_signing_key_file(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Generate a new Ed25519 signing key and write it to a new 0600 PEM file.

    Returns:
        The new key, so the caller can publish its public half and ``key_id_for`` it.

    Raises:
        FileExistsError: ``path`` already exists; the key there is left alone.
        OSError: the file cannot be written.
    """
    private_key = Ed25519PrivateKey.generate()
    write_private_key_file(private_key, path)
    return private_key

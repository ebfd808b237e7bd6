"""Tests for idverify.audit.checkpoint: canonical bytes, signing, verification and key files."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.checkpoint import (
    CheckpointError,
    KeyFormatError,
    SignatureError,
    SignedHead,
    TreeHead,
    TreeHeadSigner,
    checkpoint_bytes,
    generate_signing_key_file,
    key_id_for,
    load_private_key,
    load_public_key,
    parse_checkpoint,
    private_key_pem,
    public_key_pem,
    read_private_key_file,
    read_public_key_file,
    verify_signed_head,
    write_private_key_file,
    write_public_key_file,
)

# The root of the 8-entry RFC 6962 reference tree (transparency-dev/merkle testonly/constants.go).
ROOT8 = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
# RFC 8032 section 7.1, TEST 1: a fixed key, so key ids and signatures are reproducible.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
HEAD = TreeHead(origin="idverify/tenant-a", size=8, root_hash=ROOT8, timestamp_ms=1_763_884_800_123)


@pytest.fixture
def private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)


@pytest.fixture
def signer(private_key: Ed25519PrivateKey) -> TreeHeadSigner:
    return TreeHeadSigner(private_key)


class TestCheckpointBytes:
    def test_format(self) -> None:
        """Origin, decimal size, base64 root and decimal timestamp, one per line."""
        expected = b"idverify/tenant-a\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n1763884800123\n"
        assert checkpoint_bytes(HEAD) == expected

    def test_round_trip(self) -> None:
        """Parsing the checkpoint bytes gives the head back."""
        assert parse_checkpoint(checkpoint_bytes(HEAD)) == HEAD

    def test_empty_tree(self) -> None:
        """The empty tree's head is a checkpoint like any other."""
        head = TreeHead("idverify/t", 0, hashlib.sha256(b"").digest(), 0)
        assert checkpoint_bytes(head) == b"idverify/t\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n0\n"
        assert parse_checkpoint(checkpoint_bytes(head)) == head

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"idverify/tenant-a\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n1763884800123",
            b"idverify/tenant-a\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n1763884800123\n\n",
            b"idverify/tenant-a\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n1763884800123\nextra\n",
            b"idverify/tenant-a\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n1763884800123\n",
            b"idverify/tenant-a\n+8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n1763884800123\n",
            b"idverify/tenant-a\n 8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n1763884800123\n",
            b"idverify/tenant-a\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n-1\n",
            b"idverify/tenant-a\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg\n1763884800123\n",
            b"idverify/tenant-a\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=\n1763884800123\n",
            b"idverify/tenant-a\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQw==\n1763884800123\n",
            b"\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n1763884800123\n",
            b"\xff\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n1763884800123\n",
            b"idverify/tenant-a\r\n8\r\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\r\n1763884800123\r\n",
            b"idverify/tenant-a\n18446744073709551616\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n1\n",
        ],
        ids=[
            "empty",
            "no final newline",
            "blank extra line",
            "extension line",
            "leading zero",
            "plus sign",
            "space",
            "negative timestamp",
            "missing padding",
            "non-canonical base64 bits",
            "31-byte root",
            "empty origin",
            "origin not UTF-8",
            "CRLF",
            "size past uint64",
        ],
    )
    def test_non_canonical_input_is_refused(self, data: bytes) -> None:
        """Only the exact bytes checkpoint_bytes writes are accepted."""
        with pytest.raises(CheckpointError):
            parse_checkpoint(data)

    @pytest.mark.parametrize(
        "changes",
        [
            {"origin": ""},
            {"origin": "idverify/a\n9"},
            {"origin": "tab\there"},
            {"size": -1},
            {"size": 2**64},
            {"root_hash": ROOT8[:31]},
            {"root_hash": ROOT8 + b"\x00"},
            {"timestamp_ms": -1},
            {"timestamp_ms": 2**63},
        ],
        ids=repr,
    )
    def test_head_without_a_canonical_checkpoint_is_refused(self, changes: dict[str, Any]) -> None:
        """A head that could smuggle lines or overflow a field is refused when built."""
        with pytest.raises(CheckpointError):
            dataclasses.replace(HEAD, **changes)


class TestSigning:
    def test_sign_and_verify(self, signer: TreeHeadSigner, private_key: Ed25519PrivateKey) -> None:
        """A signed head verifies under the signer's public key."""
        signed = signer.sign(HEAD)
        assert signed.head == HEAD
        assert signed.key_id == key_id_for(private_key.public_key())
        assert len(signed.signature) == 64
        verify_signed_head(signed, private_key.public_key())

    def test_signature_covers_the_checkpoint_bytes(self, signer: TreeHeadSigner) -> None:
        """The signature is Ed25519 over exactly the checkpoint bytes, nothing else."""
        signed = signer.sign(HEAD)
        assert signed.checkpoint == checkpoint_bytes(HEAD)
        signer.public_key.verify(signed.signature, checkpoint_bytes(HEAD))

    def test_signature_is_deterministic(self, signer: TreeHeadSigner) -> None:
        """Ed25519 signs the same head the same way (RFC 8032), so heads can be re-served."""
        assert signer.sign(HEAD) == signer.sign(HEAD)

    @pytest.mark.parametrize(
        "changes",
        [
            {"size": 9},
            {"size": 7},
            {"root_hash": bytes([ROOT8[0] ^ 1]) + ROOT8[1:]},
            {"root_hash": hashlib.sha256(b"").digest()},
            {"timestamp_ms": HEAD.timestamp_ms + 1},
            {"origin": "idverify/tenant-b"},
        ],
        ids=repr,
    )
    def test_tampered_head_fails(self, signer: TreeHeadSigner, changes: dict[str, Any]) -> None:
        """Changing any field of a signed head breaks its signature."""
        signed = signer.sign(HEAD)
        tampered = dataclasses.replace(signed, head=dataclasses.replace(HEAD, **changes))
        with pytest.raises(SignatureError, match="does not verify"):
            verify_signed_head(tampered, signer.public_key)

    @pytest.mark.parametrize(
        "signature",
        [b"", b"\x00" * 64, b"\x00" * 63, b"\x00" * 65],
        ids=["empty", "zeros", "short", "long"],
    )
    def test_malformed_signature_fails(self, signer: TreeHeadSigner, signature: bytes) -> None:
        """A signature of the wrong length or value is refused, not an exception of another kind."""
        signed = dataclasses.replace(signer.sign(HEAD), signature=signature)
        with pytest.raises(SignatureError):
            verify_signed_head(signed, signer.public_key)

    def test_flipped_signature_bit_fails(self, signer: TreeHeadSigner) -> None:
        """One flipped bit anywhere in the signature breaks it."""
        signed = signer.sign(HEAD)
        for position in range(len(signed.signature)):
            broken = bytearray(signed.signature)
            broken[position] ^= 0x10
            with pytest.raises(SignatureError):
                verify_signed_head(dataclasses.replace(signed, signature=bytes(broken)), signer.public_key)

    def test_wrong_key_fails(self, signer: TreeHeadSigner) -> None:
        """A head signed by another key does not verify, and the key id says why."""
        other = Ed25519PrivateKey.generate().public_key()
        with pytest.raises(SignatureError, match="signed by key"):
            verify_signed_head(signer.sign(HEAD), other)

    def test_wrong_key_under_the_right_key_id_fails(self, signer: TreeHeadSigner) -> None:
        """Relabelling another key's signature with the trusted key id does not help."""
        forged = TreeHeadSigner(Ed25519PrivateKey.generate()).sign(HEAD)
        relabelled = SignedHead(head=forged.head, key_id=signer.key_id, signature=forged.signature)
        with pytest.raises(SignatureError, match="does not verify"):
            verify_signed_head(relabelled, signer.public_key)


class TestKeyId:
    def test_rfc8032_key(self, private_key: Ed25519PrivateKey) -> None:
        """The key id is the hex of the first 8 bytes of SHA-256 over the raw public key."""
        public_key = private_key.public_key()
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert raw == RFC8032_PUBLIC
        assert key_id_for(public_key) == hashlib.sha256(RFC8032_PUBLIC).hexdigest()[:16]

    def test_signer_derives_or_checks_the_key_id(self, private_key: Ed25519PrivateKey) -> None:
        """A signer takes its key's id, and refuses an id that belongs to another key."""
        derived = key_id_for(private_key.public_key())
        assert TreeHeadSigner(private_key).key_id == derived
        assert TreeHeadSigner(private_key, derived).key_id == derived
        with pytest.raises(ValueError, match="does not belong"):
            TreeHeadSigner(private_key, "0011223344556677")

    def test_signer_repr_hides_the_key(self, private_key: Ed25519PrivateKey) -> None:
        """The signer's repr names the key id only."""
        text = repr(TreeHeadSigner(private_key))
        assert text == f"TreeHeadSigner(key_id={key_id_for(private_key.public_key())!r})"
        assert RFC8032_SECRET.hex() not in text


class TestKeyPem:
    def test_private_key_round_trip(self, private_key: Ed25519PrivateKey) -> None:
        """A private key survives PKCS#8 PEM, which is what is written."""
        pem = private_key_pem(private_key)
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
        loaded = load_private_key(pem)
        raw = serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        assert loaded.private_bytes(*raw) == RFC8032_SECRET

    def test_public_key_round_trip(self, private_key: Ed25519PrivateKey) -> None:
        """A public key survives SubjectPublicKeyInfo PEM, and verifies what the private key signed."""
        pem = public_key_pem(private_key.public_key())
        assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
        loaded = load_public_key(pem)
        verify_signed_head(TreeHeadSigner(private_key).sign(HEAD), loaded)

    def test_other_key_types_are_refused(self) -> None:
        """An EC key is not an Ed25519 key, private or public."""
        ec_key = generate_private_key(SECP256R1())
        private = ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public = ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(KeyFormatError, match="want Ed25519"):
            load_private_key(private)
        with pytest.raises(KeyFormatError, match="want Ed25519"):
            load_public_key(public)

    def test_garbage_and_encrypted_keys_are_refused(self, private_key: Ed25519PrivateKey) -> None:
        """Bytes that are not a PEM key, or a passphrase-protected one, are refused plainly."""
        encrypted = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
        for pem in (b"", b"not a key", encrypted, public_key_pem(private_key.public_key())):
            with pytest.raises(KeyFormatError):
                load_private_key(pem)
        for pem in (b"", b"not a key", private_key_pem(private_key)):
            with pytest.raises(KeyFormatError):
                load_public_key(pem)


class TestKeyFiles:
    def test_generated_key_file_is_owner_only(self, tmp_path: Path) -> None:
        """A generated key lands in a 0600 file that reads back as the same key."""
        path = tmp_path / "signing.pem"
        key = generate_signing_key_file(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert key_id_for(read_private_key_file(path).public_key()) == key_id_for(key.public_key())

    def test_private_key_file_is_0600_whatever_the_umask(
        self, tmp_path: Path, private_key: Ed25519PrivateKey
    ) -> None:
        """Even with a permissive umask the private key file is readable by its owner only."""
        previous = os.umask(0)
        try:
            write_private_key_file(private_key, tmp_path / "key.pem")
        finally:
            os.umask(previous)
        assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600

    def test_existing_key_is_never_replaced(self, tmp_path: Path) -> None:
        """Generating over an existing file fails and leaves the old key and no stray files."""
        path = tmp_path / "signing.pem"
        original = generate_signing_key_file(path)
        before = path.read_bytes()
        with pytest.raises(FileExistsError):
            generate_signing_key_file(path)
        assert path.read_bytes() == before
        assert key_id_for(read_private_key_file(path).public_key()) == key_id_for(original.public_key())
        assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.pem"]

    def test_public_key_file_round_trip(self, tmp_path: Path, private_key: Ed25519PrivateKey) -> None:
        """A public key file is world-readable PEM that reads back as the same key."""
        path = tmp_path / "signing.pub.pem"
        write_public_key_file(private_key.public_key(), path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        assert key_id_for(read_public_key_file(path)) == key_id_for(private_key.public_key())

    def test_missing_directory_is_an_os_error(self, tmp_path: Path) -> None:
        """Writing into a directory that does not exist fails with the OS error."""
        with pytest.raises(FileNotFoundError):
            generate_signing_key_file(tmp_path / "absent" / "signing.pem")

    def test_file_holding_something_else_is_refused(self, tmp_path: Path) -> None:
        """A key file that holds no key is a format error, not a crash."""
        path = tmp_path / "signing.pem"
        path.write_bytes(base64.b64encode(b"nonsense"))
        with pytest.raises(KeyFormatError):
            read_private_key_file(path)

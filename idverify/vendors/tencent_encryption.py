# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""FaceID's field encryption (the ``Encryption`` parameter): an envelope around name, ID and card.

As FaceID's "sensitive data encryption" guide describes it (method two, without the SDK:
https://cloud.tencent.com/document/product/1007/47180) and Tencent's reference implementation
does it: a fresh 32-character key per request encrypts each listed field with AES-256-CBC
(PKCS#7 padding, one random 16-byte IV for the request); the field's value becomes the
Base64 ciphertext; the key itself travels encrypted with RSA (PKCS#1 v1.5) under the public
key downloaded from the FaceID console, as ``CiphertextBlob``. Only the holder of Tencent's
private key can read the fields, whatever terminates TLS on the way.
"""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives.asymmetric import padding as asymmetric_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from idverify.domain.errors import ConfigError

__all__ = ["ALGORITHM", "EncryptedFields", "FieldEncryptor", "decrypt_fields"]

ALGORITHM: Final = "AES-256-CBC"
_KEY_CHARS: Final = string.ascii_letters + string.digits
_KEY_LENGTH: Final = 32
_IV_BYTES: Final = 16
_BLOCK_BITS: Final = 128


@dataclass(frozen=True, slots=True)
class EncryptedFields:
    """The request fields with the listed ones replaced by ciphertext, and the envelope.

    Attributes:
        fields: every field; the encrypted ones hold Base64 ciphertext.
        encryption: the ``Encryption`` object (EncryptList, CiphertextBlob, Iv, Algorithm).
    """

    fields: Mapping[str, object]
    encryption: Mapping[str, object]

    def __repr__(self) -> str:
        return "EncryptedFields(<hidden>)"


class FieldEncryptor:
    """Encrypts request fields under FaceID's public key.

    Args:
        public_key_pem: the RSA public key from the FaceID console (PKCS#1 or SubjectPublicKeyInfo PEM).

    Raises:
        ConfigError: the key is not an RSA public key in PEM.

    """

    def __init__(self, public_key_pem: bytes) -> None:
        try:
            key = load_pem_public_key(public_key_pem)
        except ValueError as exc:
            raise ConfigError(f"FaceID encryption public key: not a PEM public key ({exc})") from exc
        if not isinstance(key, RSAPublicKey):
            raise ConfigError(
                "FaceID encryption public key: AES-256-CBC needs an RSA key (SM2 is not supported)"
            )
        self._public_key = key

    @classmethod
    def from_file(cls, path: str) -> FieldEncryptor:
        """Load the public key from a PEM file.

        Raises:
            ConfigError: the file cannot be read or holds no RSA public key.

        """
        try:
            return cls(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError(f"FaceID encryption public key: cannot read {path}: {exc.strerror}") from exc

    def encrypt(self, fields: Mapping[str, str], encrypt: Iterable[str]) -> EncryptedFields:
        """Encrypt the named fields of one request under a fresh key and IV.

        Args:
            fields: the request's string fields.
            encrypt: which of them to encrypt.

        Returns:
            The fields with ciphertext in place, and the envelope.

        """
        names = [name for name in encrypt if name in fields]
        key = "".join(secrets.choice(_KEY_CHARS) for _ in range(_KEY_LENGTH)).encode("ascii")
        iv = secrets.token_bytes(_IV_BYTES)
        out: dict[str, object] = dict(fields)
        for name in names:
            out[name] = base64.b64encode(_aes_cbc_encrypt(key, iv, fields[name].encode("utf-8"))).decode(
                "ascii"
            )
        # PKCS#1 v1.5 because FaceID decrypts with it; the key is random, so the scheme's
        # weaknesses against chosen ciphertexts give an attacker nothing reusable.
        blob = self._public_key.encrypt(key, asymmetric_padding.PKCS1v15())
        encryption = {
            "EncryptList": names,
            "CiphertextBlob": base64.b64encode(blob).decode("ascii"),
            "Iv": base64.b64encode(iv).decode("ascii"),
            "Algorithm": ALGORITHM,
        }
        return EncryptedFields(out, encryption)


def _aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    padder = symmetric_padding.PKCS7(_BLOCK_BITS).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def decrypt_fields(
    private_key: RSAPrivateKey, fields: Mapping[str, object], encryption: Mapping[str, object]
) -> dict[str, object]:
    """Undo :meth:`FieldEncryptor.encrypt` with the private key: what FaceID does on receipt.

    The fake FaceID server of the test suite uses it; idverify itself never holds the key.

    Raises:
        ValueError: the envelope is malformed or does not decrypt.

    """
    names = encryption.get("EncryptList")
    blob, iv_text = encryption.get("CiphertextBlob"), encryption.get("Iv")
    if not isinstance(names, list) or not isinstance(blob, str) or not isinstance(iv_text, str):
        raise ValueError("malformed Encryption object")  # noqa: TRY004 - bad input, not a bug
    key = private_key.decrypt(base64.b64decode(blob), asymmetric_padding.PKCS1v15())
    iv = base64.b64decode(iv_text)
    out = dict(fields)
    for name in names:
        value = fields.get(name)
        if not isinstance(value, str):
            raise ValueError(f"encrypted field {name} missing")  # noqa: TRY004 - bad input, not a bug
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(base64.b64decode(value)) + decryptor.finalize()
        unpadder = symmetric_padding.PKCS7(_BLOCK_BITS).unpadder()
        out[name] = (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    return out

"""Sealing: deterministic authenticated encryption (AES-SIV) of stored index values and name bindings.

Deterministic so a sealed value still works as a lookup key; versioned so wrapping keys rotate online
by unsealing with the old key and sealing with the new, with no plaintext needed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from idverify.privacy.keyring import UnknownKeyVersion

if TYPE_CHECKING:
    from idverify.privacy.keyring import Keyring

__all__ = [
    "SealError",
    "SealTampered",
    "Sealer",
    "UnknownSealVersion",
    "associated_data",
    "sealed_from_text",
    "sealed_to_text",
    "sealed_version",
    "text_version",
]

_SEPARATOR: Final = b":"
_HEADER: Final = re.compile(rb"(w[1-9][0-9]{0,5}):")
_DOMAIN: Final = b"idverify/seal/v1"
_TEXT: Final = re.compile(r"(w[1-9][0-9]{0,5}):((?:[0-9a-f]{2})+)")


class SealError(Exception):
    """A sealed value cannot be opened. Messages never contain the value."""


class UnknownSealVersion(SealError):
    """The sealed value names a wrapping-key version the keyring does not hold, or no version at all."""


class SealTampered(SealError):
    """The sealed value, or the associated data given to open it, is not what was sealed."""


def associated_data(tenant: str, purpose: str, *context: str) -> bytes:
    """Return associated data binding a sealed value to its tenant, purpose and any further context.

    A value sealed for one (tenant, purpose) fails to open under any other, so a record cannot be
    copied between tenants or between fields.

    Raises:
        ValueError: ``tenant`` or ``purpose`` is empty.

    """
    if not tenant or not purpose:
        raise ValueError("associated data needs a non-empty tenant and purpose")
    # Length prefixes keep the parts distinct: ("ab", "c") and ("a", "bc") give different bytes.
    parts = (part.encode("utf-8") for part in (tenant, purpose, *context))
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def sealed_version(sealed: bytes) -> str:
    """Return the wrapping-key version named in a sealed value's header.

    Raises:
        UnknownSealVersion: the value has no well-formed header.

    """
    match = _HEADER.match(sealed)
    if match is None:
        raise UnknownSealVersion("sealed value has no wrapping-key version header")
    return match.group(1).decode("ascii")


def text_version(text: str) -> str:
    """Return the wrapping-key version a stored sealed reference (text form) was made under.

    "" when it is not a sealed value: callers treat that as "not current" and move it on.
    """
    try:
        return sealed_version(text.encode("ascii", "replace"))
    except SealError:
        return ""


def sealed_to_text(sealed: bytes) -> str:
    """Return ``w1:<hex>``, a form of a sealed value fit for Redis key names and logs of key names.

    Raises:
        UnknownSealVersion: the value has no well-formed header.

    """
    version = sealed_version(sealed)
    return f"{version}:{sealed[len(version) + 1 :].hex()}"


def sealed_from_text(text: str) -> bytes:
    """Invert :func:`sealed_to_text`.

    Raises:
        UnknownSealVersion: ``text`` is not in the ``w<n>:<hex>`` form.

    """
    match = _TEXT.fullmatch(text)
    if match is None:
        raise UnknownSealVersion("sealed text is not in the w<n>:<hex> form")
    return match.group(1).encode("ascii") + _SEPARATOR + bytes.fromhex(match.group(2))


class Sealer:
    """Seals and opens values under a keyring's wrapping keys with AES-SIV.

    A sealed value is ``b"<version>:" + siv_tag + ciphertext``. The version also enters the
    associated data, so a header edited to name another key fails like any other tamper.
    """

    __slots__ = ("_ciphers", "_keyring")

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._ciphers: dict[str, AESSIV] = {}

    @property
    def current_version(self) -> str:
        """The wrapping-key version :meth:`seal` writes under."""
        return self._keyring.wrapping_current

    def _cipher(self, version: str) -> AESSIV:
        cipher = self._ciphers.get(version)
        if cipher is None:
            try:
                key = self._keyring.wrapping_key(version)
            except UnknownKeyVersion:
                raise UnknownSealVersion(f"wrapping-key version {version!r} is not in the keyring") from None
            cipher = self._ciphers[version] = AESSIV(key)
        return cipher

    def seal(self, plaintext: bytes, *, associated: bytes) -> bytes:
        """Seal ``plaintext`` under the current wrapping key.

        Args:
            plaintext: the value to protect (an index digest, a name binding).
            associated: context the value is bound to, from :func:`associated_data`.

        """
        return self.seal_with(self._keyring.wrapping_current, plaintext, associated=associated)

    def seal_with(self, version: str, plaintext: bytes, *, associated: bytes) -> bytes:
        """Seal ``plaintext`` under the wrapping key ``version``, to look up records sealed earlier.

        Raises:
            UnknownSealVersion: ``version`` is not in the keyring.

        """
        encoded = version.encode("ascii")
        ciphertext = self._cipher(version).encrypt(plaintext, [_DOMAIN, encoded, associated])
        return encoded + _SEPARATOR + ciphertext

    def seal_candidates(self, plaintext: bytes, *, associated: bytes) -> list[bytes]:
        """Seal ``plaintext`` under every readable wrapping key, current first (lookups during rotation)."""
        return [
            self.seal_with(version, plaintext, associated=associated)
            for version in self._keyring.wrapping_versions
        ]

    def unseal(self, sealed: bytes, *, associated: bytes) -> bytes:
        """Open a sealed value under the wrapping key its header names.

        Args:
            sealed: the value from :meth:`seal`.
            associated: the same associated data it was sealed with.

        Raises:
            UnknownSealVersion: the header is missing or names a key the keyring does not hold.
            SealTampered: the value or the associated data was altered.

        """
        version = sealed_version(sealed)
        cipher = self._cipher(version)
        try:
            return cipher.decrypt(sealed[len(version) + 1 :], [_DOMAIN, version.encode("ascii"), associated])
        except (InvalidTag, ValueError):
            # ValueError: a body too short to hold the SIV tag is as corrupt as a wrong tag.
            raise SealTampered("sealed value failed authentication") from None

    def needs_reseal(self, sealed: bytes) -> bool:
        """Tell whether ``sealed`` is under an older wrapping key than the current one.

        Raises:
            UnknownSealVersion: the value has no well-formed header.

        """
        return sealed_version(sealed) != self._keyring.wrapping_current

    def reseal(self, sealed: bytes, *, associated: bytes) -> bytes:
        """Return ``sealed`` moved to the current wrapping key (unchanged when already there).

        Raises:
            UnknownSealVersion: as :meth:`unseal`.
            SealTampered: as :meth:`unseal`.

        """
        plaintext = self.unseal(sealed, associated=associated)
        if not self.needs_reseal(sealed):
            return sealed
        return self.seal(plaintext, associated=associated)

    def __repr__(self) -> str:
        return f"Sealer(current_version={self.current_version!r})"

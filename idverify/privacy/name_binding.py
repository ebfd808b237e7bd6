"""Name binding: a keyed hash tying a normalized name to an identity index, to check later claims.

The document behind the index is the secret part and already costs an argon2id to guess, so a plain
HMAC suffices here and a verification costs exactly one argon2id.
"""

from __future__ import annotations

import hmac
import unicodedata
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from idverify.privacy.keyring import Keyring

__all__ = ["CLAIM_TAG_PURPOSE", "NAME_PURPOSE", "claim_tag", "name_binding", "names_match"]

NAME_PURPOSE: Final = "name"
"""Keyring purpose of the name-binding subkey."""

CLAIM_TAG_PURPOSE: Final = "claim-name"
"""Pseudonym purpose of a (document, name) pair's tag."""


def _check_normalized(normalized_name: str) -> None:
    # A name that skipped normalization would never match its binding: fail loudly instead of
    # reporting a mismatch that is really a bug in the caller.
    if not normalized_name:
        raise ValueError("normalized_name must not be empty")
    if not unicodedata.is_normalized("NFKC", normalized_name):
        raise ValueError("normalized_name must be in NFKC form")
    if " ".join(normalized_name.split()) != normalized_name:
        raise ValueError("normalized_name must have its whitespace collapsed and trimmed")


def name_binding(
    keyring: Keyring, tenant: str, index: bytes, normalized_name: str, *, pepper_version: str | None = None
) -> bytes:
    """Return HMAC-SHA256, under the tenant's ``name`` subkey, of ``len(index) || index || name``.

    Args:
        keyring: the keyring holding the tenant's peppers.
        tenant: the tenant id, from the authenticated principal.
        index: the identity index digest (:attr:`IndexValue.digest`).
        normalized_name: the name, NFKC with whitespace collapsed.
        pepper_version: the pepper of the record (:attr:`IndexValue.pepper_version`); the current
            one when None.

    Raises:
        ValueError: ``index`` or the tenant is empty, or the name is not normalized.
        UnknownKeyVersion: ``pepper_version`` is not in the keyring.

    """
    if not index:
        raise ValueError("index must not be empty")
    _check_normalized(normalized_name)
    # The length prefix keeps the index/name boundary unambiguous for any index length.
    data = len(index).to_bytes(2, "big") + index + normalized_name.encode("utf-8")
    # A binding moves with its identity index, so it follows the index's (current) pepper, not
    # the pinned pepper that keyed names use by default.
    version = keyring.pepper_current if pepper_version is None else pepper_version
    return keyring.mac(tenant, NAME_PURPOSE, data, pepper_version=version)


def names_match(
    keyring: Keyring,
    tenant: str,
    index: bytes,
    normalized_name: str,
    binding: bytes,
    *,
    pepper_version: str | None = None,
) -> bool:
    """Tell, in constant time, whether ``normalized_name`` is the name bound as ``binding``.

    Args:
        keyring: the keyring holding the tenant's peppers.
        tenant: the tenant id, from the authenticated principal.
        index: the identity index digest the binding was made with.
        normalized_name: the claimed name, NFKC with whitespace collapsed.
        binding: the stored (unsealed) name binding.
        pepper_version: the pepper the binding was made under; the current one when None.

    Raises:
        ValueError: as :func:`name_binding`.
        UnknownKeyVersion: ``pepper_version`` is not in the keyring.

    """
    expected = name_binding(keyring, tenant, index, normalized_name, pepper_version=pepper_version)
    return hmac.compare_digest(expected, binding)


def claim_tag(keyring: Keyring, tenant: str, document_type: str, number: str, normalized_name: str) -> str:
    """The pseudonym of a (document, name) pair: the places and refusals a claim counts under.

    Unlike a name binding it is keyed by the pinned pepper, so it stays the same when peppers
    rotate and a pair's counters and accounts' tags keep matching. The document inside keeps two
    people of the same name apart.

    Raises:
        ValueError: as :func:`name_binding`.
    """
    _check_normalized(normalized_name)
    return keyring.pseudonym(tenant, CLAIM_TAG_PURPOSE, f"{document_type}|{number}|{normalized_name}")

"""Verification ids that name their account's bucket, readable only with the keyring.

An id is 32 lower-case hex digits (128 bits), as ids always were. Its first 10 bits are the
account's bucket XOR the first 10 bits of a keyed MAC of the other 118 bits, which are random.
The server finds the bucket from the id alone; someone holding ids without the keyring sees 10
bits that look random, so they cannot group ids by account bucket. The MAC is under the pinned
pepper (the keyring's default), so a pepper rotation never changes the bucket an id decodes to.

Ids made before this scheme are random 128 bits: they decode to some bucket, which nothing routes
by yet (docs/ARCHITECTURE.md, "Buckets: the plan").
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Final

from idverify.domain.buckets import BUCKETS

if TYPE_CHECKING:
    from idverify.privacy.keyring import Keyring

__all__ = ["VF_BUCKET_PURPOSE", "new_verification_id", "verification_id_bucket"]

VF_BUCKET_PURPOSE: Final = "vf-bucket"
"""Keyring purpose of the MAC that hides a verification id's bucket."""

_ID_BITS: Final = 128
_BUCKET_BITS: Final = BUCKETS.bit_length() - 1
_REST_BITS: Final = _ID_BITS - _BUCKET_BITS
_REST_MASK: Final = (1 << _REST_BITS) - 1
_REST_BYTES: Final = (_REST_BITS + 7) // 8
_VERIFICATION_ID: Final = re.compile(r"[0-9a-f]{32}")


def _mask(keyring: Keyring, tenant: str, rest: int) -> int:
    digest = keyring.mac(tenant, VF_BUCKET_PURPOSE, rest.to_bytes(_REST_BYTES, "big"))
    return int.from_bytes(digest[:2], "big") >> (16 - _BUCKET_BITS)


def new_verification_id(keyring: Keyring, tenant: str, bucket: int) -> str:
    """A fresh verification id of ``tenant`` that decodes to ``bucket``.

    Raises:
        ValueError: ``bucket`` is not in ``range(BUCKETS)`` (a caller's bug).
    """
    if not 0 <= bucket < BUCKETS:
        msg = f"a bucket is in range({BUCKETS}), not {bucket!r}"
        raise ValueError(msg)
    rest = secrets.randbits(_REST_BITS)
    return f"{((bucket ^ _mask(keyring, tenant, rest)) << _REST_BITS) | rest:032x}"


def verification_id_bucket(keyring: Keyring, tenant: str, verification_id: str) -> int:
    """The bucket a verification id of ``tenant`` names (an old random id names some bucket too).

    Raises:
        ValueError: ``verification_id`` is not 32 lower-case hex digits.
    """
    if not _VERIFICATION_ID.fullmatch(verification_id):
        msg = "a verification id is 32 lower-case hex digits"
        raise ValueError(msg)
    value = int(verification_id, 16)
    rest = value & _REST_MASK
    return (value >> _REST_BITS) ^ _mask(keyring, tenant, rest)

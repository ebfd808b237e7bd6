"""Which of a tenant's buckets a record belongs to (issue 26): the arithmetic, nothing stored.

A tenant's bucketed records are spread over ``BUCKETS`` buckets by the name their keys are made
from. Those names are already keyed or random (account and counter pseudonyms are HMACs under
the pinned pepper, identity refs AES-SIV ciphertexts, verification ids carry their bucket), so
the hash needs no key of its own: without the keyring nobody can aim records at one bucket.
Where a bucket's keys live (its slot and label) is ``store.buckets``; this module is pure so that
the use cases, which never name the store, derive buckets too.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["BUCKETS", "bucket_of"]

BUCKETS: Final = 1024
"""Buckets per bucketed tenant: the smallest power of two that keeps every primary of a
100-primary Cluster within 10 % of an even share (docs/ARCHITECTURE.md, "Buckets: the plan")."""


def bucket_of(name: str) -> int:
    """The bucket of a record named ``name`` (a pseudonym or identity ref), in ``range(BUCKETS)``.

    The first two bytes of SHA-256, so 1,024 divides their 65,536 values evenly.
    """
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:2], "big") % BUCKETS

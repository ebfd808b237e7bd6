"""RFC 6962's Merkle tree hash and inclusion check, written from the RFC alone.

The crash tests compare the integrator's root and proofs with this rather than with
``idverify.audit.merkle``, so that a fault shared by the tree's code and its own checks cannot
hide: RFC 6962 §2.1 for the root, RFC 9162 §2.1.3.2 for checking an inclusion proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf(entry: bytes) -> bytes:
    """MTH of one entry: SHA-256 of 0x00 and the entry."""
    return hashlib.sha256(b"\x00" + entry).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes: the left subtree the largest power of two below their count."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _node(root(leaves[:split]), root(leaves[split:]))


def proves_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], want: bytes) -> bool:
    """Whether ``proof`` takes the leaf at ``index`` of a tree of ``size`` leaves to ``want``."""
    if index >= size:
        return False
    fn, sn, computed = index, size - 1, leaf_hash
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            computed = _node(sibling, computed)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            computed = _node(computed, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and computed == want

"""RFC 6962 Merkle tree math for the audit log: hashing, proofs, verification and appends.

Pure functions only; which stored nodes a proof needs is computed here, reading them is the store's job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "NodeId",
    "NodeReader",
    "ProofError",
    "ProofPlan",
    "consistency_plan",
    "consistency_proof",
    "frontier_nodes",
    "inclusion_plan",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}): the root of the empty tree (RFC 6962 section 2.1)."""

# Domain separation between leaves and interior nodes is what stops a second-preimage attack
# that passes an interior node off as a leaf (RFC 6962 section 2.1).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class ProofError(ValueError):
    """A proof, a root or a tree size does not check out, or is malformed."""


@dataclass(frozen=True, slots=True, order=True)
class NodeId:
    """A perfect subtree, named by its height and its position among the nodes of that height.

    Node ``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0
    holds the leaf hashes themselves.

    Attributes:
        level: the height above the leaves.
        index: the position at that height, counting from 0 on the left.
    """

    level: int
    index: int


NodeReader: TypeAlias = Callable[[Sequence[NodeId]], Sequence[bytes | None]]
"""Reads stored perfect-subtree hashes in one batch, in order; ``None`` for a missing node."""


def leaf_hash(entry: bytes) -> bytes:
    """Return the RFC 6962 hash of a log entry, SHA-256(0x00 || entry)."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 hash of an interior node, SHA-256(0x01 || left || right)."""
    digest = hashlib.sha256(_NODE_PREFIX)
    digest.update(left)
    digest.update(right)
    return digest.digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH(D[n]) of RFC 6962 section 2.1 over the given leaf hashes.

    Args:
        leaf_hashes: the leaf hashes of the whole tree, in log order.

    Returns:
        The root hash; ``EMPTY_ROOT`` for no leaves.
    """
    return _mth(leaf_hashes, 0, len(leaf_hashes))


# ---------------------------------------------------------------------------------------------
# Which nodes a proof needs.


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """The stored nodes a proof is built from, and how to turn their hashes into the proof.

    Attributes:
        nodes: perfect subtrees to read, in proof order. Every one of them is complete in the
            tree the proof is for, so a store that keeps each perfect subtree once it is
            complete (as ``CompactRange.append`` reports them) has them all.
        ephemeral: ``(begin, end)`` when ``nodes[begin:end]`` (two or more, lowest level
            first) are the pieces of one node on the right edge of a tree whose size is not a
            power of two. That node is not stored, since it changes with every append; its
            hash is folded from the pieces and takes their place in the proof.
    """

    nodes: tuple[NodeId, ...]
    ephemeral: tuple[int, int] | None = None

    def assemble(self, hashes: Sequence[bytes | None]) -> list[bytes]:
        """Turn the hashes read for ``nodes`` into the proof.

        Args:
            hashes: the hash of each node of ``nodes``, in the same order.

        Returns:
            The proof hashes, bottom-up, as RFC 6962 orders them.

        Raises:
            ValueError: a hash is missing or not ``HASH_SIZE`` bytes long, or the count differs
                from ``nodes``; this means the store is inconsistent.
        """
        if len(hashes) != len(self.nodes):
            raise ValueError(f"got {len(hashes)} node hashes for {len(self.nodes)} nodes")
        checked: list[bytes] = []
        for node, value in zip(self.nodes, hashes, strict=True):
            if value is None:
                raise ValueError(f"node {node} is missing from the store")
            if len(value) != HASH_SIZE:
                raise ValueError(f"node {node} has a {len(value)}-byte hash")
            checked.append(value)
        if self.ephemeral is None:
            return checked
        begin, end = self.ephemeral
        # The pieces run from the rightmost (lowest) upwards, so each one is a left child.
        folded = checked[begin]
        for piece in checked[begin + 1 : end]:
            folded = node_hash(piece, folded)
        return [*checked[:begin], folded, *checked[end:]]


def frontier_nodes(size: int) -> list[NodeId]:
    """Return the perfect subtrees that exactly cover leaves ``[0, size)``, left to right.

    They are the compact range a ``CompactRange`` of that size holds, one per set bit of
    ``size``; folding their hashes gives the root of the tree at that size.

    Raises:
        ValueError: ``size`` is negative.
    """
    if size < 0:
        raise ValueError(f"tree size {size} is negative")
    return _perfect_cover(0, size)


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """Return the nodes of the inclusion proof for leaf ``index`` in the tree of ``size`` leaves.

    Requires ``0 <= index < size``.

    Raises:
        ValueError: the index is not a leaf of a tree of that size.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is out of range for tree size {size}")
    return _path_plan(NodeId(0, index), size)


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """Return the nodes of the consistency proof from tree size ``size1`` to ``size2``.

    Requires ``0 < size1 <= size2``; the proof between equal sizes is empty. As in the
    reference implementations, no proof is produced from the empty tree, which every tree
    extends (``verify_consistency`` accepts an empty proof for it).

    Raises:
        ValueError: the sizes are out of order, negative, or ``size1`` is 0.
    """
    if not 0 <= size1 <= size2:
        raise ValueError(f"tree sizes {size1} and {size2} are not 0 <= size1 <= size2")
    if size1 == 0:
        raise ValueError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        return ProofPlan(nodes=())
    start = _last_frontier_node(size1)
    plan = _path_plan(start, size2)
    if start.index == 0:
        # size1 is a power of two: its root is that node, which the client already holds.
        return plan
    shifted = None if plan.ephemeral is None else (plan.ephemeral[0] + 1, plan.ephemeral[1] + 1)
    return ProofPlan(nodes=(start, *plan.nodes), ephemeral=shifted)


def inclusion_proof(index: int, size: int, source: Sequence[bytes] | NodeReader) -> list[bytes]:
    """Return the RFC 6962 inclusion proof (audit path) for leaf ``index`` in the tree of ``size``.

    Args:
        index: the leaf, ``0 <= index < size``.
        size: the tree size the proof is for.
        source: either all leaf hashes (at least ``size`` of them; the proof is computed from
            the definition in RFC 6962 section 2.1.1), or a ``NodeReader`` over stored perfect
            subtrees (the proof is read from ``inclusion_plan``).

    Raises:
        ValueError: the index is out of range, there are fewer than ``size`` leaf hashes, or the
            reader's answer is incomplete.
    """
    if callable(source):
        plan = inclusion_plan(index, size)
        return plan.assemble(source(plan.nodes))
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is out of range for tree size {size}")
    _require_leaves(source, size)
    return _rfc_path(index, source, 0, size)


def consistency_proof(size1: int, size2: int, source: Sequence[bytes] | NodeReader) -> list[bytes]:
    """Return the RFC 6962 consistency proof from tree size ``size1`` to ``size2``.

    Args:
        size1: the older size, ``0 < size1 <= size2``.
        size2: the newer size.
        source: either all leaf hashes (at least ``size2`` of them; the proof is computed from
            the definition in RFC 6962 section 2.1.2), or a ``NodeReader`` over stored perfect
            subtrees (the proof is read from ``consistency_plan``).

    Raises:
        ValueError: the sizes are out of order or ``size1`` is 0, there are fewer than ``size2``
            leaf hashes, or the reader's answer is incomplete.
    """
    if callable(source):
        plan = consistency_plan(size1, size2)
        return plan.assemble(source(plan.nodes))
    consistency_plan(size1, size2)  # Same preconditions for both sources.
    _require_leaves(source, size2)
    return _rfc_subproof(size1, source, 0, size2)


# ---------------------------------------------------------------------------------------------
# Verification.


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``proof`` proves leaf ``index`` with ``leaf_hash`` is in the tree of ``size``.

    Requires ``0 <= index < size``, every hash ``HASH_SIZE`` bytes long, and exactly as many
    proof hashes as the shape of the tree calls for.

    Args:
        leaf_hash: the hash of the entry, as ``leaf_hash`` computes it.
        index: the entry's position in the log.
        size: the size of the tree ``root`` belongs to.
        proof: the audit path, bottom-up.
        root: the trusted root hash of the tree of ``size``.

    Raises:
        ProofError: a precondition does not hold, or the proof leads to another root.
    """
    _check_hashes(leaf_hash=leaf_hash, root=root, proof=proof)
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is out of range for tree size {size}")
    computed = _chain(leaf_hash, NodeId(0, index), size, proof)
    if computed != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the root of size {size}")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that ``proof`` proves the tree of ``size2`` extends the tree of ``size1``.

    Requires ``0 <= size1 <= size2`` and every hash ``HASH_SIZE`` bytes long. Between equal
    sizes the proof must be empty and the roots equal. From the empty tree the proof must be
    empty and the roots are not compared, exactly as transparency-dev/merkle does: every tree
    extends the empty one.

    Args:
        size1: the size of the older, trusted tree.
        size2: the size of the newer tree.
        proof: the consistency proof, as RFC 6962 section 2.1.2 orders it.
        root1: the root hash at ``size1``.
        root2: the root hash at ``size2``.

    Raises:
        ProofError: a precondition does not hold, the proof has the wrong number of hashes, or
            it does not lead to both roots.
    """
    _check_hashes(root1=root1, root2=root2, proof=proof)
    if not 0 <= size1 <= size2:
        raise ProofError(f"tree sizes {size1} and {size2} are not 0 <= size1 <= size2")
    if size1 in (0, size2):
        if proof:
            raise ProofError(f"consistency proof from size {size1} to {size2} must be empty")
        if size1 == size2 and root1 != root2:
            raise ProofError(f"two different roots for the same tree size {size1}")
        return
    old, new = _consistency_roots(size1, size2, proof, root1)
    if old != root1:
        raise ProofError(f"consistency proof does not lead to the root of size {size1}")
    if new != root2:
        raise ProofError(f"consistency proof does not lead to the root of size {size2}")


# ---------------------------------------------------------------------------------------------
# Appends.


@dataclass(frozen=True, slots=True)
class CompactRange:
    """The right edge of a log: the perfect-subtree hashes covering leaves ``[0, size)``.

    It holds one hash per set bit of ``size`` (the nodes of ``frontier_nodes(size)``), enough
    to append and to compute the root in O(log n). It is immutable, so a store can retry an
    append that lost a race without undoing anything.

    Attributes:
        size: the number of leaves covered.
        hashes: the hashes of ``frontier_nodes(size)``, left to right.
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        """Reject a range whose hashes cannot belong to its size.

        Raises:
            ValueError: the size is negative, the number of hashes is not the number of set
                bits of the size, or a hash is not ``HASH_SIZE`` bytes long.
        """
        if self.size < 0:
            raise ValueError(f"tree size {self.size} is negative")
        expected = self.size.bit_count()
        if len(self.hashes) != expected:
            raise ValueError(f"a range of size {self.size} needs {expected} hashes, got {len(self.hashes)}")
        for value in self.hashes:
            if len(value) != HASH_SIZE:
                raise ValueError(f"range hash is {len(value)} bytes, want {HASH_SIZE}")

    def append(self, leaf_hash: bytes) -> tuple[CompactRange, dict[NodeId, bytes]]:
        """Append one leaf.

        Args:
            leaf_hash: the new leaf's hash, as ``leaf_hash`` computes it.

        Returns:
            The range one leaf longer, and the perfect subtrees the append completed (the leaf
            itself first, then each new parent upwards); storing them keeps every node a
            ``ProofPlan`` can ask for. Over n appends that is 2n minus the set bits of n.

        Raises:
            ValueError: the leaf hash is not ``HASH_SIZE`` bytes long.
        """
        return self.extend((leaf_hash,))

    def extend(self, leaf_hashes: Iterable[bytes]) -> tuple[CompactRange, dict[NodeId, bytes]]:
        """Append several leaves in order.

        Returns:
            The longer range and all perfect subtrees completed on the way, in order.

        Raises:
            ValueError: a leaf hash is not ``HASH_SIZE`` bytes long.
        """
        # One list grown in place and one range built at the end: a range per leaf (checked in
        # ``__post_init__``) cost the integrator three times its hashing.
        completed: dict[NodeId, bytes] = {}
        hashes = list(self.hashes)
        size = self.size
        for leaf in leaf_hashes:
            if len(leaf) != HASH_SIZE:
                raise ValueError(f"leaf hash is {len(leaf)} bytes, want {HASH_SIZE}")
            completed[NodeId(0, size)] = value = leaf
            level, index = 0, size
            # Each trailing one bit of the size so far is a left sibling waiting for this subtree.
            while index & 1:
                value = node_hash(hashes.pop(), value)
                level, index = level + 1, index >> 1
                completed[NodeId(level, index)] = value
            hashes.append(value)
            size += 1
        return CompactRange(size, tuple(hashes)), completed

    def root(self) -> bytes:
        """Return the root hash of the tree of ``size`` leaves, in O(log n) hashes."""
        if not self.hashes:
            return EMPTY_ROOT
        value = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            value = node_hash(left, value)
        return value


# ---------------------------------------------------------------------------------------------
# Internals.


def _split(n: int) -> int:
    """Return the largest power of two strictly below ``n`` (requires ``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """Return MTH(D[lo:hi]) as RFC 6962 section 2.1 defines it."""
    n = hi - lo
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def _rfc_path(m: int, leaves: Sequence[bytes], lo: int, hi: int) -> list[bytes]:
    """Return PATH(m, D[lo:hi]) of RFC 6962 section 2.1.1."""
    # The definition recurses into one half and appends the other half's root; walking down
    # collects those roots top-first, hence the reversal.
    top_down: list[bytes] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            top_down.append(_mth(leaves, lo + k, hi))
            hi = lo + k
        else:
            top_down.append(_mth(leaves, lo, lo + k))
            lo, m = lo + k, m - k
    top_down.reverse()
    return top_down


def _rfc_subproof(m: int, leaves: Sequence[bytes], lo: int, hi: int) -> list[bytes]:
    """Return PROOF(m, D[lo:hi]) = SUBPROOF(m, D[lo:hi], true) of RFC 6962 section 2.1.2."""
    top_down: list[bytes] = []
    known_root = True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            top_down.append(_mth(leaves, lo + k, hi))
            hi = lo + k
        else:
            top_down.append(_mth(leaves, lo, lo + k))
            lo, m, known_root = lo + k, m - k, False
    if not known_root:
        top_down.append(_mth(leaves, lo, hi))
    top_down.reverse()
    return top_down


def _require_leaves(leaves: Sequence[bytes], size: int) -> None:
    if len(leaves) < size:
        raise ValueError(f"tree size {size} needs {size} leaf hashes, got {len(leaves)}")


def _last_frontier_node(size: int) -> NodeId:
    """Return the smallest perfect subtree of size's compact range (requires ``size > 0``).

    A consistency proof starts from it: the largest perfect subtree that ends at ``size``.
    """
    level = (size & -size).bit_length() - 1
    return NodeId(level, (size - 1) >> level)


def _path_siblings(start: NodeId, size: int) -> Iterator[NodeId]:
    """Yield the sibling of each node on the way from ``start`` to the root, bottom-up.

    A node on the right edge with nothing to its right has no sibling at that level: RFC 6962
    lifts it unchanged. A right sibling may stick out past ``size``; callers decide what to do
    with it. An even sibling index means a left sibling.
    """
    level, index = start.level, start.index
    last = (size - 1) >> level
    while last > 0:
        if index & 1:
            yield NodeId(level, index - 1)
        elif index < last:
            yield NodeId(level, index + 1)
        index, last, level = index >> 1, last >> 1, level + 1


def _perfect_cover(begin: int, end: int) -> list[NodeId]:
    """Return the perfect subtrees covering ``[begin, end)``, largest and leftmost first.

    Requires ``begin`` to be a multiple of the largest of them, which holds for ``begin == 0``
    and for a right sibling cut off by the tree size.
    """
    nodes: list[NodeId] = []
    remaining, position = end - begin, begin
    for level in range(remaining.bit_length() - 1, -1, -1):
        if (remaining >> level) & 1:
            nodes.append(NodeId(level, position >> level))
            position += 1 << level
    return nodes


def _path_plan(start: NodeId, size: int) -> ProofPlan:
    """Return the plan for the audit path of node ``start`` in the tree of ``size``."""
    nodes: list[NodeId] = []
    ephemeral: tuple[int, int] | None = None
    for sibling in _path_siblings(start, size):
        begin = sibling.index << sibling.level
        if begin + (1 << sibling.level) <= size:
            nodes.append(sibling)
            continue
        # A right sibling cut off by the size is not stored; its pieces are, lowest first.
        pieces = _perfect_cover(begin, size)
        pieces.reverse()
        if len(pieces) > 1:
            ephemeral = (len(nodes), len(nodes) + len(pieces))
        nodes.extend(pieces)
    return ProofPlan(nodes=tuple(nodes), ephemeral=ephemeral)


def _chain(seed: bytes, start: NodeId, size: int, proof: Sequence[bytes]) -> bytes:
    """Hash ``seed``, the hash of node ``start``, up its audit path in the tree of ``size``.

    Raises:
        ProofError: the proof does not have one hash per sibling on the path.
    """
    siblings = list(_path_siblings(start, size))
    if len(proof) != len(siblings):
        raise ProofError(f"inclusion proof has {len(proof)} hashes, want {len(siblings)}")
    value = seed
    for sibling, other in zip(siblings, proof, strict=True):
        value = node_hash(other, value) if sibling.index % 2 == 0 else node_hash(value, other)
    return value


def _consistency_roots(size1: int, size2: int, proof: Sequence[bytes], root1: bytes) -> tuple[bytes, bytes]:
    """Return the roots at ``size1`` and ``size2`` that a consistency proof leads to.

    Requires ``0 < size1 < size2``.

    Raises:
        ProofError: the proof does not have the number of hashes the two sizes call for.
    """
    start = _last_frontier_node(size1)
    # Unless size1 is a power of two, the proof opens with the subtree the path starts from.
    seed_in_proof = start.index != 0
    siblings = list(_path_siblings(start, size2))
    expected = int(seed_in_proof) + len(siblings)
    if len(proof) != expected:
        raise ProofError(f"consistency proof has {len(proof)} hashes, want {expected}")
    seed, path = (proof[0], proof[1:]) if seed_in_proof else (root1, proof)
    # The left siblings on the path are the rest of size1's compact range, so folding only
    # them rebuilds the old root; folding all of them rebuilds the new one.
    old = new = seed
    for sibling, value in zip(siblings, path, strict=True):
        if sibling.index % 2 == 0:
            old = node_hash(value, old)
            new = node_hash(value, new)
        else:
            new = node_hash(new, value)
    return old, new


def _check_hashes(proof: Sequence[bytes], **named: bytes) -> None:
    for name, value in named.items():
        if len(value) != HASH_SIZE:
            raise ProofError(f"{name} is {len(value)} bytes, want {HASH_SIZE}")
    for position, value in enumerate(proof):
        if len(value) != HASH_SIZE:
            raise ProofError(f"proof hash {position} is {len(value)} bytes, want {HASH_SIZE}")

"""The records of a log's stored tree: its integrated state and the last signed head stored.

The integrator, the rollback guard and the auditor's flow read and write them through their
ports; ``store.audit_store`` keeps them in the tenant's tree head hash. A tree whose nodes are
kept in tiles (``audit_tiles_dir``) says so there, and a process without the tiles refuses it
(``TreeInTiles``) rather than answering from nodes Redis does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from idverify.audit.merkle import EMPTY_ROOT, CompactRange
from idverify.domain.errors import FailedPrecondition

__all__ = ["StoredHead", "TreeInTiles", "TreeState"]


class TreeInTiles(FailedPrecondition):
    """The log's tree is kept in tiles, and this process was started without ``audit_tiles_dir``."""

    default_reason = "AUDIT_TILES_REQUIRED"

    @classmethod
    def of(cls, tenant: str) -> TreeInTiles:
        """The refusal for one tenant's log, naming the setting that serves it."""
        return TreeInTiles(
            f"the audit log of tenant {tenant} keeps its tree in tiles: start every process that "
            "serves it with audit_tiles_dir set to its tiles' directory"
        )


@dataclass(frozen=True, slots=True)
class StoredHead:
    """The last signed tree head a replica stored, as stored (not yet checked).

    Attributes:
        checkpoint: the canonical checkpoint bytes the signature covers.
        key_id: the id of the key that signed it.
        signature: the Ed25519 signature over ``checkpoint``.
    """

    checkpoint: bytes
    key_id: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class TreeState:
    """The integrated part of a log: the tree over its first ``size`` entries.

    Attributes:
        size: entries hashed into the tree.
        root: the RFC 6962 root of those entries.
        compact: the compact range at ``size``, to append from.
        last_head: the last signed head stored, read with the tree (None: none yet, or a
            state computed rather than read).
        tiled: whether the tree's nodes are kept in tiles rather than in Redis: read, that the
            stored tree says so; written, that the round wrote its tiles and no nodes.
    """

    size: int
    root: bytes
    compact: CompactRange
    last_head: StoredHead | None = None
    tiled: bool = False

    @classmethod
    def empty(cls) -> TreeState:
        """The tree of no entries."""
        return cls(0, EMPTY_ROOT, CompactRange())

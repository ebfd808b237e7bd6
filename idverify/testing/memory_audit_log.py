"""An in-memory ``flows.audit.AuditLog``: tenants' logs, their trees and last signed heads as plain values.

It answers the ports of ``audit/`` as well: the integrator's ``IntegratedLog`` (``write_tree``, a
check-and-set on the tree's size), the queries' ``IndexedLog`` (postings computed from the entries
where Redis appends them) and the acknowledgement's ``AcknowledgementLog``.

:meth:`MemoryAuditLog.append` writes an entry as the Lua prelude's ``audit()`` does (the same
fields in the same order, canonical JSON, a time never before the previous entry's). The tree is
folded in only when :meth:`~MemoryAuditLog.integrate` is called, as the integrator does, with
every completed node kept; a query reads the entries in order and filters them, where Redis
seeks through the index postings. ``lose_nodes`` forgets the stored nodes, as a restore or a
failover may.

With ``tiles`` (a process with ``audit_tiles_dir``) and a ``write_round`` (``TileMirror``'s),
:meth:`~MemoryAuditLog.integrate` is the integrator's tiles-first round over this log: the head
moves with no node kept, marked as kept in tiles. Without ``tiles`` such a tree is refused
(``TreeInTiles``), as ``store.audit_logs.RedisAuditLog`` refuses it.
``tests/unit/usecases/test_audit_contract.py`` holds it and ``store.audit_logs.RedisAuditLog``,
``store.audit_store.AuditStore`` and ``store.audit_rollbacks.RedisRollbackAcknowledgements`` to
the same assertions.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from idverify.audit.acknowledge import AcknowledgementEntry
from idverify.audit.events import AuditEvent, EntryFormatError, EventType, parse_entry
from idverify.audit.integrator import RoundWriter, TreeIntegrator
from idverify.audit.merkle import CompactRange, NodeId, leaf_hash
from idverify.audit.query import EventFilter, Posting, PostingSeek, QueryResult
from idverify.audit.rollback import ROLLED_BACK, Rollback
from idverify.audit.tree_state import StoredHead, TreeInTiles, TreeState
from idverify.audit.trimmed_entries import RecentSeek
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryAuditLog"]

_TEXT_FIELDS = ("type", "verification_id", "account", "method", "outcome", "reason")
_REQUEST_FIELDS = ("principal", "request_id", "trace_id")
# The entry field each posting indexes (the prelude's ``audit()`` appends to them).
_POSTING_FIELDS = {"acct": "account", "type": "type", "outcome": "outcome", "method": "method"}


@dataclass(slots=True)
class _Log:
    entries: list[bytes] = field(default_factory=list)
    compact: CompactRange = field(default_factory=CompactRange)
    nodes: dict[NodeId, bytes] = field(default_factory=dict)
    head: StoredHead | None = None
    trimmed: int = 0
    tiled: bool = False


class MemoryAuditLog:
    """The audit logs of every tenant, in memory."""

    def __init__(self, now_ms: int = 1_760_000_000_000, *, tiles: bool = False) -> None:
        self.now = now_ms
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self.tiles = tiles
        # The tiles' writer (``TileMirror.write_round``), set once the mirror over this log exists.
        self.write_round: RoundWriter | None = None
        self._logs: dict[str, _Log] = {}
        self.trimmed_tenants: set[str] = set()

    def _log(self, tenant: str) -> _Log:
        refuse_if_down(self.down)
        return self._logs.setdefault(tenant, _Log())

    def append(self, tenant: str, request: Mapping[str, str], fields: Mapping[str, str]) -> int:
        """Appends one entry as ``audit()`` does; its index."""
        log = self._log(tenant)
        merged = {**request, **fields}
        previous = parse_entry(log.entries[-1]).time_ms if log.entries else 0
        document: dict[str, object] = {"v": 1, "seq": len(log.entries), "time_ms": max(self.now, previous)}
        document |= {name: merged.get(name, "") for name in _TEXT_FIELDS}
        document["steps"] = []
        document |= {name: merged.get(name, "") for name in _REQUEST_FIELDS}
        named = {*_TEXT_FIELDS, *_REQUEST_FIELDS}
        document["attributes"] = {k: merged[k] for k in sorted(merged) if k not in named}
        log.entries.append(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())
        return len(log.entries) - 1

    def lose_nodes(self, tenant: str) -> None:
        """Forgets the stored tree nodes (the tree head stays), as a restore may."""
        self._log(tenant).nodes.clear()

    async def exists(self, tenant: str) -> bool:
        """Whether the log has an entry."""
        return bool(self._log(tenant).entries)

    async def size(self, tenant: str) -> int:
        """Entries appended."""
        return len(self._log(tenant).entries)

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The entries' bytes."""
        log = self._log(tenant)
        return [log.entries[i] if log.trimmed <= i < len(log.entries) else None for i in indices]

    async def tree_state(self, tenant: str) -> TreeState:
        """The integrated tree and the last head stored (refused, kept in tiles, without ``tiles``)."""
        log = self._log(tenant)
        if log.tiled and not self.tiles:
            raise TreeInTiles.of(tenant)
        return TreeState(log.compact.size, log.compact.root(), log.compact, log.head, tiled=log.tiled)

    async def read_nodes(self, tenant: str, nodes: Sequence[NodeId]) -> list[bytes | None]:
        """The stored nodes."""
        log = self._log(tenant)
        return [log.nodes.get(node) for node in nodes]

    async def replace_signed_head(self, tenant: str, previous: StoredHead | None, signed: StoredHead) -> bool:
        """Stores the head if the stored one's checkpoint is still ``previous``'s."""
        log = self._log(tenant)
        held = log.head.checkpoint if log.head is not None else b""
        if held != (previous.checkpoint if previous is not None else b""):
            return False
        log.head = signed
        return True

    async def integrate(self, tenant: str, *, up_to: int | None = None) -> TreeState:
        """Folds the appended entries (up to ``up_to`` of them) into the tree, keeping every node.

        With a ``write_round``, the integrator's rounds instead: tiles first, no node kept.
        """
        if self.write_round is not None:
            return await TreeIntegrator(self, write_round=self.write_round).integrate(tenant, up_to=up_to)
        log = self._log(tenant)
        if log.tiled:
            raise TreeInTiles.of(tenant)
        target = len(log.entries) if up_to is None else min(len(log.entries), up_to)
        if log.compact.size < target:
            log.compact, completed = log.compact.extend(
                leaf_hash(entry) for entry in log.entries[log.compact.size : target]
            )
            log.nodes.update(completed)
        return await self.tree_state(tenant)

    async def query(self, tenant: str, query: EventFilter) -> AsyncIterator[QueryResult]:
        """The matching entries, read in order from ``query.start_index``."""
        await self.tree_state(tenant)  # refused as Redis's is
        log = self._log(tenant)
        sent = 0
        end = len(log.entries) if query.end_index is None else min(len(log.entries), query.end_index)
        for index in range(query.start_index, end):
            leaf = log.entries[index]
            event = parse_entry(leaf)
            if event.index != index:
                raise EntryFormatError(f"audit entry {index} says it is entry {event.index}")
            if not query.matches(event):
                continue
            yield QueryResult(event, leaf, log.nodes.get(NodeId(0, index)))
            sent += 1
            if query.limit and sent >= query.limit:
                return

    async def leaf_hashes(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The stored leaf hashes (None: not integrated)."""
        return await self.read_nodes(tenant, [NodeId(0, index) for index in indices])

    async def write_tree(
        self, tenant: str, old_size: int, state: TreeState, nodes: Mapping[NodeId, bytes]
    ) -> bool:
        """Stores the nodes and the tree if the tree still holds ``old_size`` entries.

        A ``state.tiled`` round keeps no node, and forgets those an older round kept.
        """
        log = self._log(tenant)
        if log.compact.size != old_size:
            return False
        if log.tiled and not state.tiled:
            raise TreeInTiles.of(tenant)
        log.compact = state.compact
        if state.tiled:
            log.tiled = True
            log.nodes.clear()
        else:
            log.nodes.update(nodes)
        return True

    async def seek_times(self, tenant: str, times_ms: Sequence[int]) -> list[int]:
        """For each time, the first entry at or after it (the size if none)."""
        return (await self.seek_recent_times(tenant, times_ms)).indices

    async def seek_recent_times(self, tenant: str, times_ms: Sequence[int]) -> RecentSeek:
        """For each time, the first entry at or above the trim point at or after it."""
        trimmed = self._log(tenant).trimmed
        times = [event.time_ms for event in self._events(tenant)]
        return RecentSeek(trimmed, [bisect.bisect_left(times, t, lo=trimmed) for t in times_ms])

    async def trimmed(self, tenant: str) -> int:
        """The trim point: entries below it are no longer answered."""
        return self._log(tenant).trimmed

    async def trim(self, tenant: str, target: int, batch: int) -> int:
        """Moves the trim point up to ``batch`` entries towards ``target``, never past the tree."""
        log = self._log(tenant)
        log.trimmed = max(log.trimmed, min(target, log.compact.size, log.trimmed + batch))
        return log.trimmed

    async def mark_trimmed(self, tenant: str) -> None:
        """Lists the tenant among the trimmed logs."""
        self.trimmed_tenants.add(tenant)

    async def seek_postings(self, tenant: str, postings: Sequence[Posting], index: int) -> list[PostingSeek]:
        """Where ``index`` falls in each posting."""
        found = [self._posting(tenant, posting) for posting in postings]
        return [PostingSeek(bisect.bisect_left(indices, index), len(indices)) for indices in found]

    async def read_posting(self, tenant: str, posting: Posting, position: int, count: int) -> list[int]:
        """Up to ``count`` indices of the posting from ``position`` on."""
        return self._posting(tenant, posting)[position : position + count]

    async def append_acknowledgement(self, rollback: Rollback, principal: str) -> AcknowledgementEntry:
        """The rollback's entry, appended unless one for the same published root is there."""
        root = rollback.head.root_hash.hex()
        for event in self._events(rollback.tenant):
            acknowledged = event.type == EventType.AUDIT_ROLLBACK_ACKNOWLEDGED
            if acknowledged and event.attributes.get("published_root") == root:
                return AcknowledgementEntry(event.index, written=False)
        head = rollback.head
        fields = {
            "type": EventType.AUDIT_ROLLBACK_ACKNOWLEDGED.value,
            "outcome": "acknowledged",
            "reason": ROLLED_BACK,
            "published_size": str(head.size),
            "published_root": root,
            "published_time_ms": str(head.timestamp_ms),
            "lost_entries": rollback.lost_range,
            "found_size": str(rollback.found_size),
        }
        request = {"principal": principal, "request_id": "", "trace_id": ""}
        return AcknowledgementEntry(self.append(rollback.tenant, request, fields), written=True)

    def _events(self, tenant: str) -> list[AuditEvent]:
        return [parse_entry(entry) for entry in self._log(tenant).entries]

    def _posting(self, tenant: str, posting: Posting) -> list[int]:
        name = _POSTING_FIELDS[posting.field]
        if not posting.value:
            return []
        return [e.index for e in self._events(tenant) if getattr(e, name) == posting.value]

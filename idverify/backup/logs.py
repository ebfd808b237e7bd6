"""Every tenant's audit log in a Redis, replayed from its entries: sizes, roots, and checks.

A backup's facts come from the entries themselves, not from the tree the integrator stored:
the root of a log is recomputed leaf by leaf (in pages, keeping only the compact range), and
the stored tree and the last signed head must agree with it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from idverify.audit.checkpoint import (
    CheckpointError,
    SignatureError,
    SignedHead,
    key_id_for,
    parse_checkpoint,
    verify_signed_head,
)
from idverify.audit.merkle import CompactRange, leaf_hash
from idverify.audit.tile_mirror import EntriesUnreadable, TileMirror
from idverify.audit.tree_state import StoredHead
from idverify.audit.trimmed_entries import TrimmableLog, TrimmedEntries
from idverify.backup.manifest import LogSummary
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.keys import PREFIX
from idverify.store.scan import scan_pages

__all__ = ["CheckedLog", "LogProblem", "audit_tenants", "check_log", "replay"]

_PAGE = 4096
_HEAD_PATTERN = f"{PREFIX}:{{t:*}}:audit:head"


class LogProblem(ValueError):
    """A log that does not agree with itself, its signed head or the backup's facts."""


async def audit_tenants(redis: RedisClient) -> list[str]:
    """The tenants that have an audit log in ``redis``.

    Raises:
        StoreUnavailable: when Redis cannot be reached.
    """
    tenants: set[str] = set()
    async for _, page in scan_pages(redis, _HEAD_PATTERN):
        for key in page:
            text = key.decode() if isinstance(key, bytes) else str(key)
            tenants.add(text.split("{t:", 1)[1].split("}", 1)[0])
    return sorted(tenants)


async def replay(
    store: AuditStore, tenant: str, at: Collection[int] = (), *, tiles: Path | None = None
) -> tuple[LogSummary, dict[int, bytes]]:
    """The log's size and root, and its roots at the sizes ``at`` that it reaches.

    Entries below a trimmed log's trim point come from the backup's copy of its bundles
    (``tiles``, the backup's ``audit-tiles``), checked as a server reads them.

    Raises:
        LogProblem: when an entry below the log's size is missing or unreadable.
        StoreUnavailable: when Redis cannot be reached.
    """
    size = await store.size(tenant)
    reader: TrimmableLog | TrimmedEntries = store
    if tiles is not None:
        reader = TrimmedEntries(store, TileMirror(tiles, store))
    wanted = {n for n in at if 0 <= n <= size}
    compact = CompactRange()
    roots: dict[int, bytes] = {0: compact.root()} if 0 in wanted else {}
    for first in range(0, size, _PAGE):
        indices = list(range(first, min(size, first + _PAGE)))
        try:
            read = await reader.entries(tenant, indices)
        except EntriesUnreadable as error:
            raise LogProblem(
                f"tenant {tenant}: {error} (trimmed past the backup's tiles? take the backup again)"
            ) from None
        for index, entry in zip(indices, read, strict=True):
            if entry is None:
                raise LogProblem(f"tenant {tenant}: audit entry {index} of {size} is missing")
            compact, _ = compact.append(leaf_hash(entry))
            if compact.size in wanted:
                roots[compact.size] = compact.root()
    return LogSummary(size, compact.root().hex()), roots


@dataclass(frozen=True, slots=True)
class CheckedLog:
    """A log that verifies: its summary, and its stored head's size (-1 without one)."""

    summary: LogSummary
    head_size: int


async def check_log(
    store: AuditStore,
    tenant: str,
    public_key: Ed25519PublicKey,
    extra_sizes: dict[int, bytes],
    *,
    tiles: Path | None = None,
) -> CheckedLog:
    """Replays a log and checks the stored tree, the stored signed head and ``extra_sizes``.

    Args:
        store: the snapshot's audit store.
        tenant: whose log.
        public_key: the backup's signing key (its public half).
        extra_sizes: more (size, root) the log must reach and agree with (published heads).
        tiles: the backup's audit tiles, which hold a trimmed log's older entries.

    Raises:
        LogProblem: naming the first disagreement.
        StoreUnavailable: when Redis cannot be reached.
    """
    state = await store.tree_state(tenant)
    head = _stored_head(tenant, state.last_head)
    sizes = {state.size, *extra_sizes, *([head.head.size] if head else [])}
    summary, roots = await replay(store, tenant, sizes, tiles=tiles)
    for size, expected in sorted(extra_sizes.items()):
        if size > summary.size:
            raise LogProblem(
                f"tenant {tenant}: the log has {summary.size} entries, behind a published head of size {size}"
            )
        if roots[size] != expected:
            raise LogProblem(f"tenant {tenant}: the log does not extend the published head of size {size}")
    if state.size > summary.size or roots.get(state.size) != state.root:
        raise LogProblem(
            f"tenant {tenant}: the stored tree of {state.size} entries does not match the entries"
        )
    if head is None:
        return CheckedLog(summary, -1)
    if head.head.size > summary.size or roots[head.head.size] != head.head.root_hash:
        raise LogProblem(
            f"tenant {tenant}: the stored head of size {head.head.size} does not match the entries"
        )
    # A head signed before a key rotation verifies under the old key only; its root was checked.
    if head.key_id == key_id_for(public_key):
        try:
            verify_signed_head(head, public_key)
        except SignatureError as error:
            raise LogProblem(f"tenant {tenant}: the stored head does not verify ({error})") from None
    return CheckedLog(summary, head.head.size)


def _stored_head(tenant: str, stored: StoredHead | None) -> SignedHead | None:
    if stored is None:
        return None
    try:
        return SignedHead(parse_checkpoint(stored.checkpoint), stored.key_id, stored.signature)
    except CheckpointError as error:
        raise LogProblem(f"tenant {tenant}: the stored signed head is malformed ({error})") from None

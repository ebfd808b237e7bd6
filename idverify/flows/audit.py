"""What an auditor may ask of a tenant's log: signed heads, proofs, single events and queries.

Requests are checked here, once, with precise errors: a tenant other than the caller's own
(PERMISSION_DENIED unless an admin asks), a tenant without a log (NOT_FOUND), a request that
contradicts itself (INVALID_ARGUMENT: index >= tree size, first > second, a size of 0, a
reversed time range) and a position the log has not reached yet (OUT_OF_RANGE: the same
request may succeed later). A proof costs one round trip, reading its O(log n) nodes, when the
tree is known to have reached its size (stored nodes never change, so that knowledge keeps), and
two otherwise: the tree head first.

The flow reads the log through :class:`AuditLog`, the port declared here, in typed values;
``store.audit_logs.RedisAuditLog`` implements it over ``store.audit_store`` and the integrator.
``flows.audit_setup`` builds a server's flow from its settings and keeps its trees integrated.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from idverify.audit.checkpoint import (
    CheckpointError,
    SignatureError,
    SignedHead,
    TreeHead,
    TreeHeadSigner,
    parse_checkpoint,
    public_key_pem,
    verify_signed_head,
)
from idverify.audit.events import AuditEvent
from idverify.audit.merkle import NodeId, consistency_plan, inclusion_plan
from idverify.audit.pending import PendingReadLimit, PendingStages, not_in_log_part, staged_snapshot
from idverify.audit.query import EventFilter, QueryResult, StagedAt, decoded_entry
from idverify.audit.rollback import Rollback, RollbackGuard
from idverify.audit.sequencer import StagedPosition, is_stream_id
from idverify.audit.tree_state import StoredHead, TreeState
from idverify.domain.errors import InvalidArgument, NotFound, OutOfRange, StoreUnavailable
from idverify.domain.normalize import normalize_identifier
from idverify.domain.tenants import valid_tenant
from idverify.privacy.keyring import Keyring
from idverify.security.principals import Principal, tenant_for

__all__ = ["AuditFlow", "AuditLog", "InclusionProof", "QueryRequest", "origin_of"]

# A head is re-signed when the tree grew, or when the one at hand is older than this, so that
# an idle log still shows a fresh timestamp.
HEAD_MAX_AGE_MS = 60_000
# Rounds of read-sign-store before giving up: a round is lost only to a replica that stored a
# head meanwhile, which the next round then hands out, so a second round nearly always ends it.
_HEAD_ATTEMPTS = 8
MAX_FILTER_VALUES = 64
_MAX_FILTER_TEXT = 64


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """An audit path and the leaf hash it starts from."""

    hashes: list[bytes]
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """A QueryEvents call, as received (not yet validated); times in ms, None when unset."""

    start_ms: int | None = None
    end_ms: int | None = None
    types: Sequence[str] = ()
    outcomes: Sequence[str] = ()
    method: str = ""
    account_id: str = ""
    start_index: int = 0
    limit: int = 0
    include_pending: bool = False
    pending_after: StagedAt | None = None


class AuditLog(Protocol):
    """The tenants' audit logs as stored, and their trees; every method may raise StoreUnavailable."""

    async def exists(self, tenant: str) -> bool:
        """Whether the tenant's log has any entry."""
        ...

    async def size(self, tenant: str) -> int:
        """Entries in the log, integrated or not."""
        ...

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The stored bytes of entries, in order; None where there is no such entry."""
        ...

    async def tree_state(self, tenant: str) -> TreeState:
        """The integrated tree, with the last signed head stored."""
        ...

    async def read_nodes(self, tenant: str, nodes: Sequence[NodeId]) -> list[bytes | None]:
        """Stored node hashes; None for a node not stored (yet)."""
        ...

    async def replace_signed_head(self, tenant: str, previous: StoredHead | None, signed: StoredHead) -> bool:
        """Stores a newly signed head if the stored one is still ``previous``; False otherwise.

        Raises:
            StoreUnavailable: as every method.
        """
        ...

    async def integrate(self, tenant: str, *, up_to: int | None = None) -> TreeState:
        """Folds appended entries into the tree (all, or at least ``up_to``); the state after.

        Raises:
            LogCorrupted: when entries are missing from the store.
        """
        ...

    def query(self, tenant: str, query: EventFilter) -> AsyncIterator[QueryResult]:
        """The entries matching ``query``, in index order."""
        ...


def origin_of(tenant: str) -> str:
    """The checkpoint origin line of a tenant's log."""
    return f"idverify/{tenant}"


class AuditFlow:
    """Audit reads for every tenant."""

    def __init__(
        self,
        store: AuditLog,
        signer: TreeHeadSigner,
        keyring: Keyring,
        *,
        configured_tenants: Collection[str] = (),
        guard: RollbackGuard | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        stages: PendingStages | None = None,
        stage_buckets: int = 0,
    ) -> None:
        self._store = store
        # The tenants' stage streams (audit_stage_buckets), for pending entries; none when 0.
        self._stages = stages if stage_buckets else None
        self._stage_buckets = stage_buckets
        self._signer = signer
        self._keyring = keyring
        self._configured = frozenset(configured_tenants)
        self._known = set(self._configured)
        self._clock_ms = clock_ms
        self._guard = guard
        self._heads: dict[str, SignedHead] = {}
        # The largest tree size seen stored per tenant: proofs up to it need not read the head.
        self._reached_sizes: dict[str, int] = {}

    @property
    def public_key_pem(self) -> str:
        """The PEM of the key that verifies this service's tree heads."""
        return public_key_pem(self._signer.public_key).decode("ascii")

    async def tenant(self, principal: Principal, requested: str) -> str:
        """The tenant a call reads: the caller's own, or the one an admin names.

        Raises:
            PermissionDenied: when a non-admin names another tenant.
            InvalidArgument: when the named tenant is not a valid tenant name.
            NotFound: when the tenant has no log.
        """
        tenant = tenant_for(principal, requested)
        if not valid_tenant(tenant):
            raise InvalidArgument("not a tenant name", reason="BAD_TENANT", field="tenant")
        if tenant not in self._known:
            if not await self._store.exists(tenant):
                raise NotFound("no such tenant", reason="UNKNOWN_TENANT", field="tenant")
            self._known.add(tenant)  # a log is never deleted: one look is enough
        return tenant

    @property
    def configured_tenants(self) -> frozenset[str]:
        """Tenants known from configuration, with or without a log yet."""
        return self._configured

    async def signed_head(self, tenant: str) -> SignedHead:
        """A signed head of everything appended so far (integrated first).

        Every worker and replica hands out the head stored last while it is fresh, and signs a
        new one only of at least its size and no earlier than its time (``max(now, its
        time)``), stored with a check-and-set: a caller switching between them never sees a head
        go back in size or time, whatever their clocks say.

        Raises:
            StoreUnavailable: when Redis cannot be reached, or other replicas kept storing heads
                first (the caller may simply ask again).
            LogCorrupted: when entries are missing from the store.
            FailedPrecondition: ``AUDIT_LOG_ROLLED_BACK`` when the log is behind a head it
                published before (``idverify.audit.rollback``), until that is acknowledged.
            OSError: when the published head cannot be recorded (none is handed out then).
        """
        for _ in range(_HEAD_ATTEMPTS):
            state = await self._store.integrate(tenant)
            if self._guard is not None:
                await self._guard.require(tenant, state)
            last = self._trusted_head(tenant, state.last_head)
            now = self._clock_ms()
            if last is not None and (
                last.head.size > state.size
                or (last.head.size == state.size and now - last.head.timestamp_ms < HEAD_MAX_AGE_MS)
            ):
                await self._publish(tenant, last)
                return last
            floor_ms = last.head.timestamp_ms if last is not None else 0
            head = TreeHead(origin_of(tenant), state.size, state.root, max(now, floor_ms))
            signed = self._signer.sign(head)
            stored = StoredHead(signed.checkpoint, signed.key_id, signed.signature)
            if await self._store.replace_signed_head(tenant, state.last_head, stored):
                self._heads[tenant] = signed
                await self._publish(tenant, signed)
                return signed
            # Another replica stored a head since the read: it is the one to hand out, or to pass.
        raise StoreUnavailable("other replicas kept signing tree heads first; ask again")

    async def _publish(self, tenant: str, signed: SignedHead) -> None:
        if self._guard is not None:
            await self._guard.publish(tenant, signed)

    async def find_rollbacks(self) -> list[Rollback]:
        """The logs behind the head they published (each recorded in the heads file and logged).

        Run at start, before anything is appended: a log found behind then says exactly where
        its loss begins.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
            HeadsFileError, OSError: when the heads file cannot be read or written.
        """
        return [] if self._guard is None else await self._guard.find_all()

    def _trusted_head(self, tenant: str, stored: StoredHead | None) -> SignedHead | None:
        """The stored head when it is this log's and verifies under this service's key, else None.

        A head this process signed or checked before is not checked again (an Ed25519
        verification costs more than the rest of a head request).
        """
        if stored is None:
            return None
        known = self._heads.get(tenant)
        if (
            known is not None
            and known.checkpoint == stored.checkpoint
            and known.signature == stored.signature
        ):
            return known
        try:
            signed = SignedHead(parse_checkpoint(stored.checkpoint), stored.key_id, stored.signature)
            verify_signed_head(signed, self._signer.public_key)
        except (CheckpointError, SignatureError):
            # Signed under a previous key (a key change), or not a head at all: sign afresh, from
            # this clock. An unverified time is no floor: a far-future one would stop the log.
            return None
        if signed.head.origin != origin_of(tenant):
            return None
        self._heads[tenant] = signed
        return signed

    async def inclusion_proof(self, tenant: str, index: int, tree_size: int) -> InclusionProof:
        """The proof that entry ``index`` is in the tree of ``tree_size`` entries.

        Raises:
            InvalidArgument: when ``index >= tree_size``.
            OutOfRange: when the log has not reached ``tree_size``.
            StoreUnavailable: when Redis cannot be reached.
        """
        if index >= tree_size:
            raise InvalidArgument(
                f"index {index} is not in a tree of {tree_size} entries",
                reason="INDEX_NOT_IN_TREE",
                field="index",
            )
        plan = inclusion_plan(index, tree_size)
        hashes = await self._read_proof_nodes(tenant, tree_size, "tree_size", [*plan.nodes, NodeId(0, index)])
        leaf = hashes[-1]
        if leaf is None:
            raise ValueError(f"leaf {index} is missing from the stored tree of {tenant}")
        return InclusionProof(plan.assemble(hashes[:-1]), leaf)

    async def consistency_proof(self, tenant: str, first: int, second: int) -> list[bytes]:
        """The proof that the tree of ``second`` entries extends the tree of ``first``.

        Raises:
            InvalidArgument: when ``first`` is 0 or ``first > second``.
            OutOfRange: when the log has not reached ``second``.
            StoreUnavailable: when Redis cannot be reached.
        """
        if first > second:
            raise InvalidArgument(
                f"first ({first}) is after second ({second})", reason="FIRST_AFTER_SECOND", field="first"
            )
        if first == 0:
            # Every tree extends the empty one: there is nothing to prove (RFC 6962 2.1.2).
            raise InvalidArgument("first must be at least 1", reason="EMPTY_TREE", field="first")
        plan = consistency_plan(first, second)
        return plan.assemble(await self._read_proof_nodes(tenant, second, "second", plan.nodes))

    async def event(self, tenant: str, index: int) -> tuple[AuditEvent, bytes]:
        """One entry, decoded, with its stored bytes.

        Raises:
            OutOfRange: when the log has no entry ``index`` yet.
            StoreUnavailable: when Redis cannot be reached.
            EntryDamaged: when the stored entry is missing or does not decode (the store was altered).
        """
        size = await self._store.size(tenant)
        if index >= size:
            raise OutOfRange(f"the log has {size} entries", reason="INDEX_NOT_REACHED", field="index")
        (leaf,) = await self._store.entries(tenant, [index])
        return decoded_entry(index, leaf)

    def query(self, tenant: str, request: QueryRequest) -> AsyncIterator[QueryResult]:
        """The matching entries, in index order, read a page at a time.

        With ``include_pending``, when no limit cut the log's entries short, the matching
        entries staged in the tenant's buckets and not in the log follow (``audit.pending``),
        those after ``pending_after`` when given; a server that stages nowhere has none.

        Raises:
            InvalidArgument: on a reversed time range, oversized or malformed filters, or a
                ``pending_after`` without ``include_pending``, in no bucket this server stages
                in or with a malformed stream id.
            PendingReadLimit: "PENDING_READ_LIMIT" after the entries, when the pending part read
                its bound of staged records and more are staged (where to go on: its metadata).
        """
        query = self._filter(tenant, request)
        after = request.pending_after
        if after is not None:
            if not request.include_pending:
                raise InvalidArgument(
                    "pending_after walks on through the pending entries: set include_pending too",
                    reason="PENDING_AFTER_WITHOUT_PENDING",
                    field="pending_after",
                )
            self._check_position(after.bucket, after.stream_id, in_pending_after=True)
        if request.include_pending and self._stages is not None:
            return self._with_pending(self._stages, tenant, query, after)
        return self._store.query(tenant, query)

    async def _with_pending(
        self, stages: PendingStages, tenant: str, query: EventFilter, after: StagedAt | None
    ) -> AsyncIterator[QueryResult]:
        # The stages first, then the size that ends the log part: an entry sequenced in between
        # is in the log part, and the pending part leaves it out by its receipt.
        staged = await staged_snapshot(stages, tenant, self._stage_buckets, query, after)
        size = await self._store.size(tenant)
        sent = 0
        async for found in self._store.query(tenant, dataclasses.replace(query, end_index=size)):
            yield found
            sent += 1
        if query.limit and sent >= query.limit:
            return
        async for entry in not_in_log_part(stages, tenant, staged.found, size):
            yield QueryResult(entry.event, b"", None, pending=entry.at)
            sent += 1
            if query.limit and sent >= query.limit:
                return
        if staged.cut_after is not None:
            # The log part ended at the size: what was numbered since is in the next query's.
            raise PendingReadLimit(max(query.start_index, size), staged.cut_after)

    async def staged_entry(self, tenant: str, bucket: int, stream_id: str) -> StagedPosition:
        """Where the entry staged at ``stream_id`` in the tenant's ``bucket`` stands.

        Raises:
            InvalidArgument: a bucket this server does not stage in, or a stream id that is not
                ``<ms>-<seq>`` (two decimals of at most 64 bits, without leading zeros).
            StoreUnavailable: when Redis cannot be reached.
        """
        stages = self._check_position(bucket, stream_id)
        return await stages.position(tenant, bucket, stream_id)

    def _check_position(
        self, bucket: int, stream_id: str, *, in_pending_after: bool = False
    ) -> PendingStages:
        """The stages, once ``bucket`` and ``stream_id`` are known to name a staged position.

        ``in_pending_after``: the position is a query's ``pending_after`` (the field named), not
        GetStagedEntry's own.

        Raises:
            InvalidArgument: a bucket this server does not stage in, or a malformed stream id.
        """
        if not 0 <= bucket < self._stage_buckets or self._stages is None:
            raise InvalidArgument(
                f"this server stages audit entries in {self._stage_buckets} buckets (0 to "
                "audit_stage_buckets - 1)",
                reason="BAD_BUCKET",
                field="pending_after.bucket" if in_pending_after else "bucket",
            )
        # As Redis writes one: no stored id has a leading zero, and Redis would read '01-0' as
        # 1-0, answering for a position the caller did not name.
        if not is_stream_id(stream_id):
            raise InvalidArgument(
                "a stream id is <ms>-<seq>, two decimals of at most 64 bits without leading zeros",
                reason="BAD_STREAM_ID",
                field="pending_after.stream_id" if in_pending_after else "stream_id",
            )
        return self._stages

    def entries(self, tenant: str, query: EventFilter) -> AsyncIterator[QueryResult]:
        """The entries matching a filter the caller built (no request to check), in index order."""
        return self._store.query(tenant, query)

    def _filter(self, tenant: str, request: QueryRequest) -> EventFilter:
        start, end = request.start_ms, request.end_ms
        for value, name in ((start, "start_time"), (end, "end_time")):
            if value is not None and value < 0:
                raise InvalidArgument(
                    "times before 1970 are not in any log", reason="NEGATIVE_TIME", field=name
                )
        if start is not None and end is not None and start > end:
            raise InvalidArgument("start_time is after end_time", reason="REVERSED_RANGE", field="start_time")
        for values, name in ((request.types, "event_types"), (request.outcomes, "outcomes")):
            if len(values) > MAX_FILTER_VALUES:
                raise InvalidArgument(f"at most {MAX_FILTER_VALUES} values", reason="TOO_MANY", field=name)
            _check_texts(values, name)
        _check_texts([request.method] if request.method else [], "method_id", indexed=False)
        accounts: tuple[str, ...] = ()
        if request.account_id:
            account_id = normalize_identifier(request.account_id, field="account_id")
            # An entry carries the pseudonym of the pepper current when it was written.
            accounts = tuple(
                self._keyring.pseudonym(tenant, "audit", account_id, pepper_version=version)
                for version in self._keyring.pepper_versions
            )
        return EventFilter(
            start_ms=start,
            end_ms=end,
            types=frozenset(request.types),
            outcomes=frozenset(request.outcomes),
            method=request.method,
            accounts=accounts,
            start_index=request.start_index,
            limit=request.limit,
        )

    async def integrate(self, tenant: str) -> TreeState:
        """Brings the tenant's tree up to date (the background task's unit of work).

        Raises:
            StoreUnavailable: when Redis cannot be reached.
            LogCorrupted: when entries are missing from the store.
        """
        return await self._store.integrate(tenant)

    async def _read_proof_nodes(
        self, tenant: str, size: int, field: str, nodes: Sequence[NodeId]
    ) -> list[bytes | None]:
        """The nodes of a proof for a tree of ``size``, once the stored tree has reached it.

        Raises:
            OutOfRange: when the log has not reached ``size``.
        """
        if size <= self._reached_sizes.get(tenant, 0):
            hashes = await self._store.read_nodes(tenant, nodes)
            if all(value is not None for value in hashes):
                return hashes
            # The store lost nodes it had (a restore, a failover): ask it afresh.
            self._reached_sizes.pop(tenant, None)
        state = await self._store.tree_state(tenant)
        if size > state.size:
            state = await self._store.integrate(tenant, up_to=size)
        if size > state.size:
            raise OutOfRange(f"the log has {state.size} entries", reason="TREE_SIZE_NOT_REACHED", field=field)
        self._reached_sizes[tenant] = state.size
        return await self._store.read_nodes(tenant, nodes)


def _check_texts(values: Sequence[str], field: str, *, indexed: bool = True) -> None:
    for index, value in enumerate(values):
        if not value or len(value) > _MAX_FILTER_TEXT or not value.isprintable():
            raise InvalidArgument(
                f"each value: 1-{_MAX_FILTER_TEXT} printable characters",
                reason="BAD_FILTER",
                field=f"{field}[{index}]" if indexed else field,
            )

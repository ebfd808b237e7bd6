"""AuditService: the tenant's log, its signed heads and its proofs, for auditors and admins.

Times cross the wire as whole milliseconds, exactly: a head's timestamp is the number its
signature covers, so ``Timestamp`` <-> milliseconds must not round.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp

from idverify.audit.checkpoint import SignedHead
from idverify.audit.events import AuditEvent
from idverify.audit.pending import PendingReadLimit
from idverify.audit.query import QueryResult, StagedAt
from idverify.audit.sequencer import PositionState
from idverify.flows.audit import AuditFlow, QueryRequest
from idverify.flows.read_accounting import Category, Reader, ReadLedger
from idverify.security.principals import Principal, caller
from idverify.services.convert import timestamp_ms
from idverify.services.grpc_types import Context
from idverify.v1 import audit_pb2 as pb
from idverify.v1 import audit_pb2_grpc

_NANOS_PER_MS = 1_000_000
_AUDIT = (Category.AUDIT,)
_STAGED_STATES = {
    PositionState.PENDING: pb.STAGED_STATE_PENDING,
    PositionState.SEQUENCED: pb.STAGED_STATE_SEQUENCED,
    PositionState.REFUSED: pb.STAGED_STATE_REFUSED,
    PositionState.UNKNOWN: pb.STAGED_STATE_UNKNOWN,
}


def ms_from_timestamp(stamp: Timestamp) -> int:
    """Milliseconds of a Timestamp, rounded up.

    An entry at millisecond ``m`` is at or after ``stamp`` exactly when ``m >= result``.
    """
    return stamp.seconds * 1000 + -(-stamp.nanos // _NANOS_PER_MS)


def event_to_proto(event: AuditEvent) -> pb.AuditEvent:
    """The wire form of an entry."""
    return pb.AuditEvent(
        index=event.index,
        time=timestamp_ms(event.time_ms),
        type=event.type,
        verification_id=event.verification_id,
        account_pseudonym=event.account,
        method_id=event.method,
        outcome=event.outcome,
        reason_code=event.reason,
        steps=[
            pb.StepOutcome(verifier=s.verifier, outcome=s.outcome, reason_code=s.reason) for s in event.steps
        ],
        principal=event.principal,
        request_id=event.request_id,
        trace_id=event.trace_id,
        attributes=dict(event.attributes),
    )


def result_to_proto(found: QueryResult) -> pb.QueryEventsResponse:
    """The wire form of a query's entry: an entry of the log, or one still staged (``pending``)."""
    response = pb.QueryEventsResponse(
        event=event_to_proto(found.event), leaf=found.leaf, leaf_hash=found.stored_leaf_hash or b""
    )
    if found.pending is not None:
        response.pending.bucket = found.pending.bucket
        response.pending.stream_id = found.pending.stream_id
    return response


def head_to_proto(signed: SignedHead) -> pb.SignedTreeHead:
    """The wire form of a signed head."""
    return pb.SignedTreeHead(
        tree_size=signed.head.size,
        root_hash=signed.head.root_hash,
        timestamp=timestamp_ms(signed.head.timestamp_ms),
        key_id=signed.key_id,
        signature=signed.signature,
        origin=signed.head.origin,
    )


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    """Audit RPCs for the auditor and admin roles."""

    def __init__(self, flow: AuditFlow, reads: ReadLedger) -> None:
        self._flow = flow
        self._reads = reads

    async def _record_query(self, principal: Principal, tenant: str, account_id: str) -> None:
        """Records a query.

        Its accounts are known only when it named one: entries carry audit pseudonyms, which (by
        design) lead back to no account pseudonym.
        """
        reader = Reader.of(principal, "QueryEvents")
        if account_id:
            await self._reads.record(tenant, reader, _AUDIT, [account_id])
        else:
            await self._reads.record_call(tenant, reader, _AUDIT)

    async def QueryEvents(
        self, request: pb.QueryEventsRequest, context: Context
    ) -> AsyncIterator[pb.QueryEventsResponse]:
        """Streams the matching events with their leaf bytes, in index order."""
        del context
        principal = caller()
        tenant = await self._flow.tenant(principal, request.tenant)
        query = QueryRequest(
            start_ms=ms_from_timestamp(request.start_time) if request.HasField("start_time") else None,
            end_ms=ms_from_timestamp(request.end_time) if request.HasField("end_time") else None,
            types=list(request.event_types),
            outcomes=list(request.outcomes),
            method=request.method_id,
            account_id=request.account_id,
            start_index=request.start_index,
            limit=request.limit,
            include_pending=request.include_pending,
            pending_after=(
                StagedAt(request.pending_after.bucket, request.pending_after.stream_id)
                if request.HasField("pending_after")
                else None
            ),
        )
        # Recorded before the first entry goes out: a caller that cancels the stream part-way
        # has its read recorded all the same.
        recorded = False
        try:
            async for found in self._flow.query(tenant, query):
                if not recorded:
                    await self._record_query(principal, tenant, request.account_id)
                    recorded = True
                yield result_to_proto(found)
        except PendingReadLimit:
            # A read that answered, if with nothing yet: its caller goes on from where it stopped.
            if not recorded:
                await self._record_query(principal, tenant, request.account_id)
            raise
        if not recorded:
            await self._record_query(principal, tenant, request.account_id)

    async def GetEvent(self, request: pb.GetEventRequest, context: Context) -> pb.GetEventResponse:
        """One entry and its exact bytes."""
        del context
        principal = caller()
        tenant = await self._flow.tenant(principal, request.tenant)
        event, leaf = await self._flow.event(tenant, request.index)
        await self._reads.record_call(tenant, Reader.of(principal, "GetEvent"), _AUDIT)
        return pb.GetEventResponse(event=event_to_proto(event), leaf=leaf)

    async def GetTreeHead(self, request: pb.GetTreeHeadRequest, context: Context) -> pb.GetTreeHeadResponse:
        """A signed head of the whole log, and the key that verifies it."""
        del context
        principal = caller()
        tenant = await self._flow.tenant(principal, request.tenant)
        signed = await self._flow.signed_head(tenant)
        await self._reads.record_call(tenant, Reader.of(principal, "GetTreeHead"), _AUDIT)
        return pb.GetTreeHeadResponse(head=head_to_proto(signed), public_key=self._flow.public_key_pem)

    async def GetInclusionProof(
        self, request: pb.GetInclusionProofRequest, context: Context
    ) -> pb.GetInclusionProofResponse:
        """The RFC 6962 audit path of one entry in a tree of a given size."""
        del context
        principal = caller()
        tenant = await self._flow.tenant(principal, request.tenant)
        proof = await self._flow.inclusion_proof(tenant, request.index, request.tree_size)
        await self._reads.record_call(tenant, Reader.of(principal, "GetInclusionProof"), _AUDIT)
        return pb.GetInclusionProofResponse(hashes=proof.hashes, leaf_hash=proof.leaf_hash)

    async def GetConsistencyProof(
        self, request: pb.GetConsistencyProofRequest, context: Context
    ) -> pb.GetConsistencyProofResponse:
        """The RFC 6962 proof that a larger tree extends a smaller one."""
        del context
        principal = caller()
        tenant = await self._flow.tenant(principal, request.tenant)
        hashes = await self._flow.consistency_proof(tenant, request.first, request.second)
        await self._reads.record_call(tenant, Reader.of(principal, "GetConsistencyProof"), _AUDIT)
        return pb.GetConsistencyProofResponse(hashes=hashes)

    async def GetStagedEntry(
        self, request: pb.GetStagedEntryRequest, context: Context
    ) -> pb.GetStagedEntryResponse:
        """Where an entry staged in one of the tenant's buckets stands, and its number once known."""
        del context
        principal = caller()
        tenant = await self._flow.tenant(principal, request.tenant)
        position = await self._flow.staged_entry(tenant, request.bucket, request.stream_id)
        await self._reads.record_call(tenant, Reader.of(principal, "GetStagedEntry"), _AUDIT)
        response = pb.GetStagedEntryResponse(state=_STAGED_STATES[position.state])
        if position.index is not None:
            response.index = position.index
        return response

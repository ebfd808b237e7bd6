"""EventService: a tenant's events from a cursor, for registrars, platforms and admins."""

from __future__ import annotations

from collections.abc import AsyncIterator

from idverify.events.outbox import Event
from idverify.events.streams import EventStreams
from idverify.flows.read_accounting import Category, Reader, ReadLedger
from idverify.security.principals import caller
from idverify.services.convert import timestamp_ms
from idverify.services.grpc_types import Context
from idverify.v1 import events_pb2 as pb
from idverify.v1 import events_pb2_grpc


def event_to_proto(event: Event) -> pb.Event:
    """The wire form of an event."""
    return pb.Event(
        cursor=event.cursor,
        type=event.type,
        time=timestamp_ms(event.time_ms),
        audit_index=event.audit_index,
        verification_id=event.verification_id,
        account_id=event.account_id,
        method_id=event.method,
        outcome=event.outcome,
        reason_code=event.reason,
        attributes=dict(event.attributes),
    )


# Events tell verification outcomes, bindings and consents: reads of those categories.
_READ: tuple[Category, ...] = (Category.VERIFICATION, Category.CONSENT)


class EventServicer(events_pb2_grpc.EventServiceServicer):
    """Streams of events."""

    def __init__(self, streams: EventStreams, reads: ReadLedger) -> None:
        self._streams = streams
        self._reads = reads

    async def StreamEvents(
        self, request: pb.StreamEventsRequest, context: Context
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        """The caller's tenant's events after ``after``, then as they happen."""
        del context
        principal = caller()
        reader = Reader.of(principal, "StreamEvents")

        async def record(batch: list[Event]) -> None:
            named = sorted({event.account_id for event in batch if event.account_id})
            await self._reads.record(principal.tenant, reader, _READ, named, only_existing=False)

        events = self._streams.events(
            principal,
            list(request.types),
            request.after,
            until_caught_up=request.until_caught_up,
            on_batch=record,
        )
        async for event in events:
            yield pb.StreamEventsResponse(event=event_to_proto(event))

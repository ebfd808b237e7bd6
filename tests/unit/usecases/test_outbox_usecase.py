"""The Outbox over an in-memory OutboxStore: records as events, filters, kept cursors; no Redis or gRPC.

Each test shows one decision of ``events.outbox``: what an event holds (its entry's fields, the
account's id only when it opens for the entry's account), which records are skipped (an entry
gone or unreadable, another type), where a reader goes on from, and which cursors are refused
once their successors were trimmed. ``tests/unit/events/test_outbox.py`` runs it over Redis with
records the service's scripts write.
"""

from __future__ import annotations

import json

import pytest

from idverify.domain.errors import OutOfRange
from idverify.events.accounts import event_account_fields
from idverify.events.outbox import Outbox, trim_forever
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.testing.memory_outbox import MemoryOutbox

KEYRING = Keyring.generate()
SEALER = Sealer(KEYRING)


def entry(seq: int, kind: str, account: str = "", **attributes: str) -> bytes:
    """An audit entry as stored: its fields in their order, version 1."""
    fields = {
        "v": 1,
        "seq": seq,
        "time_ms": 1_000 + seq,
        "type": kind,
        "verification_id": f"v{seq}",
        "account": account,
        "method": "sms",
        "outcome": "ok",
        "reason": "",
        "steps": [],
        "principal": "acme/registrar/r1",
        "request_id": "",
        "trace_id": "t" * 32,
        "attributes": attributes,
    }
    return json.dumps(fields).encode()


async def test_an_event_holds_its_entry_and_the_account_id_sealed_for_it() -> None:
    store = MemoryOutbox()
    fields = event_account_fields(KEYRING, SEALER, "acme", "user-7")
    audit_ps = fields["account"]
    cursor = store.append(
        "acme",
        entry(0, "account.bound", audit_ps, event_account="x", tier="gold"),
        fields["event_account"],
        "span-1",
    )
    [event], read_to = await Outbox(store, SEALER).read("acme", "", 10)
    assert read_to == cursor
    assert (event.cursor, event.type, event.audit_index, event.time_ms) == (cursor, "account.bound", 0, 1_000)
    assert (event.account_id, event.verification_id, event.method, event.outcome) == (
        "user-7",
        "v0",
        "sms",
        "ok",
    )
    assert dict(event.attributes) == {"tier": "gold"}  # the request's own attributes stay out
    assert (event.trace_id, event.span_context, event.order_key) == ("t" * 32, "span-1", audit_ps)
    # A sealed id for another account's entry does not open: the event names no account.
    store.append("acme", entry(1, "account.bound", "another-ps"), fields["event_account"])
    _, other = (await Outbox(store, SEALER).read("acme", "", 10))[0]
    assert (other.account_id, other.order_key) == ("", "another-ps")


async def test_unreadable_and_unwanted_records_are_skipped_but_read_past() -> None:
    store = MemoryOutbox()
    store.append("acme", entry(0, "challenge.sent"))
    store.append("acme", None)  # gone with its log
    store.append("acme", b"not an entry")
    last = store.append("acme", entry(3, "verification.verified"))
    outbox = Outbox(store, SEALER)
    events, read_to = await outbox.read("acme", "", 10)
    assert [e.type for e in events] == ["challenge.sent", "verification.verified"]
    assert read_to == last
    events, read_to = await outbox.read("acme", "", 3, frozenset({"verification.verified"}))
    assert events == []
    assert read_to != ""  # a filter that matches nothing still moves on
    assert await outbox.read("acme", last, 10) == ([], last)
    assert await outbox.last_cursor("acme") == last


async def test_a_cursor_below_the_newest_trimmed_is_refused() -> None:
    store = MemoryOutbox()
    old = [store.append("acme", entry(n, "challenge.sent")) for n in range(2)]
    store.advance(10)
    outbox = Outbox(store, SEALER)
    await outbox.check_kept("acme", old[0])  # nothing trimmed yet
    assert await store.trim("acme", 0) == 2
    with pytest.raises(OutOfRange) as gone:
        await outbox.check_kept("acme", old[0])
    assert gone.value.reason == "CURSOR_EXPIRED"
    assert "the oldest kept is none" in str(gone.value)
    await outbox.check_kept("acme", old[1])  # after the newest trimmed, nothing is missing
    await outbox.check_kept("acme", "")


class _Stop(BaseException):
    """Ends the trimming loop, which outlives every Exception."""


async def test_trimming_goes_on_past_an_unreachable_store() -> None:
    store = MemoryOutbox()
    store.append("acme", entry(0, "challenge.sent"))
    store.advance(10)
    rounds = 0

    async def tenants() -> list[str]:
        nonlocal rounds
        rounds += 1
        store.down = rounds == 1  # the first round finds the store down
        if rounds == 3:
            raise _Stop  # ends the loop for the test
        return ["acme"]

    with pytest.raises(_Stop):
        await trim_forever(store, tenants, retention_days=0, interval_seconds=0)
    assert await store.records("acme", "", 10) == []

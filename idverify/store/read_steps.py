"""A read's accounting as a step of its own, after the read (docs/ARCHITECTURE.md, §3.5).

GetVerification (``get``), GetIpLocations (``ip_labels``) and a read recorded apart (``reads``)
read records in the accounts' buckets and record the read (``record_reads``) in the tenant's
slot. On one node each stays the one script it was (``get.lua``, its read now
``get_verification.lua``'s body composed into it; ``ip_labels.lua``; ``reads.lua``). Step by
step (a Cluster) the records are read first, and ``reads_record.lua`` is then given what was
read: this module builds that step and reads its answer; each store keeps its own reads.

Between the two steps an account may be erased: its erasure's follow-up (``erase_minutes.lua``)
names it in ``readmin:erased`` for :data:`ERASED_KEEP_MS`, and the accounting leaves it out. An
accounting later than :data:`READ_LATE_MS` after its read answers ``LATE`` instead, since such a
name may be gone by then, and the read is refused (:class:`StoreUnavailable`): its data is
never returned unrecorded for that reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from idverify.domain.errors import StoreUnavailable
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import as_text
from idverify.store.keys import TenantKeys
from idverify.store.scripts import ChainStep

__all__ = ["ERASED_KEEP_MS", "READ_LATE_MS", "record_read", "records"]

READ_LATE_MS = 30_000
"""How long after its read (the store time before it) a read's accounting may still run."""

ERASED_KEEP_MS = 60_000
"""How long an erasure names its account in ``readmin:erased`` for the accountings in flight.

Twice :data:`READ_LATE_MS`: an accounting on time always finds the name of an account erased
after its read. The read's time is its own process's store clock, and the accounting's ``NOW``
is never below that clock's floor, so the limit holds whatever the nodes' clocks say; the
erasure's name is timed by another process's, which agree to well within the half left over.
"""


def records(spec: Sequence[str] | None) -> bool:
    """Whether a read spec records anything (not none, nor a read the service makes itself)."""
    return spec is not None and len(spec) > 0 and spec[0] != ""


async def record_read(
    runner: StepRunner,
    sequence: str,
    done: int,
    keys: TenantKeys,
    spec: Sequence[str],
    *,
    read_ms: int,
    accounts: Sequence[str],
    identities: Sequence[str],
    leave_out_erased: bool = True,
) -> int:
    """Runs ``reads_record.lua`` for a read that found ``accounts``; the number of accounts counted.

    ``identities``: each account's identity ref ('' for an unbound one). ``read_ms``: the
    reading process's store time before the read (``Scripts.clock.now_ms``).

    ``leave_out_erased``: leave out an account erased since the read (False when the caller
    vouches that data was returned whatever the account's record, as ``reads`` with
    ``only_existing`` off). ``done``: the steps of the sequence run so far, this one included.

    Raises:
        StoreUnavailable: Redis could not be reached, or the accounting came too late.
    """
    step = ChainStep(
        "reads_record",
        [keys.reads_open(), keys.reads_erased()],
        [
            *spec,
            str(read_ms + READ_LATE_MS),
            "1" if leave_out_erased else "0",
            str(len(accounts)),
            *accounts,
            *identities,
        ],
    )
    reply = await runner.run_one(sequence, step, done)
    if as_text(reply[0]) == "LATE":
        msg = f"{sequence}: the read's accounting came later than {READ_LATE_MS} ms after it"
        raise StoreUnavailable(msg)
    return int(reply[1])

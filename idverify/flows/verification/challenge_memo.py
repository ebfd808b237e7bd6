"""A worker's memory of the code challenges it started, so that their answers need not read them.

An answer needs its verification's record before it can be counted (the phone's pseudonym is
sealed in it, and the code is digested with its salt). The worker that started the verification,
or judged its last answer, already holds the record as Redis answered it: the answer is judged
from that memory, and the store checks in the same atomic step, before anything is counted, that
the stored record still reads back as the remembered one (``ChallengeAnswer.expect``). A record
that changed (an answer on another worker, an expiry, an erasure, a key rotation) makes the
store answer STALE, and the answer reads the record as it always did: a memory that is wrong
costs a round trip, never an outcome or a count.

Only the worker's own starts and answers are remembered, so an answer saves its read only when
it reaches the worker that started its verification or judged its previous answer. Nothing here
leaves the process; the record holds only what Redis holds (pseudonyms and sealed values).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from idverify.flows.verification.record import Status, VerificationRecord

__all__ = ["ChallengeMemo"]

# About 4.5 KB a record (its sealed values as Python strings): under 5 MB a worker. A worker with
# more challenges waiting forgets the oldest, whose answers then read their record again.
DEFAULT_CAPACITY: Final = 1024


class ChallengeMemo:
    """Bounded, least recently used memory of code challenges waiting for an answer, per worker.

    Args:
        capacity: how many verifications are remembered at most.
        clock_ms: the time, to forget a verification once it has expired away.
    """

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._capacity = capacity
        self._clock_ms = clock_ms
        self._records: OrderedDict[tuple[str, str], VerificationRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def remember(self, tenant: str, verification_id: str, record: VerificationRecord) -> None:
        """Keeps ``record`` as Redis answered it while it waits for a code; forgets it otherwise."""
        key = (tenant, verification_id)
        if record.status is not Status.CHALLENGE_SENT or not record.digest:
            self._records.pop(key, None)
            return
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)

    def recall(self, tenant: str, verification_id: str) -> VerificationRecord | None:
        """The remembered record, unless the verification has expired away since."""
        key = (tenant, verification_id)
        record = self._records.get(key)
        if record is None:
            return None
        if record.expires_ms <= self._clock_ms():
            del self._records[key]
            return None
        self._records.move_to_end(key)
        return record

    def forget(self, tenant: str, verification_id: str) -> None:
        """Drops what is remembered of the verification (it proved stale)."""
        self._records.pop((tenant, verification_id), None)

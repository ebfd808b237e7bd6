"""The console's charts, counted from the audit log's index postings rather than its entries.

A posting lists the entry numbers of one value (a type, an outcome, a method) in ascending
order, and entry times never decrease: a day is a range of entry numbers (one binary search
per boundary), and a value's count in it is the difference of two positions in its posting (two
more). A chart of 30 days over any number of entries costs 31 seeks, whatever the log's size.
Only two answers read more: verifications per method (a method's posting holds every event of
the method, so it is intersected with the starts' posting, six bytes an entry) and the top
reason codes (reasons have no posting: the entries that carry one are read, at most
``REASON_SAMPLE`` of them, and the chart says when it stopped there).

The postings are read through :class:`AuditPostings`, the port declared here
(``store.audit_postings.RedisAuditPostings``: ``audit_seek.lua`` and the postings' GETRANGE); the
entries with a reason through the audit use case's port (``flows.audit.AuditLog.query``), and the
pending erasures through the erasure use case's (``flows.erasure.ErasureStore.scheduled``).
"""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from idverify.audit.events import EventType
from idverify.audit.query import EventFilter, Posting, PostingSeek, QueryResult
from idverify.flows.erasure import ScheduledErasure

__all__ = [
    "DAY_MS",
    "REASON_SAMPLE",
    "AuditPostings",
    "ChartData",
    "Charts",
    "Series",
]

DAY_MS = 86_400_000
REASON_SAMPLE = 20_000
"""Entries read at most for the top reason codes."""
_POSTING_BLOCK = 4096

OUTCOME_TYPES = {
    "verified": EventType.VERIFICATION_VERIFIED,
    "rejected": EventType.VERIFICATION_REJECTED,
    "expired": EventType.VERIFICATION_EXPIRED,
    "needs guardian": EventType.VERIFICATION_NEEDS_GUARDIAN,
}
# The refusals: a rejected verification carries its failed step's reason, so the step entries
# (two or more a signup, most of them passes) are not read.
REASON_TYPES = frozenset(
    {
        EventType.VERIFICATION_REJECTED,
        EventType.BINDING_REFUSED,
        EventType.CHALLENGE_FAILED,
        EventType.RATE_LIMIT_HIT,
    }
)


class AuditPostings(Protocol):
    """The audit log's entry times and index postings; every method may raise StoreUnavailable."""

    async def seek_times(self, tenant: str, times_ms: Sequence[int]) -> list[int]:
        """For each time, the number of the first entry at or after it (the log's size if none)."""
        ...

    async def seek_postings(self, tenant: str, postings: Sequence[Posting], index: int) -> list[PostingSeek]:
        """For each posting, where the entry number ``index`` falls in it."""
        ...

    async def read_posting(self, tenant: str, posting: Posting, position: int, count: int) -> list[int]:
        """Up to ``count`` entry numbers of a posting from ``position`` on."""
        ...


class ReasonQueries(Protocol):
    """The log's entries by filter (``flows.audit.AuditLog`` is one)."""

    def query(self, tenant: str, query: EventFilter) -> AsyncIterator[QueryResult]:
        """The entries matching ``query``, in order."""
        ...


class ScheduledErasures(Protocol):
    """The queued erasures (``flows.erasure.ErasureStore`` is one)."""

    async def scheduled(self, tenant: str) -> list[ScheduledErasure]:
        """Every queued erasure of ``tenant`` with its due time."""
        ...


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: a label and its counts, one per day (or per bar)."""

    label: str
    counts: list[int]


@dataclass(frozen=True, slots=True)
class ChartData:
    """One chart: its bars' labels and its series."""

    title: str
    labels: list[str]
    series: list[Series]
    note: str = ""
    extra: dict[str, int] = field(default_factory=dict)


class Charts:
    """Builds the console's charts of one tenant."""

    def __init__(self, postings: AuditPostings, log: ReasonQueries, erasures: ScheduledErasures) -> None:
        self._postings = postings
        self._log = log
        self._erasures = erasures

    async def daily(
        self, tenant: str, first_day_ms: int, days: int, methods: Sequence[str]
    ) -> list[ChartData]:
        """Verifications by outcome and by method, binding refusals and rate-limit hits, a day a bar.

        Args:
            tenant: whose log.
            first_day_ms: the start of the first day (ms since the epoch, UTC midnight).
            days: how many days.
            methods: the tenant's method ids.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        starts = [first_day_ms + day * DAY_MS for day in range(days + 1)]
        bounds = await self._postings.seek_times(tenant, starts)
        postings = {
            **{label: Posting("type", kind) for label, kind in OUTCOME_TYPES.items()},
            "refused": Posting("type", EventType.BINDING_REFUSED),
            "limited": Posting("type", EventType.RATE_LIMIT_HIT),
        }
        names = list(postings)
        # One seek per day boundary, sent together: the shared connection pipelines them.
        seeks = await asyncio.gather(
            *(self._postings.seek_postings(tenant, [postings[n] for n in names], bound) for bound in bounds)
        )
        counts = {
            name: [seeks[day + 1][i].position - seeks[day][i].position for day in range(days)]
            for i, name in enumerate(names)
        }
        labels = [_day_label(start) for start in starts[:-1]]
        by_method = await self._by_method(tenant, bounds, methods)
        return [
            ChartData(
                "Verifications per day by outcome",
                labels,
                [Series(label, counts[label]) for label in OUTCOME_TYPES],
            ),
            ChartData("Verifications started per day by method", labels, by_method),
            ChartData("Binding refusals per day", labels, [Series("refused", counts["refused"])]),
            ChartData("Rate-limit hits per day", labels, [Series("limited", counts["limited"])]),
        ]

    async def _by_method(self, tenant: str, bounds: Sequence[int], methods: Sequence[str]) -> list[Series]:
        started = Posting("type", EventType.VERIFICATION_STARTED)
        result = []
        for method in methods:
            per_day = [0] * (len(bounds) - 1)
            both = _intersect(
                self._posting(tenant, started, bounds[0], bounds[-1]),
                self._posting(tenant, Posting("method", method), bounds[0], bounds[-1]),
            )
            async for index in both:
                per_day[bisect.bisect_right(bounds, index) - 1] += 1
            result.append(Series(method, per_day))
        return result

    async def _posting(self, tenant: str, posting: Posting, low: int, high: int) -> AsyncIterator[int]:
        (seek,) = await self._postings.seek_postings(tenant, [posting], low)
        position = seek.position
        while position < seek.length:
            block = await self._postings.read_posting(tenant, posting, position, _POSTING_BLOCK)
            for index in block:
                if index >= high:
                    return
                yield index
            if not block:
                return
            position += len(block)

    async def top_reasons(self, tenant: str, start_ms: int, end_ms: int, top: int = 10) -> ChartData:
        """The most frequent reason codes of rejections, refusals, wrong codes and limits in a time range.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
            EntryFormatError: when a stored entry does not decode.
        """
        reasons: Counter[str] = Counter()
        read = 0
        query = EventFilter(
            start_ms=start_ms, end_ms=end_ms, types=frozenset(REASON_TYPES), limit=REASON_SAMPLE
        )
        async for found in self._log.query(tenant, query):
            read += 1
            if found.event.reason:
                reasons[found.event.reason] += 1
        ranked = reasons.most_common(top)
        note = f"from the first {REASON_SAMPLE} entries of the range" if read >= REASON_SAMPLE else ""
        return ChartData(
            "Top reason codes",
            [code for code, _ in ranked],
            [Series("entries", [n for _, n in ranked])],
            note,
        )

    async def erasures(self, tenant: str, now_ms: int, overdue_after_ms: int) -> ChartData:
        """Pending erasures by the day they are due, with how many are overdue.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        rows = await self._erasures.scheduled(tenant)
        due_days: Counter[str] = Counter()
        late_days: Counter[str] = Counter()
        for row in rows:  # the chart counts; it names no one
            day = _day_label(row.due_ms // DAY_MS * DAY_MS)
            due_days[day] += 1
            if now_ms > row.due_ms + overdue_after_ms:
                late_days[day] += 1
        labels = sorted(due_days)
        return ChartData(
            "Pending erasures by due day",
            labels,
            [
                Series("pending", [due_days[d] - late_days[d] for d in labels]),
                Series("overdue", [late_days[d] for d in labels]),
            ],
            extra={"pending": len(rows), "overdue": sum(late_days.values())},
        )


async def _intersect(left: AsyncIterator[int], right: AsyncIterator[int]) -> AsyncIterator[int]:
    """The indices in both ascending streams."""
    a = await anext(left, None)
    b = await anext(right, None)
    while a is not None and b is not None:
        if a == b:
            yield a
            a = await anext(left, None)
            b = await anext(right, None)
        elif a < b:
            a = await anext(left, None)
        else:
            b = await anext(right, None)


def _day_label(day_ms: int) -> str:
    return datetime.fromtimestamp(day_ms / 1000, tz=UTC).strftime("%Y-%m-%d")

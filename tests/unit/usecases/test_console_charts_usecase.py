"""The console's charts over in-memory stores: days, methods, reasons and erasures; no Redis.

``console.charts.Charts`` draws on ``MemoryAuditPostings`` over a ``MemoryAuditLog`` (the
postings ``test_audit_postings_contract.py`` holds to Redis's), the log's own queries for the
reasons, and ``MemoryErasureStore``'s queue for the pending erasures. Each test shows one
decision: which day an entry counts in, a method's starts as the intersection of two postings,
which entries' reasons are ranked and when the sample stops, and when an erasure is overdue.
"""

from __future__ import annotations

import pytest

from idverify.console import charts as charts_module
from idverify.console.charts import DAY_MS, Charts, Series
from idverify.flows.erasure import Cancellation
from idverify.testing.memory_audit_log import MemoryAuditLog
from idverify.testing.memory_audit_postings import MemoryAuditPostings
from idverify.testing.memory_erasures import MemoryErasureStore

DAY0 = 20_000 * DAY_MS  # 2024-10-04, a UTC midnight
REQUEST = {"principal": "acme/registrar/c1", "request_id": ""}


def drawn(log: MemoryAuditLog, erasures: MemoryErasureStore | None = None) -> Charts:
    return Charts(MemoryAuditPostings(log), log, erasures or MemoryErasureStore())


def append(log: MemoryAuditLog, at_ms: int, kind: str, **fields: str) -> None:
    log.now = at_ms
    log.append("acme", REQUEST, {"type": kind, **fields})


async def test_each_entry_counts_on_its_day_and_a_method_s_starts_intersect_two_postings() -> None:
    log = MemoryAuditLog()
    append(log, DAY0 - 1, "verification.verified")  # the day before: not charted
    append(log, DAY0 + 10, "verification.started", method="sms")
    append(log, DAY0 + 11, "challenge.sent", method="sms")  # sms, but not a start
    append(log, DAY0 + 12, "verification.verified", method="sms")
    append(log, DAY0 + DAY_MS, "verification.started", method="email")
    append(log, DAY0 + DAY_MS + 1, "verification.started", method="sms")
    append(log, DAY0 + DAY_MS + 2, "verification.rejected", reason="FACE_MISMATCH")
    append(log, DAY0 + DAY_MS + 3, "binding.refused")
    append(log, DAY0 + 2 * DAY_MS + 5, "rate_limit.hit")
    append(log, DAY0 + 3 * DAY_MS, "verification.verified")  # the day after: not charted
    by_outcome, by_method, refusals, limits = await drawn(log).daily("acme", DAY0, 3, ["sms", "email"])
    assert by_outcome.labels == ["2024-10-04", "2024-10-05", "2024-10-06"]
    assert by_outcome.series == [
        Series("verified", [1, 0, 0]),
        Series("rejected", [0, 1, 0]),
        Series("expired", [0, 0, 0]),
        Series("needs guardian", [0, 0, 0]),
    ]
    assert by_method.series == [Series("sms", [1, 1, 0]), Series("email", [0, 1, 0])]
    assert refusals.series == [Series("refused", [0, 1, 0])]
    assert limits.series == [Series("limited", [0, 0, 1])]


async def test_reasons_are_ranked_from_the_refusals_in_the_range_only() -> None:
    log = MemoryAuditLog()
    append(log, DAY0, "verification.rejected", reason="EARLY")  # before the range
    for reason in ["FACE_MISMATCH", "FACE_MISMATCH", "WRONG_CODE"]:
        append(log, DAY0 + 10, "verification.rejected", reason=reason)
    append(log, DAY0 + 11, "challenge.failed", reason="WRONG_CODE")
    append(log, DAY0 + 12, "challenge.failed", reason="WRONG_CODE")
    append(log, DAY0 + 13, "verification.verified", reason="NOT_A_REFUSAL")  # not a refusal type
    append(log, DAY0 + 14, "rate_limit.hit")  # a refusal without a reason
    chart = await drawn(log).top_reasons("acme", DAY0 + 1, DAY0 + DAY_MS)
    assert chart.labels == ["WRONG_CODE", "FACE_MISMATCH"]
    assert chart.series == [Series("entries", [3, 2])]
    assert chart.note == ""


async def test_the_reasons_sample_stops_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charts_module, "REASON_SAMPLE", 3)
    log = MemoryAuditLog()
    for reason in ["A", "A", "B", "B", "B"]:
        append(log, DAY0, "verification.rejected", reason=reason)
    chart = await drawn(log).top_reasons("acme", DAY0, DAY0 + 1)
    assert chart.series == [Series("entries", [2, 1])]  # the first three entries only
    assert chart.note == "from the first 3 entries of the range"


async def test_pending_erasures_by_due_day_and_those_overdue() -> None:
    erasures = MemoryErasureStore()
    for n, due_ms in enumerate([DAY0 + 5, DAY0 + 6, DAY0 + DAY_MS + 1, DAY0 + 3 * DAY_MS]):
        await erasures.cancel("acme", Cancellation(f"acct{n}", f"audit{n}", due_ms, "{}"))
    chart = await drawn(MemoryAuditLog(), erasures).erasures(
        "acme", now_ms=DAY0 + DAY_MS + 10, overdue_after_ms=20
    )
    assert chart.labels == ["2024-10-04", "2024-10-05", "2024-10-07"]
    assert chart.series == [Series("pending", [0, 1, 1]), Series("overdue", [2, 0, 0])]
    assert chart.extra == {"pending": 4, "overdue": 2}

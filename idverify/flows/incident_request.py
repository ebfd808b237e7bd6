"""What an incident report is asked about, and the requests no report can answer.

A report counts the reads of whole hours (``flows.read_accounting`` buckets them), so its window
is checked here in those hours; ``flows.incident`` makes the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from idverify.domain.errors import InvalidArgument
from idverify.flows.read_accounting import HOUR_MS, hour_of

__all__ = ["MAX_PRINCIPALS", "MAX_WINDOW_HOURS", "IncidentRequest", "window_hours"]

MAX_WINDOW_HOURS = 366 * 24
"""A window of at most a year (the reads are kept 180 days by default): bounds one report's work."""
MAX_PRINCIPALS = 1000
# Client ids: a token client's hex id, or a certificate's ``cert:<n>``.
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_-]{0,63}")


@dataclass(frozen=True, slots=True)
class IncidentRequest:
    """What a report is asked about (times in ms of the epoch)."""

    principals: tuple[str, ...]
    since_ms: int
    until_ms: int
    detected_ms: int
    critical_infrastructure: bool = False
    store_breach: bool = False

    def check(self) -> None:
        """Refuses a request no report can answer.

        Raises:
            InvalidArgument: naming the field and why.
        """
        if self.since_ms <= 0:
            raise InvalidArgument("the window's start is required", reason="MISSING_FIELD", field="since")
        if self.until_ms <= 0:
            raise InvalidArgument("the window's end is required", reason="MISSING_FIELD", field="until")
        if self.detected_ms <= 0:
            raise InvalidArgument(
                "the detection time is required: the deadline runs from it",
                reason="MISSING_FIELD",
                field="detected_at",
            )
        if self.until_ms <= self.since_ms:
            raise InvalidArgument("the window ends after it starts", reason="EMPTY_WINDOW", field="until")
        if len(window_hours(self.since_ms, self.until_ms)) > MAX_WINDOW_HOURS:
            raise InvalidArgument(
                f"the window is at most {MAX_WINDOW_HOURS // 24} days",
                reason="WINDOW_TOO_LONG",
                field="since",
            )
        if len(self.principals) > MAX_PRINCIPALS:
            raise InvalidArgument(
                f"at most {MAX_PRINCIPALS} principals", reason="TOO_MANY_PRINCIPALS", field="principals"
            )
        for index, principal in enumerate(self.principals):
            if not _CLIENT_ID.fullmatch(principal):
                raise InvalidArgument(
                    "principals are client ids (a token's hex id, or cert:<n>)",
                    reason="BAD_ID",
                    field=f"principals[{index}]",
                )


def window_hours(since_ms: int, until_ms: int) -> list[int]:
    """The hour buckets that hold any of [since, until): since's hour up to until's, rounded up."""
    return list(range(hour_of(since_ms), -(-until_ms // HOUR_MS)))

"""Working days: a Monday-Friday calendar with public holidays and make-up working days.

Deadlines that the rules count in working days (erasure within 15 working days of an account's
cancellation) follow the official calendar, where a public holiday can fall on a weekday and a
Saturday or Sunday can become a working day to make up for it. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Final

MAX_ERASURE_WORKING_DAYS: Final = 15
"""The longest erasure deadline the rules allow, in working days after cancellation."""

_SATURDAY: Final = 5
# A calendar with every day of a long stretch declared a holiday is a configuration mistake; the
# bound keeps a deadline computation from looping over it for ever.
_MAX_SCAN_DAYS: Final = 3660


@dataclass(frozen=True, slots=True)
class WorkingCalendar:
    """Which days are working days.

    Attributes:
        holidays: days off, whatever the weekday (2026-10-01).
        makeup_working_days: Saturdays or Sundays that are working days (2026-09-27).
    """

    holidays: frozenset[date] = frozenset()
    makeup_working_days: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        """Refuses a day that is both a holiday and a make-up working day.

        Raises:
            ValueError: naming the first such day.
        """
        both = sorted(self.holidays & self.makeup_working_days)
        if both:
            raise ValueError(f"{both[0].isoformat()} is both a holiday and a make-up working day")

    @classmethod
    def from_iso(cls, holidays: Iterable[str], makeup_working_days: Iterable[str]) -> WorkingCalendar:
        """A calendar from ISO dates (``2026-10-01``), as the configuration lists them.

        Raises:
            ValueError: on a malformed date or a day in both lists.
        """
        return cls(
            holidays=frozenset(_parse_day(text) for text in holidays),
            makeup_working_days=frozenset(_parse_day(text) for text in makeup_working_days),
        )

    def is_working_day(self, day: date) -> bool:
        """True for Monday-Friday outside the holidays, and for make-up working days."""
        if day in self.makeup_working_days:
            return True
        return day.weekday() < _SATURDAY and day not in self.holidays

    def add_working_days(self, start: date, count: int) -> date:
        """The ``count``-th working day after ``start`` (``start`` itself is not counted).

        ``count`` 0 gives ``start``.

        Raises:
            ValueError: ``count`` is negative, or no such day exists within ten years.
        """
        if count < 0:
            raise ValueError("count must not be negative")
        day, left = start, count
        for _ in range(_MAX_SCAN_DAYS):
            if left == 0:
                return day
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        raise ValueError("no working day found within ten years; check the holiday list")


def erasure_due_at(
    cancelled_at: datetime, working_days: int, calendar: WorkingCalendar, zone: tzinfo
) -> datetime:
    """When a cancelled account's data is erased: the start of the n-th working day after it.

    The day of cancellation is not counted; days are taken in ``zone`` (Asia/Shanghai). Starting
    the erasure at the beginning of the last allowed day leaves that whole day as a margin before
    the deadline. ``working_days`` 0 means at once (``cancelled_at`` itself).

    Args:
        cancelled_at: the moment of cancellation (timezone-aware).
        working_days: 0 to :data:`MAX_ERASURE_WORKING_DAYS`.
        calendar: the working-day calendar.
        zone: the time zone the days are counted in.

    Raises:
        ValueError: ``cancelled_at`` is naive, or ``working_days`` is out of range.
    """
    if cancelled_at.tzinfo is None:
        raise ValueError("cancelled_at must be timezone-aware")
    if not 0 <= working_days <= MAX_ERASURE_WORKING_DAYS:
        raise ValueError(f"working_days must be 0 to {MAX_ERASURE_WORKING_DAYS}")
    if working_days == 0:
        return cancelled_at
    local_day = cancelled_at.astimezone(zone).date()
    return datetime.combine(calendar.add_working_days(local_day, working_days), time(0), tzinfo=zone)


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a date in YYYY-MM-DD form") from None


__all__ = ["MAX_ERASURE_WORKING_DAYS", "WorkingCalendar", "erasure_due_at"]

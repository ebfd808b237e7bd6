"""The working-day calendar around a public holiday and make-up working days, and erasure due times."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from idverify.config import load_settings
from idverify.domain.calendar import MAX_ERASURE_WORKING_DAYS, WorkingCalendar, erasure_due_at
from idverify.domain.errors import ConfigError

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A National Day week: Thursday 1 to Wednesday 7 October off, made up on Sunday 27 September
# and Saturday 10 October.
NATIONAL_DAY = WorkingCalendar.from_iso(
    [f"2026-10-0{day}" for day in range(1, 8)], ["2026-09-27", "2026-10-10"]
)


class TestWorkingCalendar:
    @pytest.mark.parametrize(
        ("day", "working"),
        [
            (date(2026, 9, 25), True),  # Friday
            (date(2026, 9, 26), False),  # Saturday
            (date(2026, 9, 27), True),  # Sunday, made up
            (date(2026, 10, 1), False),  # Thursday, holiday
            (date(2026, 10, 3), False),  # Saturday, holiday
            (date(2026, 10, 8), True),  # Thursday after the holiday
            (date(2026, 10, 10), True),  # Saturday, made up
            (date(2026, 10, 11), False),  # Sunday
        ],
    )
    def test_which_days_are_working_days(self, day: date, working: bool) -> None:
        """Weekdays work unless they are holidays; weekends rest unless they are made up."""
        assert NATIONAL_DAY.is_working_day(day) is working

    def test_a_make_up_sunday_is_the_next_working_day(self) -> None:
        """From Friday, one working day later is the make-up Sunday, not Monday."""
        assert NATIONAL_DAY.add_working_days(date(2026, 9, 25), 1) == date(2026, 9, 27)
        assert WorkingCalendar().add_working_days(date(2026, 9, 25), 1) == date(2026, 9, 28)

    def test_the_holiday_week_is_skipped(self) -> None:
        """From the eve of the holiday, the next working day is the Thursday after it."""
        assert NATIONAL_DAY.add_working_days(date(2026, 9, 30), 1) == date(2026, 10, 8)
        assert NATIONAL_DAY.add_working_days(date(2026, 9, 30), 3) == date(2026, 10, 10)

    def test_fifteen_working_days_across_the_holiday(self) -> None:
        """Fifteen working days from 21 September end on 15 October (12 October without holidays)."""
        assert NATIONAL_DAY.add_working_days(date(2026, 9, 21), 15) == date(2026, 10, 15)
        assert WorkingCalendar().add_working_days(date(2026, 9, 21), 15) == date(2026, 10, 12)

    def test_zero_days_is_the_same_day_and_negative_is_refused(self) -> None:
        """Zero working days after a day is that day; a negative count is a bug."""
        assert NATIONAL_DAY.add_working_days(date(2026, 10, 3), 0) == date(2026, 10, 3)
        with pytest.raises(ValueError, match="negative"):
            NATIONAL_DAY.add_working_days(date(2026, 10, 3), -1)

    def test_a_day_in_both_lists_is_refused(self) -> None:
        """A day cannot be a holiday and a make-up working day at once."""
        with pytest.raises(ValueError, match="2026-10-01"):
            WorkingCalendar.from_iso(["2026-10-01"], ["2026-10-01"])

    def test_malformed_dates_are_refused(self) -> None:
        """Dates are YYYY-MM-DD."""
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            WorkingCalendar.from_iso(["1 October"], [])

    def test_a_calendar_without_working_days_ends_the_search(self) -> None:
        """A holiday list that swallows every day fails instead of looping for ever."""
        every_weekday = [
            date.fromordinal(n).isoformat()
            for n in range(date(2026, 1, 1).toordinal(), date(2037, 1, 1).toordinal())
            if date.fromordinal(n).weekday() < 5
        ]
        with pytest.raises(ValueError, match="no working day"):
            WorkingCalendar.from_iso(every_weekday, []).add_working_days(date(2026, 1, 1), 1)


class TestErasureDueAt:
    def test_due_at_the_start_of_the_working_day_in_shanghai(self) -> None:
        """Cancelled on the eve of the holiday, one working day later is 8 October, 00:00 Shanghai."""
        due = erasure_due_at(datetime(2026, 9, 30, 3, 0, tzinfo=UTC), 1, NATIONAL_DAY, SHANGHAI)
        assert due == datetime(2026, 10, 8, tzinfo=SHANGHAI)

    def test_the_day_of_cancellation_is_taken_in_shanghai(self) -> None:
        """15:59 UTC on Sunday is still Sunday in Shanghai; 16:00 UTC is already Monday there."""
        sunday = erasure_due_at(datetime(2026, 9, 27, 15, 59, tzinfo=UTC), 1, NATIONAL_DAY, SHANGHAI)
        monday = erasure_due_at(datetime(2026, 9, 27, 16, 0, tzinfo=UTC), 1, NATIONAL_DAY, SHANGHAI)
        assert sunday == datetime(2026, 9, 28, tzinfo=SHANGHAI)
        assert monday == datetime(2026, 9, 29, tzinfo=SHANGHAI)

    def test_the_default_deadline_spans_the_holiday(self) -> None:
        """The default fifteen working days from Monday 21 September fall on 15 October."""
        due = erasure_due_at(
            datetime(2026, 9, 21, 2, 0, tzinfo=UTC), MAX_ERASURE_WORKING_DAYS, NATIONAL_DAY, SHANGHAI
        )
        assert due == datetime(2026, 10, 15, tzinfo=SHANGHAI)

    def test_zero_days_means_at_once(self) -> None:
        """With zero working days the erasure is due at the moment of cancellation."""
        now = datetime(2026, 10, 2, 12, 0, tzinfo=UTC)
        assert erasure_due_at(now, 0, NATIONAL_DAY, SHANGHAI) == now

    @pytest.mark.parametrize("days", [-1, MAX_ERASURE_WORKING_DAYS + 1])
    def test_out_of_range_days_are_refused(self, days: int) -> None:
        """Between 0 and 15 working days: the rules allow no more."""
        with pytest.raises(ValueError, match="working_days"):
            erasure_due_at(datetime(2026, 10, 2, tzinfo=UTC), days, NATIONAL_DAY, SHANGHAI)

    def test_a_naive_time_is_refused(self) -> None:
        """The moment of cancellation must carry its zone."""
        with pytest.raises(ValueError, match="timezone-aware"):
            erasure_due_at(datetime(2026, 10, 2), 1, NATIONAL_DAY, SHANGHAI)  # noqa: DTZ001


class TestErasureSettings:
    def test_the_calendar_comes_from_the_configuration(self) -> None:
        """Holidays and make-up days are read from [erasure], or from the environment."""
        settings = load_settings(
            environ={
                "IDVERIFY_ERASURE__WORKING_DAYS": "10",
                "IDVERIFY_ERASURE__HOLIDAYS": "2026-10-01, 2026-10-02",
                "IDVERIFY_ERASURE__MAKEUP_WORKING_DAYS": "2026-09-27",
            }
        )
        assert settings.erasure.working_days == 10
        assert settings.erasure.holidays == ("2026-10-01", "2026-10-02")
        assert settings.erasure.makeup_working_days == ("2026-09-27",)

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            ("WORKING_DAYS", "16", "working_days"),
            ("HOLIDAYS", "2026-13-01", "YYYY-MM-DD"),
            ("TIMEZONE", "Mars/Olympus", "time zone"),
        ],
    )
    def test_bad_values_fail_at_start_up(self, name: str, value: str, message: str) -> None:
        """More than 15 working days, a malformed date or an unknown zone is a configuration error."""
        with pytest.raises(ConfigError, match=message):
            load_settings(environ={f"IDVERIFY_ERASURE__{name}": value})

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Tests of ages, age bands and the Asia/Shanghai calendar day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idverify.domain.age import age_band, age_on, is_under_14, today_in_shanghai
from idverify.domain.subjects import AgeBand


class TestTodayInShanghai:
    def test_utc_evening_is_the_next_day_in_shanghai(self) -> None:
        """16:00 UTC is midnight in Shanghai (UTC+8), so the date moves on."""
        assert today_in_shanghai(datetime(2025, 12, 31, 16, 0, tzinfo=UTC)) == date(2026, 1, 1)

    def test_utc_afternoon_is_the_same_day(self) -> None:
        """15:59 UTC is still the same day in Shanghai."""
        assert today_in_shanghai(datetime(2025, 12, 31, 15, 59, 59, tzinfo=UTC)) == date(2025, 12, 31)

    def test_other_offsets_are_converted(self) -> None:
        """An aware time in any zone names the Shanghai date of the same instant."""
        new_york_evening = datetime(2025, 6, 14, 20, 0, tzinfo=timezone(timedelta(hours=-4)))
        assert today_in_shanghai(new_york_evening) == date(2025, 6, 15)

    def test_naive_datetime_is_refused(self) -> None:
        """A naive datetime names no instant, so it is a ValueError."""
        with pytest.raises(ValueError, match="timezone-aware"):
            today_in_shanghai(datetime(2025, 1, 1, 12, 0))  # noqa: DTZ001 - the naive value is the point

    def test_clock_is_read_when_none(self) -> None:
        """Without an argument the current Shanghai date is returned."""
        before = datetime.now(UTC)
        result = today_in_shanghai()
        after = datetime.now(UTC)
        assert result in {today_in_shanghai(before), today_in_shanghai(after)}


class TestAgeOn:
    @pytest.mark.parametrize(
        ("birth", "day", "age"),
        [
            (date(2000, 6, 15), date(2000, 6, 15), 0),
            (date(2000, 6, 15), date(2014, 6, 14), 13),
            (date(2000, 6, 15), date(2014, 6, 15), 14),
            (date(2000, 12, 31), date(2001, 1, 1), 0),
            (date(1990, 1, 1), date(2025, 12, 31), 35),
        ],
    )
    def test_completed_years(self, birth: date, day: date, age: int) -> None:
        """The age is the number of birthdays reached by that day."""
        assert age_on(birth, day) == age

    def test_leap_day_birth_ages_on_first_of_march_in_common_years(self) -> None:
        """Born 29 February: still 13 on 28 February 2022, 14 on 1 March."""
        birth = date(2008, 2, 29)
        assert age_on(birth, date(2022, 2, 28)) == 13
        assert age_on(birth, date(2022, 3, 1)) == 14

    def test_leap_day_birth_ages_on_the_day_in_leap_years(self) -> None:
        """Born 29 February: 16 on 29 February 2024, 15 the day before."""
        birth = date(2008, 2, 29)
        assert age_on(birth, date(2024, 2, 28)) == 15
        assert age_on(birth, date(2024, 2, 29)) == 16

    def test_birth_after_day_is_refused(self) -> None:
        """A birth after the day asked about is a ValueError."""
        with pytest.raises(ValueError, match="after"):
            age_on(date(2025, 1, 2), date(2025, 1, 1))

    @given(birth=st.dates(max_value=date(2100, 1, 1)), days=st.integers(0, 200 * 366))
    def test_agrees_with_counting_anniversaries(self, birth: date, days: int) -> None:
        """The age equals the number of anniversaries (1 March for leap days) up to the day."""
        day = birth + timedelta(days=min(days, (date.max - birth).days))
        anniversaries = 0
        for year in range(birth.year + 1, day.year + 1):
            try:
                anniversary = birth.replace(year=year)
            except ValueError:
                anniversary = date(year, 3, 1)
            anniversaries += anniversary <= day
        assert age_on(birth, day) == anniversaries


class TestAgeBand:
    @pytest.mark.parametrize(
        ("birth", "band"),
        [
            (None, AgeBand.UNKNOWN),
            (date(2025, 6, 15), AgeBand.UNDER_14),
            (date(2011, 6, 16), AgeBand.UNDER_14),
            (date(2011, 6, 15), AgeBand.FROM_14_TO_17),
            (date(2007, 6, 16), AgeBand.FROM_14_TO_17),
            (date(2007, 6, 15), AgeBand.ADULT),
            (date(1900, 1, 1), AgeBand.ADULT),
        ],
    )
    def test_bands_and_their_edges(self, birth: date | None, band: AgeBand) -> None:
        """Bands change on the 14th and 18th birthdays; no birth date is UNKNOWN."""
        assert age_band(birth, date(2025, 6, 15)) is band


class TestIsUnder14:
    def test_day_before_fourteenth_birthday(self) -> None:
        """The day before turning 14 still needs a guardian."""
        assert is_under_14(date(2011, 6, 16), date(2025, 6, 15))

    def test_fourteenth_birthday(self) -> None:
        """On the 14th birthday no guardian is needed any more."""
        assert not is_under_14(date(2011, 6, 15), date(2025, 6, 15))

    def test_unknown_birth_date(self) -> None:
        """An unknown birth date (a passport) does not by itself call for a guardian."""
        assert not is_under_14(None, date(2025, 6, 15))

    def test_leap_day_child_on_28_february(self) -> None:
        """A child born 29 February 2012 is still under 14 on 28 February 2026."""
        assert is_under_14(date(2012, 2, 29), date(2026, 2, 28))
        assert not is_under_14(date(2012, 2, 29), date(2026, 3, 1))

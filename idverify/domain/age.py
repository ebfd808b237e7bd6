# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Ages and age bands on a given day, with the day taken in Asia/Shanghai as the minors rules require."""

from __future__ import annotations

from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from idverify.domain.subjects import AgeBand

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
GUARDIAN_CONSENT_AGE: Final = 14
ADULT_AGE: Final = 18


def today_in_shanghai(now: datetime | None = None) -> date:
    """Return the calendar date in Asia/Shanghai at ``now`` (the current time when None).

    Args:
        now: an aware datetime; the clock is read when None.

    Returns:
        The date in Shanghai at that instant.

    Raises:
        ValueError: ``now`` is naive, so the instant it names is unknown.

    """
    if now is None:
        return datetime.now(SHANGHAI).date()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(SHANGHAI).date()


def age_on(birth: date, day: date) -> int:
    """Return the age in completed years on ``day``.

    The age goes up on the anniversary of the birth date. Someone born on 29 February gets
    older on 1 March in common years, never a day early: for the minors rules, a day late errs
    on the side of the child.

    Args:
        birth: the birth date.
        day: the day to compute the age on.

    Returns:
        Completed years, 0 on the birth date itself.

    Raises:
        ValueError: ``birth`` is after ``day``.

    """
    if birth > day:
        raise ValueError("birth date is after the day the age is asked for")
    before_birthday = (day.month, day.day) < (birth.month, birth.day)
    return day.year - birth.year - int(before_birthday)


def age_band(birth: date | None, day: date) -> AgeBand:
    """Return the age band on ``day``; UNKNOWN when the birth date is unknown.

    Args:
        birth: the birth date, or None when the document encodes none.
        day: the day to compute the band on.

    Returns:
        UNDER_14, FROM_14_TO_17, ADULT, or UNKNOWN.

    Raises:
        ValueError: ``birth`` is after ``day``.

    """
    if birth is None:
        return AgeBand.UNKNOWN
    age = age_on(birth, day)
    if age < GUARDIAN_CONSENT_AGE:
        return AgeBand.UNDER_14
    if age < ADULT_AGE:
        return AgeBand.FROM_14_TO_17
    return AgeBand.ADULT


def is_under_14(birth: date | None, day: date) -> bool:
    """Tell whether a guardian must consent: under 14 on ``day``; False when the birth date is unknown.

    Args:
        birth: the birth date, or None when the document encodes none.
        day: the verification date in Asia/Shanghai.

    Returns:
        True when the subject is under 14 on ``day``.

    Raises:
        ValueError: ``birth`` is after ``day``.

    """
    return birth is not None and age_on(birth, day) < GUARDIAN_CONSENT_AGE

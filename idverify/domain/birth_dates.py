# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Which birth date a verification takes, where it came from, and what a declared one may unlock.

A document that encodes a birth date decides; an authority a step asked comes next; a date the
person declares (``Subject.birth_date``) counts only when neither gave one, and a tenant's
policy says whether a declared adult may act as a guardian. The date is kept sealed, and ages
are computed from it on the day asked (``idverify.domain.age``).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from enum import Enum
from typing import Final

from idverify.domain.age import ADULT_AGE, age_on
from idverify.domain.errors import ConfigError, InvalidArgument

FIELD: Final = "subject.birth_date"
# Nobody alive was born earlier (the document rules use the same bound).
_EARLIEST_BIRTH: Final = date(1890, 1, 1)
_ISO_LENGTH: Final = 10


class AgeSource(Enum):
    """Where the birth date behind an account's age came from."""

    DOCUMENT = "document"
    AUTHORITY = "authority"
    DECLARED = "declared"
    # No birth date known: an organization, or a document without one and nothing declared.
    NONE = "none"
    # Bound before ages were computed when read: the stored band is the band of its binding day.
    LEGACY = "legacy"


class DeclaredBirthDates(Enum):
    """A tenant's policy (``[tenants.<t>] declared_birth_date``) for declared birth dates.

    Under either, a declared date under 14 needs a guardian's consent as usual and a declared
    adult binds with source DECLARED.
    """

    # A declared adult may also consent as a guardian.
    ACCEPT = "accept"
    # A guardian's age must come from a document or an authority.
    NOT_FOR_GUARDIANS = "not_for_guardians"


class BirthDateMismatch(Exception):
    """An authority's birth date contradicts the document's or the declared one."""


def parse_policy(tenant: str, value: object) -> DeclaredBirthDates:
    """Parses ``[tenants.<tenant>] declared_birth_date``.

    Raises:
        ConfigError: naming the tenant when the value is not a policy.
    """
    try:
        return DeclaredBirthDates(value)
    except ValueError:
        choices = ", ".join(policy.value for policy in DeclaredBirthDates)
        raise ConfigError(f"tenants.{tenant}.declared_birth_date: expected one of {choices}") from None


def parse_declared(text: str, *, today: date, document_birth: date | None) -> date | None:
    """The declared birth date of ``Subject.birth_date``; None when none was given.

    Raises:
        InvalidArgument: naming ``subject.birth_date``: not a YYYY-MM-DD date (BAD_BIRTH_DATE),
            after today (BIRTH_DATE_IN_FUTURE), implausibly early (BAD_BIRTH_DATE), or another
            date than the document's (BIRTH_DATE_MISMATCH).
    """
    text = text.strip()
    if not text:
        return None
    bad = InvalidArgument("a YYYY-MM-DD date", reason="BAD_BIRTH_DATE", field=FIELD)
    # fromisoformat alone also takes 20260102 and week dates: only the one form is a declaration.
    if len(text) != _ISO_LENGTH:
        raise bad
    try:
        declared = date.fromisoformat(text)
    except ValueError:
        raise bad from None
    if declared > today:
        raise InvalidArgument("a birth date in the future", reason="BIRTH_DATE_IN_FUTURE", field=FIELD)
    if declared < _EARLIEST_BIRTH:
        raise InvalidArgument("an implausibly early birth date", reason="BAD_BIRTH_DATE", field=FIELD)
    if document_birth is not None and declared != document_birth:
        raise InvalidArgument(
            "not the birth date the document carries", reason="BIRTH_DATE_MISMATCH", field=FIELD
        )
    return declared


def choose(
    *, document: date | None, authorities: Collection[date] = (), declared: date | None
) -> tuple[date | None, AgeSource]:
    """The birth date a verification takes and its source: document, then authority, then declared.

    Raises:
        BirthDateMismatch: authorities disagree, or one differs from the document's or the
            declared date.
    """
    said = set(authorities)
    if len(said) > 1:
        raise BirthDateMismatch
    authority = next(iter(said), None)
    if authority is not None and authority != (document or declared or authority):
        raise BirthDateMismatch
    if document is not None:
        return document, AgeSource.DOCUMENT
    if authority is not None:
        return authority, AgeSource.AUTHORITY
    if declared is not None:
        return declared, AgeSource.DECLARED
    return None, AgeSource.NONE


def guardian_refusal(
    birth: date | None, source: AgeSource, *, legacy_adult: bool, policy: DeclaredBirthDates, today: date
) -> str:
    """Why an account may not consent as a guardian on ``today``; empty when it may.

    Args:
        birth: the account's birth date (None when unknown or legacy).
        source: where it came from.
        legacy_adult: for a LEGACY account, whether its stored band is adult.
        policy: the tenant's policy for declared dates.
        today: the day of the consent (Asia/Shanghai).
    """
    if source is AgeSource.LEGACY:
        return "" if legacy_adult else "GUARDIAN_NOT_ADULT"
    if birth is None or age_on(birth, today) < ADULT_AGE:
        return "GUARDIAN_NOT_ADULT"
    if source is AgeSource.DECLARED and policy is DeclaredBirthDates.NOT_FOR_GUARDIANS:
        return "GUARDIAN_AGE_DECLARED"
    return ""


__all__ = [
    "FIELD",
    "AgeSource",
    "BirthDateMismatch",
    "DeclaredBirthDates",
    "choose",
    "guardian_refusal",
    "parse_declared",
    "parse_policy",
]

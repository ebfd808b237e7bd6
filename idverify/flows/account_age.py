"""An account's age on the day asked, from the birth date it keeps sealed.

A binding copies the verification's sealed birth date (``birth_sealed``) and its source
(``age_source``) onto the account; the band is computed whenever it is read, so a 17-year-old
becomes an adult on their birthday with nothing rewritten. The date is sealed to the tenant and
the account pseudonym, once per verification, and copied as sealed by the store's binding
(``bind_account`` in the scripts' prelude).
Accounts bound before this carry no source: they keep the band of their binding day (LEGACY).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Final

from idverify.domain.age import age_band
from idverify.domain.birth_dates import AgeSource
from idverify.domain.subjects import AgeBand
from idverify.privacy.sealing import Sealer, SealError, associated_data, sealed_from_text, sealed_to_text

# The sealing purpose of a birth date; its context is the account pseudonym.
BIRTH_DATE: Final = "birth-date"


@dataclass(frozen=True, slots=True)
class AccountAge:
    """An account's age facts on one day; band and source are None for an unbound account."""

    band: AgeBand | None
    source: AgeSource | None
    birth: date | None = field(default=None, repr=False)


class AccountAges:
    """Seals birth dates for accounts and reads accounts' ages."""

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer

    def seal(self, tenant: str, account_ps: str, birth: date) -> str:
        """The birth date sealed for the account (the text form a binding copies)."""
        associated = associated_data(tenant, BIRTH_DATE, account_ps)
        return sealed_to_text(self._sealer.seal(birth.isoformat().encode(), associated=associated))

    def read(self, tenant: str, account_ps: str, record: Mapping[str, str], today: date) -> AccountAge:
        """The age facts of an account hash (as read from the store) on ``today``."""
        if not record.get("identity"):
            return AccountAge(None, None)
        source_text = record.get("age_source")
        if source_text is None:
            stored = record.get("age_band", "")
            return AccountAge(AgeBand(stored) if stored in _BANDS else AgeBand.UNKNOWN, AgeSource.LEGACY)
        try:
            source = AgeSource(source_text)
        except ValueError:
            return AccountAge(AgeBand.UNKNOWN, AgeSource.NONE)
        birth = self._open(tenant, account_ps, record.get("birth_sealed", ""))
        if birth is None:
            return AccountAge(AgeBand.UNKNOWN, source)
        # A birth date after today means a clock set far back: the child's side is the safe one.
        band = AgeBand.UNDER_14 if birth > today else age_band(birth, today)
        return AccountAge(band, source, birth)

    def _open(self, tenant: str, account_ps: str, text: str) -> date | None:
        if not text:
            return None
        try:
            opened = self._sealer.unseal(
                sealed_from_text(text), associated=associated_data(tenant, BIRTH_DATE, account_ps)
            )
            return date.fromisoformat(opened.decode())
        except (SealError, ValueError):
            return None


_BANDS: Final = frozenset(band.value for band in AgeBand)

__all__ = ["BIRTH_DATE", "AccountAge", "AccountAges"]

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""ISO 3166-1 country codes (alpha-2, alpha-3, numeric): the officially assigned ones, from pycountry.

pycountry ships Debian's ``iso-codes`` list; user-assigned and ICAO-only codes (``XK``, ``D``,
``XXA``) are not in it, so a document naming them is refused.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

import pycountry

# Built once: documents are checked on every call, and a dict lookup is cheaper than pycountry's get().
ALPHA2_CODES: Final = frozenset(country.alpha_2 for country in pycountry.countries)
ALPHA2_BY_ALPHA3: Final = MappingProxyType(
    {country.alpha_3: country.alpha_2 for country in pycountry.countries}
)
ALPHA2_BY_NUMERIC: Final = MappingProxyType(
    {country.numeric: country.alpha_2 for country in pycountry.countries}
)


def to_alpha2(code: str) -> str | None:
    """Return the alpha-2 code for an upper-case alpha-2 or alpha-3 code, or None when unassigned."""
    if len(code) == 2:  # noqa: PLR2004 - the length is what tells alpha-2 from alpha-3
        return code if code in ALPHA2_CODES else None
    return ALPHA2_BY_ALPHA3.get(code)

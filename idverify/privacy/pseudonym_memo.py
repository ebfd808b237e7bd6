"""Remembers the pseudonyms of recently seen values, so that a repeated batch costs no HMAC.

A timeline or a comment thread shows the same accounts over and over, and a batch read of their
IP labels pseudonymizes every id it names, and a hundred HMACs cost more than the rest of the
call's own work (docs/PERFORMANCE.md). Pseudonyms never change for the life of a keyring (their
pepper is pinned), so each keyring keeps its own memo and a reloaded keyring starts afresh.

The memo is bounded: once full, the oldest quarter of its entries (in order of first sight) is
forgotten, and a keyring keeps the memos of a few tenants and purposes at once. It holds account
ids and their pseudonyms in the worker's memory only, beside the keys that derive them; nothing
of it is written anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import islice
from typing import cast

DEFAULT_ENTRIES = 1 << 14  # ~4 MB at 64-character ids
# Memos a keyring keeps at once (one per tenant and purpose): at most ~32 MB per worker.
MAX_PSEUDONYM_MEMOS = 8


class PseudonymMemo:
    """Pseudonyms of one (tenant, purpose), computed on a miss by ``derive``.

    Args:
        derive: the pseudonyms of a list of values, in order.
        max_entries: how many values it remembers.
    """

    __slots__ = ("_derive", "_known", "_max_entries")

    def __init__(
        self, derive: Callable[[Sequence[str]], list[str]], max_entries: int = DEFAULT_ENTRIES
    ) -> None:
        self._derive = derive
        self._max_entries = max_entries
        self._known: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._known)

    def of(self, values: Sequence[str]) -> list[str]:
        """The pseudonym of each value, in order."""
        found = list(map(self._known.get, values))
        if None not in found:
            return cast("list[str]", found)
        missing = [value for value, pseudonym in zip(values, found, strict=True) if pseudonym is None]
        derived = self._derive(missing)
        self._remember(missing, derived)
        fill = iter(derived)
        return [pseudonym if pseudonym is not None else next(fill) for pseudonym in found]

    def _remember(self, values: Sequence[str], pseudonyms: Sequence[str]) -> None:
        self._known.update(zip(values, pseudonyms, strict=True))
        excess = len(self._known) - self._max_entries
        if excess > 0:
            for value in list(islice(self._known, excess + self._max_entries // 4)):
                del self._known[value]

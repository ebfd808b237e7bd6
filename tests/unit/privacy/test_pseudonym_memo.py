"""The bounded memory of derived pseudonyms: derives only what it has not seen, forgets the oldest."""

from __future__ import annotations

from collections.abc import Sequence

from idverify.privacy.pseudonym_memo import PseudonymMemo


class CountingDerivation:
    """A stand-in derivation that records what it was asked for."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def __call__(self, values: Sequence[str]) -> list[str]:
        self.asked.append(list(values))
        return [f"p({value})" for value in values]


def test_only_unseen_values_are_derived_and_order_is_kept() -> None:
    derive = CountingDerivation()
    memo = PseudonymMemo(derive)

    assert memo.of(["a", "b"]) == ["p(a)", "p(b)"]
    assert memo.of(["c", "a", "d", "b"]) == ["p(c)", "p(a)", "p(d)", "p(b)"]
    assert memo.of(["b", "d"]) == ["p(b)", "p(d)"]

    assert derive.asked == [["a", "b"], ["c", "d"]]


def test_an_empty_batch_derives_nothing() -> None:
    derive = CountingDerivation()

    assert PseudonymMemo(derive).of([]) == []
    assert derive.asked == []


def test_a_full_memo_forgets_its_oldest_quarter() -> None:
    derive = CountingDerivation()
    memo = PseudonymMemo(derive, max_entries=8)
    memo.of([f"v{n}" for n in range(8)])

    memo.of(["v8"])

    assert len(memo) == 6  # 9 seen, 1 over the bound, then a quarter of 8 more
    derive.asked.clear()
    memo.of(["v0", "v1", "v2", "v3", "v8"])
    assert derive.asked == [["v0", "v1", "v2"]]


def test_it_never_holds_more_than_its_bound() -> None:
    memo = PseudonymMemo(CountingDerivation(), max_entries=100)

    for start in range(0, 5000, 37):
        memo.of([f"v{n}" for n in range(start, start + 50)])
        assert len(memo) <= 100

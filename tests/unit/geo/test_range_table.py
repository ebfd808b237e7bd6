"""The compact range table the resolver answers from."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idverify.geo._range_table import RangeTable, RangeTableBuilder


def segments_and_table(
    bounds: list[int], labels: list[str | None], address_bits: int
) -> tuple[list[tuple[int, int, str | None]], RangeTable[str]]:
    """The segments between ``bounds`` with ``labels``, and a 32-bit-keyed table of the labelled ones."""
    segments = [
        (first, following - 1, labels[index])
        for index, (first, following) in enumerate(itertools.pairwise(bounds))
    ]
    builder = RangeTableBuilder[str](address_bits, 32)
    for first, last, label in segments:
        if label is not None:
            builder.add(first, last, label)
    return segments, builder.build()


class TestRangeTable:
    def test_merges_neighbours_with_equal_answers(self) -> None:
        """Adjacent ranges with one answer take one entry."""
        table = RangeTableBuilder[str](32, 32).add_all([(0, 9, "a"), (10, 19, "a"), (20, 29, "b")]).build()
        assert [table.find(value) for value in (0, 19, 20, 29)] == ["a", "a", "b", "b"]
        assert len(table) == 3  # a, b, and the rest of the space

    def test_gaps_and_tail_ask_the_database(self) -> None:
        """Addresses no range covers map to None."""
        builder = RangeTableBuilder[str](32, 32)
        builder.add(100, 199, "a")
        table = builder.build()
        assert [table.find(value) for value in (0, 99, 100, 199, 200, 2**32 - 1)] == [
            None,
            None,
            "a",
            "a",
            None,
            None,
        ]

    def test_split_blocks_answer_from_their_own_table(self) -> None:
        """With 64-bit keys, a /64 split into smaller ranges answers from a table of its own."""
        block = 1 << 64
        builder = RangeTableBuilder[str](128, 64)
        builder.add(0, 5 * block - 1, "a")
        builder.add(5 * block, 5 * block + 99, "b")
        builder.add(5 * block + 200, 9 * block - 1, "c")
        table = builder.build()
        assert table.find(4 * block + 7) == "a"
        assert table.find(5 * block) == "b"
        assert table.find(5 * block + 99) == "b"
        assert table.find(5 * block + 100) is None
        assert table.find(5 * block + 500) == "c"
        assert table.find(6 * block) == "c"
        assert table.find(9 * block) is None

    @pytest.mark.parametrize(("first", "last"), [(5, 4), (0, 2**32)])
    def test_rejects_bad_ranges(self, first: int, last: int) -> None:
        """Inverted ranges and ranges outside the space are refused."""
        with pytest.raises(ValueError, match="ascend"):
            RangeTableBuilder[str](32, 32).add(first, last, "a")

    def test_rejects_overlap(self) -> None:
        """Ranges must ascend without overlapping."""
        builder = RangeTableBuilder[str](32, 32)
        builder.add(10, 20, "a")
        with pytest.raises(ValueError, match="ascend"):
            builder.add(20, 30, "b")

    @given(
        st.integers(0, 8),
        st.lists(st.integers(1, (40 << 8) - 1), max_size=40, unique=True),
        st.lists(st.sampled_from(["a", "b", None]), min_size=41, max_size=41),
    )
    def test_matches_brute_force(self, shift: int, cuts: list[int], labels: list[str | None]) -> None:
        """For any ranges and key width, every address maps to its range's answer, None in gaps."""
        size = 40 << shift
        bounds = [0, *sorted(cut for cut in cuts if cut < size), size]
        segments, table = segments_and_table(bounds, labels, 32 + shift)
        for first, last, label in segments:
            for value in {first, last, (first + last) // 2, first + 1, last - 1} & set(
                range(first, last + 1)
            ):
                assert table.find(value) == label
        assert table.find(size) is None
        assert table.find((1 << (32 + shift)) - 1) is None

    @given(
        st.integers(0, 8),
        st.lists(st.integers(1, 2**40 - 1), max_size=30, unique=True),
        st.lists(st.sampled_from(["a", "b", "c", None]), min_size=31, max_size=31),
    )
    def test_complete_only_without_gaps(self, shift: int, cuts: list[int], labels: list[str | None]) -> None:
        """A table is complete exactly when ranges cover the whole space, split blocks included."""
        size = 1 << (32 + shift)
        bounds = [0, *sorted({cut % size for cut in cuts} - {0}), size]
        segments, table = segments_and_table(bounds, labels, 32 + shift)
        assert table.complete == all(label is not None for _, _, label in segments)
        for first, last, label in segments:
            assert table.find(first) == label
            assert table.find(last) == label

    def test_a_range_without_an_answer_is_a_gap(self) -> None:
        """A range added with None leaves its addresses to the database, like a hole."""
        table = (
            RangeTableBuilder[str](32, 32)
            .add_all([(0, 9, "a"), (10, 19, None), (20, 2**32 - 1, "b")])
            .build()
        )
        assert (table.complete, table.find(15)) == (False, None)
        whole = RangeTableBuilder[str](32, 32).add_all([(0, 9, "a"), (10, 2**32 - 1, "b")]).build()
        assert (whole.complete, whole.find(15)) == (True, "b")

"""What the benchmarks share: side-by-side rounds, the spread of their ratios, and how figures print."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

Side = TypeVar("Side", bound=Hashable)


def side_by_side(
    rounds: int, sides: Sequence[Side], measure: Callable[[int, Side], float], *, alternate: bool = False
) -> dict[Side, list[float]]:
    """Each side's figure of every round, ``measure(round, side)``, the sides taken one after another.

    Taking them in turn, round after round, puts the machine's drift over a run on every side alike
    (a ratio of runs taken minutes apart measures the drift). ``alternate`` reverses the order
    every other round, for a side that warms what the next one reads.
    """
    figures: dict[Side, list[float]] = {side: [] for side in sides}
    for turn in range(rounds):
        order = sides if not alternate or turn % 2 == 0 else list(reversed(sides))
        for side in order:
            figures[side].append(measure(turn, side))
    return figures


def ratio_spread(
    name: str, numerators: Sequence[float], denominators: Sequence[float], *, digits: int = 3
) -> dict[str, float]:
    """``<name>_median``, ``_min`` and ``_max`` of the rounds' own ratios (each round's pair side by side)."""
    ratios = [top / bottom for top, bottom in zip(numerators, denominators, strict=True)]
    return {
        f"{name}_median": round(statistics.median(ratios), digits),
        f"{name}_min": round(min(ratios), digits),
        f"{name}_max": round(max(ratios), digits),
    }


def print_figures(figures: Mapping[str, object], *, as_json: bool) -> None:
    """Prints the figures as one JSON object (``--json``) or as ``name: value`` lines."""
    if as_json:
        print(json.dumps(figures))
        return
    width = max((len(name) for name in figures), default=0)
    for name, value in figures.items():
        print(f"{name:>{width}}: {value}")

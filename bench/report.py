"""How the benchmarks print their figures: one JSON object, or one aligned line per figure."""

from __future__ import annotations

import json
from collections.abc import Mapping


def print_figures(figures: Mapping[str, object], *, as_json: bool) -> None:
    """Prints the figures as one JSON object (``--json``) or as ``name: value`` lines."""
    if as_json:
        print(json.dumps(figures))
        return
    width = max((len(name) for name in figures), default=0)
    for name, value in figures.items():
        print(f"{name:>{width}}: {value}")

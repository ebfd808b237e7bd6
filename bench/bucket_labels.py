"""The label search of a tenant's 1,024 buckets (``store.buckets.search_layout``), beside bare CRC16s.

Usage: python bench/bucket_labels.py [--rounds N] [--tenants N] [--json]

A tenant's search runs once, when its layout is planned; its time is the figure. The floor is
the same number of CRC16s (``binascii.crc_hqx``, what redis-py's ``key_slot`` calls) over label
texts, with nothing else around them, timed side by side round after round.
"""

from __future__ import annotations

import argparse
import binascii
import os
import platform
import statistics
import time

from report import print_figures, ratio_spread, side_by_side

from idverify.store.buckets import search_layout


def _crc16s(tenant: str, count: int) -> None:
    for number in range(count):
        binascii.crc_hqx(f"t:{tenant}:{number}".encode("ascii"), 0)


def main() -> None:
    """Print the search's median time per tenant, the CRC16s it takes, and its ratio to the floor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    options = parser.parse_args()
    tenants = [f"tenant-{n}" for n in range(options.tenants)]
    # The search reads labels n = 0 .. the largest label: that many CRC16s.
    crcs = {
        tenant: max(int(label.rpartition(":")[2]) for label in search_layout(tenant).labels) + 1
        for tenant in tenants
    }

    def measure(turn: int, side: str) -> float:
        del turn
        start = time.perf_counter()
        for tenant in tenants:
            if side == "search":
                search_layout(tenant)
            else:
                _crc16s(tenant, crcs[tenant])
        return (time.perf_counter() - start) / len(tenants) * 1000

    rounds = side_by_side(options.rounds, ["search", "floor"], measure, alternate=True)
    figures: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "tenants": options.tenants,
        "crc16s_per_search_median": statistics.median(crcs.values()),
        "crc16s_per_search_max": max(crcs.values()),
        "search_ms_median": round(statistics.median(rounds["search"]), 2),
        "floor_ms_median": round(statistics.median(rounds["floor"]), 2),
        **ratio_spread("search_to_floor", rounds["search"], rounds["floor"], digits=2),
    }
    print_figures(figures, as_json=options.json)


if __name__ == "__main__":
    main()

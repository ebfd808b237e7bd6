"""Per-id cost of batch pseudonyms: ``hmac_sha256_each`` beside the standard library's two ways.

Usage: python bench/hmac_batch.py [--rounds N] [--json]

Each round times every way once, in alternating order so that a slower stretch of a shared
machine does not fall on one of them only; the figure is the median over the rounds. The key is
as long as a keyring subkey and the ids as long as typical account ids; batch sizes go up to
``GetIpLocations``' limit.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable

from report import print_figures

from idverify.flows.accounts import MAX_BATCH
from idverify.privacy.hmac_batch import hmac_sha256_each
from idverify.privacy.keyring import SUBKEY_BYTES

Way = Callable[[bytes, list[bytes]], list[bytes]]
_CALL_IDS = 20_000  # ids a timed sample covers, whatever the batch size


def _copy_of_keyed_hmac(key: bytes, messages: Iterable[bytes]) -> list[bytes]:
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    digests = []
    for message in messages:
        mac = keyed.copy()
        mac.update(message)
        digests.append(mac.digest())
    return digests


def _hmac_digest(key: bytes, messages: Iterable[bytes]) -> list[bytes]:
    return [hmac.digest(key, message, "sha256") for message in messages]


WAYS: dict[str, Way] = {
    "hmac_sha256_each": hmac_sha256_each,
    "hmac.new().copy()": _copy_of_keyed_hmac,
    "hmac.digest": _hmac_digest,
}


def _medians(key: bytes, messages: list[bytes], rounds: int) -> dict[str, float]:
    calls = max(1, _CALL_IDS // len(messages))
    samples: dict[str, list[float]] = {name: [] for name in WAYS}
    for round_number in range(rounds):
        order = list(WAYS) if round_number % 2 == 0 else list(reversed(WAYS))
        for name in order:
            way = WAYS[name]
            start = time.perf_counter()
            for _ in range(calls):
                way(key, messages)
            samples[name].append((time.perf_counter() - start) / (calls * len(messages)) * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    """Print the median µs an id of each way and its ratio to ``hmac_sha256_each``, by batch size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    options = parser.parse_args()
    figures: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    }
    key = os.urandom(SUBKEY_BYTES)
    for size in (1, 10, 100, MAX_BATCH):
        messages = [f"acct-{number:012d}-{os.urandom(8).hex()}".encode() for number in range(size)]
        if len({tuple(way(key, messages)) for way in WAYS.values()}) != 1:
            raise SystemExit("the ways disagree")
        medians = _medians(key, messages, options.rounds)
        base = medians["hmac_sha256_each"]
        figures[f"batch {size}"] = ", ".join(
            f"{name} {value:.2f} µs ({value / base:.2f}x)" for name, value in medians.items()
        )
    print_figures(figures, as_json=options.json)


if __name__ == "__main__":
    main()

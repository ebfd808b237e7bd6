"""``bucket_of`` spreads keyed names evenly over the 1,024 buckets, and only over them."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from idverify.domain.buckets import BUCKETS, bucket_of

SAMPLES = 200_000
# Chi-square over 1,024 cells has 1,023 degrees of freedom: mean 1,023, standard deviation
# sqrt(2 * 1,023) ≈ 45. Six deviations above the mean: an even spread passes with certainty
# for a fixed seed, and the skews below land thousands above it.
BOUND = 1023 + 6 * 45


def pseudonyms(seed: int) -> list[str]:
    """What ``bucket_of`` is given: 32-hex-digit pseudonyms, random to anyone without the keyring."""
    draw = random.Random(seed)  # noqa: S311 - a fixed seed, so the statistic is the same every run
    return [f"{draw.getrandbits(128):032x}" for _ in range(SAMPLES)]


def chi_square(bucket: Callable[[str], int], names: list[str]) -> float:
    counts = [0] * BUCKETS
    for name in names:
        counts[bucket(name)] += 1
    expected = len(names) / BUCKETS
    return sum((count - expected) ** 2 / expected for count in counts)


def test_buckets_are_in_range_and_stable() -> None:
    names = pseudonyms(1)[:2000]
    assert all(0 <= bucket_of(name) < BUCKETS for name in names)
    assert [bucket_of(name) for name in names] == [bucket_of(name) for name in names]
    assert bucket_of("0" * 32) == int.from_bytes(hashlib.sha256(b"0" * 32).digest()[:2], "big") % 1024


def test_two_hundred_thousand_pseudonyms_spread_evenly() -> None:
    assert chi_square(bucket_of, pseudonyms(26)) < BOUND


def test_the_bound_refuses_a_skewed_spread() -> None:
    """The same statistic on what a careless change would make fails the bound by far."""
    names = pseudonyms(26)

    def mod_1000(name: str) -> int:  # the modulus no longer divides 65,536: low buckets twice as full
        return int.from_bytes(hashlib.sha256(name.encode()).digest()[:2], "big") % 1000

    def one_byte(name: str) -> int:  # a byte of hash: 256 buckets used, 768 empty
        return hashlib.sha256(name.encode()).digest()[0] % BUCKETS

    assert chi_square(mod_1000, names) > 2 * BOUND
    assert chi_square(one_byte, names) > 2 * BOUND

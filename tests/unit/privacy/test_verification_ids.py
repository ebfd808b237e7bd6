"""Verification ids that name their account's bucket to the keyring, and to nobody else."""

from __future__ import annotations

import re
import secrets
from collections import Counter

import pytest

from idverify.domain.buckets import BUCKETS, bucket_of
from idverify.privacy.keyring import Keyring
from idverify.privacy.verification_ids import new_verification_id, verification_id_bucket

TENANT = "acme"
HEX32 = re.compile(r"[0-9a-f]{32}")


def top_bits(verification_id: str) -> int:
    return int(verification_id, 16) >> 118


def accounts_in_one_bucket(keyring: Keyring, count: int) -> tuple[int, list[str]]:
    """``count`` account ids whose pseudonyms share a bucket, and that bucket."""
    by_bucket: dict[int, list[str]] = {}
    n = 0
    while True:
        account = f"user-{n}"
        bucket = bucket_of(keyring.pseudonym(TENANT, "account", account))
        by_bucket.setdefault(bucket, []).append(account)
        if len(by_bucket[bucket]) == count:
            return bucket, by_bucket[bucket]
        n += 1


def test_a_new_id_is_32_hex_digits_and_names_its_bucket() -> None:
    keyring = Keyring.generate()
    for bucket in (0, 1, 511, BUCKETS - 1, *range(0, BUCKETS, 37)):
        made = new_verification_id(keyring, TENANT, bucket)
        assert HEX32.fullmatch(made)
        assert verification_id_bucket(keyring, TENANT, made) == bucket


def test_the_bucket_survives_a_pepper_rotation() -> None:
    """The MAC is under the pinned pepper: a rotation never moves an id to another bucket."""
    keyring = Keyring.generate()
    made = [new_verification_id(keyring, TENANT, bucket) for bucket in range(0, BUCKETS, 5)]
    rotated = keyring.with_new_pepper()
    assert [verification_id_bucket(rotated, TENANT, vid) for vid in made] == list(range(0, BUCKETS, 5))


def test_an_old_random_id_decodes_to_some_bucket() -> None:
    keyring = Keyring.generate()
    for _ in range(100):
        assert 0 <= verification_id_bucket(keyring, TENANT, secrets.token_hex(16)) < BUCKETS


@pytest.mark.parametrize("bad", ["", "A" * 32, "0" * 31, "0" * 33, "g" * 32, " " + "0" * 31])
def test_a_malformed_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="32 lower-case hex digits"):
        verification_id_bucket(Keyring.generate(), TENANT, bad)


def test_a_bucket_out_of_range_is_a_callers_bug() -> None:
    for bad in (-1, BUCKETS):
        with pytest.raises(ValueError, match="range"):
            new_verification_id(Keyring.generate(), TENANT, bad)


class TestAThiefWithIds:
    """Someone holding ids (a leaked log, a Redis dump) but not the keyring."""

    def test_ids_of_accounts_in_one_bucket_share_no_top_bits_beyond_chance(self) -> None:
        """5,000 ids of ten accounts in one bucket: their top 10 bits spread like random ones.

        Uniform over 1,024 values, the most frequent of 5,000 draws comes up about 15 times;
        30 is out of reach by chance (below 1e-6 for all 1,024 values together). Ids that
        showed their bucket would all share one value.
        """
        keyring = Keyring.generate()
        bucket, accounts = accounts_in_one_bucket(keyring, 10)
        made = [new_verification_id(keyring, TENANT, bucket) for _ in accounts for _ in range(500)]
        assert all(verification_id_bucket(keyring, TENANT, vid) == bucket for vid in made)
        tops = Counter(top_bits(vid) for vid in made)
        assert tops.most_common(1)[0][1] < 30
        assert tops[bucket] < 30

    def test_pairs_of_ids_of_two_same_bucket_accounts_match_at_chance(self) -> None:
        """Across 4,000,000 pairs, top bits match about 1 in 1,024, as for ids of any two buckets."""
        keyring = Keyring.generate()
        bucket, _ = accounts_in_one_bucket(keyring, 2)
        first = Counter(top_bits(new_verification_id(keyring, TENANT, bucket)) for _ in range(2000))
        second = Counter(top_bits(new_verification_id(keyring, TENANT, bucket)) for _ in range(2000))
        matches = sum(count * second[top] for top, count in first.items())
        expected = 2000 * 2000 / BUCKETS
        assert 0.8 * expected < matches < 1.2 * expected

    def test_another_keyring_reads_no_bucket(self) -> None:
        """Decoded under a key that is not the tenant's, the bucket is a random guess."""
        keyring, other = Keyring.generate(), Keyring.generate()
        made = [new_verification_id(keyring, TENANT, 7) for _ in range(3000)]
        assert sum(verification_id_bucket(other, TENANT, vid) == 7 for vid in made) < 20
        assert sum(verification_id_bucket(keyring, "other-tenant", vid) == 7 for vid in made) < 20

"""Tests of the argon2id identity index: profiles, PHC text, determinism, rotation and the async path."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from argon2.low_level import Type, hash_secret_raw
from hypothesis import given, settings
from hypothesis import strategies as st

from idverify.domain.errors import ConfigError
from idverify.domain.subjects import DocumentType
from idverify.privacy import identity_index
from idverify.privacy.identity_index import (
    DEFAULT,
    INDEX_PURPOSE,
    TEST_ONLY_FAST,
    Argon2Params,
    IdentityIndexer,
    IndexValue,
    parse_index_params,
)
from idverify.privacy.keyring import Keyring, UnknownKeyVersion

if TYPE_CHECKING:
    from collections.abc import Iterator

RIC = "11010119900307763X"
OTHER_RIC = "110101199003071234"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
def indexer(keyring: Keyring) -> Iterator[IdentityIndexer]:
    with IdentityIndexer(keyring, TEST_ONLY_FAST, max_workers=2) as fast:
        yield fast


class TestArgon2Params:
    def test_default_profile_is_owasp_minimum(self) -> None:
        """DEFAULT is 19 MiB, 2 passes, 1 lane, 32 bytes."""
        assert (DEFAULT.memory_kib, DEFAULT.time_cost, DEFAULT.parallelism, DEFAULT.hash_len) == (
            19456,
            2,
            1,
            32,
        )

    def test_test_only_profile_is_the_cheapest_argon2_accepts(self) -> None:
        """TEST_ONLY_FAST uses argon2's minimum memory and a single pass."""
        assert (TEST_ONLY_FAST.memory_kib, TEST_ONLY_FAST.time_cost, TEST_ONLY_FAST.parallelism) == (8, 1, 1)
        with pytest.raises(ValueError, match="memory_kib"):
            Argon2Params(memory_kib=7, time_cost=1, parallelism=1)

    def test_from_config_accepts_owasp_settings(self) -> None:
        """The OWASP-recommended settings load."""
        assert Argon2Params.from_config(memory_kib=19456, time_cost=2, parallelism=1) == DEFAULT
        assert Argon2Params.from_config(memory_kib=47104, time_cost=1, parallelism=1).memory_kib == 47104
        assert Argon2Params.from_config(memory_kib=7168, time_cost=5, parallelism=1).time_cost == 5

    @pytest.mark.parametrize(
        ("memory_kib", "time_cost", "parallelism"),
        [
            (19456, 1, 1),
            (8, 1, 1),
            (12288, 2, 1),
        ],
    )
    def test_from_config_refuses_weak_costs(self, memory_kib: int, time_cost: int, parallelism: int) -> None:
        """Costs below OWASP's minimums are refused unless allow_weak is set."""
        with pytest.raises(ConfigError, match="OWASP"):
            Argon2Params.from_config(memory_kib=memory_kib, time_cost=time_cost, parallelism=parallelism)
        weak = Argon2Params.from_config(
            memory_kib=memory_kib, time_cost=time_cost, parallelism=parallelism, allow_weak=True
        )
        assert weak.memory_kib == memory_kib

    @pytest.mark.parametrize(
        "values",
        [
            {"memory_kib": 19456, "time_cost": 0, "parallelism": 1},
            {"memory_kib": 19456, "time_cost": 2, "parallelism": 0},
            {"memory_kib": 19456 * 1024, "time_cost": 2, "parallelism": 1},
            {"memory_kib": 19456, "time_cost": 1000, "parallelism": 1},
            {"memory_kib": 19456, "time_cost": True, "parallelism": 1},
            {"memory_kib": "19456", "time_cost": 2, "parallelism": 1},
            {"memory_kib": 19456.0, "time_cost": 2, "parallelism": 1},
            {"memory_kib": 64, "time_cost": 2, "parallelism": 16},
        ],
    )
    def test_from_config_refuses_invalid_values(self, values: dict[str, object]) -> None:
        """Out-of-range, implausible (bytes for KiB) and non-int values are refused even with allow_weak."""
        with pytest.raises(ConfigError, match="argon2"):
            Argon2Params.from_config(**values, allow_weak=True)  # type: ignore[arg-type]

    def test_hash_len_is_fixed(self) -> None:
        """The index length is part of the key schema and cannot vary."""
        with pytest.raises(ValueError, match="hash_len"):
            Argon2Params(memory_kib=19456, time_cost=2, parallelism=1, hash_len=16)

    def test_encode(self) -> None:
        """Parameters encode as the PHC parameter segment."""
        assert DEFAULT.encode() == "m=19456,t=2,p=1"


class TestIndexParamsText:
    def test_phc_text_of_an_index_value(self) -> None:
        """An index value carries its parameters and pepper in PHC form."""
        value = IndexValue(digest=bytes(32), pepper_version="p1", params=DEFAULT)
        assert value.phc == "$argon2id$v=19$m=19456,t=2,p=1$p1"

    @settings(database=None)
    @given(
        memory_kib=st.integers(min_value=8, max_value=4 * 1024 * 1024),
        time_cost=st.integers(min_value=1, max_value=64),
        pepper=st.integers(min_value=1, max_value=999_999),
    )
    def test_phc_round_trip(self, memory_kib: int, time_cost: int, pepper: int) -> None:
        """Parsing the PHC text of any valid profile gives the profile and pepper back."""
        params = Argon2Params(memory_kib=memory_kib, time_cost=time_cost, parallelism=1)
        value = IndexValue(digest=bytes(32), pepper_version=f"p{pepper}", params=params)
        assert parse_index_params(value.phc) == (params, f"p{pepper}")

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "$argon2id$v=19$m=19456,t=2,p=1",
            "$argon2i$v=19$m=19456,t=2,p=1$p1",
            "$argon2id$v=16$m=19456,t=2,p=1$p1",
            "$argon2id$v=19$m=019456,t=2,p=1$p1",
            "$argon2id$v=19$m=19456,t=2,p=1$w1",
            "$argon2id$v=19$m=19456,t=2,p=1$p1\n",
            "$argon2id$v=19$t=2,m=19456,p=1$p1",
            "$argon2id$v=19$m=4,t=2,p=1$p1",
            "$argon2id$v=19$m=19456,t=2,p=1$p1$extra",
        ],
    )
    def test_parse_rejects_malformed_text(self, text: str) -> None:
        """Anything but the exact PHC form with valid parameters raises ValueError."""
        with pytest.raises(ValueError):  # noqa: PT011 - the messages differ by cause
            parse_index_params(text)

    def test_repr_hides_the_digest(self) -> None:
        """An index value's repr shows its parameters, never its bytes."""
        value = IndexValue(digest=bytes(range(32)), pepper_version="p1", params=DEFAULT)
        assert bytes(range(32)).hex() not in repr(value)
        assert "\\x01" not in repr(value)
        assert "$argon2id$v=19$m=19456,t=2,p=1$p1" in repr(value)


class TestIdentityIndexer:
    def test_index_is_pinned_argon2id(self, keyring: Keyring) -> None:
        """The index is argon2id over the length-prefixed type and number, salted from the index subkey."""
        with IdentityIndexer(keyring, TEST_ONLY_FAST, max_workers=1) as fast:
            value = fast.compute("tenant-a", DocumentType.CN_RIC, RIC)
        secret = b"\x00\x06cn_ric" + b"\x00\x12" + RIC.encode()
        salt = keyring.mac("tenant-a", INDEX_PURPOSE, b"idverify/identity-index/argon2id-salt/v1")[:16]
        assert value.digest == hash_secret_raw(secret, salt, 1, 8, 1, 32, Type.ID)
        assert value.pepper_version == "p1"
        assert value.params == TEST_ONLY_FAST

    def test_deterministic_within_tenant(self, indexer: IdentityIndexer) -> None:
        """The same document in the same tenant always gives the same index."""
        one = indexer.compute("tenant-a", DocumentType.CN_RIC, RIC)
        two = indexer.compute("tenant-a", "cn_ric", RIC)
        assert one == two
        assert len(one.digest) == 32

    def test_tenants_cannot_be_joined(self, indexer: IdentityIndexer) -> None:
        """The same document indexes differently in two tenants."""
        assert (
            indexer.compute("tenant-a", DocumentType.CN_RIC, RIC).digest
            != indexer.compute("tenant-b", DocumentType.CN_RIC, RIC).digest
        )

    def test_documents_and_types_differ(self, indexer: IdentityIndexer) -> None:
        """Another number, or the same number as another document type, is another index."""
        base = indexer.compute("t", DocumentType.CN_RIC, RIC).digest
        assert indexer.compute("t", DocumentType.CN_RIC, OTHER_RIC).digest != base
        assert indexer.compute("t", DocumentType.PASSPORT, RIC).digest != base

    def test_secret_encoding_is_unambiguous(self) -> None:
        """Moving characters across the type/number boundary changes the secret."""
        assert identity_index._encode_secret("ab", "C") != identity_index._encode_secret("a", "BC")

    def test_pepper_versions_differ(self, keyring: Keyring) -> None:
        """The same document under two pepper versions gives two indexes."""
        rotated = keyring.with_new_pepper()
        with IdentityIndexer(rotated, TEST_ONLY_FAST, max_workers=1) as fast:
            new = fast.compute("t", DocumentType.CN_RIC, RIC)
            old = fast.compute("t", DocumentType.CN_RIC, RIC, pepper_version="p1")
        with IdentityIndexer(keyring, TEST_ONLY_FAST, max_workers=1) as before:
            assert before.compute("t", DocumentType.CN_RIC, RIC) == old
        assert new.pepper_version == "p2"
        assert new.digest != old.digest

    def test_profiles_differ(self, keyring: Keyring) -> None:
        """Another profile gives another index (which is why records carry their parameters)."""
        cheap = Argon2Params(memory_kib=16, time_cost=1, parallelism=1)
        with (
            IdentityIndexer(keyring, TEST_ONLY_FAST, max_workers=1) as one,
            IdentityIndexer(keyring, cheap, max_workers=1) as two,
        ):
            assert one.compute("t", "cn_ric", RIC).digest != two.compute("t", "cn_ric", RIC).digest

    @pytest.mark.parametrize(
        "number", ["", "11010119900307763x", "110101 19900307763X", " 11010119900307763X"]
    )
    def test_rejects_unnormalized_numbers(self, indexer: IdentityIndexer, number: str) -> None:
        """Empty, lower-case or spaced numbers raise instead of silently indexing elsewhere."""
        with pytest.raises(ValueError, match="normalized_number"):
            indexer.compute("t", DocumentType.CN_RIC, number)

    def test_rejects_empty_tenant_and_unknown_pepper(self, indexer: IdentityIndexer) -> None:
        """An empty tenant or an unknown pepper version raises."""
        with pytest.raises(ValueError, match="tenant"):
            indexer.compute("", DocumentType.CN_RIC, RIC)
        with pytest.raises(UnknownKeyVersion):
            indexer.compute("t", DocumentType.CN_RIC, RIC, pepper_version="p5")

    def test_candidates_cover_every_pepper_current_first(self, keyring: Keyring) -> None:
        """During a rotation, candidates gives the index under each pepper, current first."""
        rotated = keyring.with_new_pepper()
        with IdentityIndexer(rotated, TEST_ONLY_FAST, max_workers=2) as fast:
            candidates = fast.candidates("t", DocumentType.CN_RIC, RIC)
            assert [c.pepper_version for c in candidates] == ["p2", "p1"]
            assert candidates[1] == fast.compute("t", DocumentType.CN_RIC, RIC, pepper_version="p1")

    def test_needs_rehash(self, keyring: Keyring) -> None:
        """A record needs rehashing when its profile differs or its pepper is not current."""
        with IdentityIndexer(keyring, DEFAULT, max_workers=1) as indexer:
            assert not indexer.needs_rehash("$argon2id$v=19$m=19456,t=2,p=1$p1")
            assert indexer.needs_rehash("$argon2id$v=19$m=8,t=1,p=1$p1")
            assert indexer.needs_rehash("$argon2id$v=19$m=47104,t=1,p=1$p1")
        with IdentityIndexer(keyring.with_new_pepper(), DEFAULT, max_workers=1) as rotated:
            assert rotated.needs_rehash("$argon2id$v=19$m=19456,t=2,p=1$p1")
            assert not rotated.needs_rehash("$argon2id$v=19$m=19456,t=2,p=1$p2")
            with pytest.raises(ValueError, match="form"):
                rotated.needs_rehash("garbage")

    def test_worker_count(self, keyring: Keyring) -> None:
        """Workers default to the CPU count and must be positive."""
        with IdentityIndexer(keyring, TEST_ONLY_FAST) as default:
            assert default.max_workers == (os.cpu_count() or 1)
        with pytest.raises(ValueError, match="max_workers"):
            IdentityIndexer(keyring, TEST_ONLY_FAST, max_workers=0)

    def test_repr_names_the_profile(self, indexer: IdentityIndexer) -> None:
        """The indexer's repr shows its profile and pool size."""
        assert repr(indexer) == "IdentityIndexer(params=m=8,t=1,p=1, max_workers=2)"

    @settings(database=None, max_examples=25)
    @given(number=st.text(alphabet="0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=1, max_size=20))
    def test_deterministic_for_any_number(self, number: str) -> None:
        """Any normalized number indexes the same way twice."""
        with IdentityIndexer(_SHARED_KEYRING, TEST_ONLY_FAST, max_workers=1) as fast:
            assert fast.compute("t", "passport", number) == fast.compute("t", "passport", number)


_SHARED_KEYRING = Keyring.generate()


class TestAsyncIndexing:
    async def test_compute_async_matches_compute(self, indexer: IdentityIndexer) -> None:
        """The async path gives the same index as the blocking one."""
        assert await indexer.compute_async("t", DocumentType.CN_RIC, RIC) == indexer.compute(
            "t", DocumentType.CN_RIC, RIC
        )

    async def test_candidates_async_matches_candidates(self, keyring: Keyring) -> None:
        """The async candidates equal the blocking ones, in the same order."""
        with IdentityIndexer(
            keyring.with_new_pepper().with_new_pepper(), TEST_ONLY_FAST, max_workers=2
        ) as fast:
            assert await fast.candidates_async("t", "cn_ric", RIC) == fast.candidates("t", "cn_ric", RIC)

    async def test_hashes_run_off_the_event_loop(
        self, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While four DEFAULT-profile hashes run, hashes use pool threads and the event loop keeps turning.

        Counted in turns of the loop seen during each hash, not in seconds: a gap measured against
        one hash's time failed whenever other processes held the machine's cores.
        """
        hashing_threads: list[int] = []
        turns_during_hash: list[int] = []
        turns = 0

        def spying_hash(**kwargs: object) -> bytes:
            hashing_threads.append(threading.get_ident())
            before = turns
            digest = hash_secret_raw(**kwargs)  # type: ignore[arg-type]
            turns_during_hash.append(turns - before)
            return digest

        with IdentityIndexer(keyring, DEFAULT, max_workers=2) as indexer:
            monkeypatch.setattr(identity_index, "hash_secret_raw", spying_hash)
            done = asyncio.Event()

            async def ticker() -> None:
                nonlocal turns
                while not done.is_set():
                    await asyncio.sleep(0)
                    turns += 1

            ticking = asyncio.create_task(ticker())
            numbers = [f"1101011990030700{i}X" for i in range(4)]
            values = await asyncio.gather(*(indexer.compute_async("t", "cn_ric", n) for n in numbers))
            done.set()
            await ticking

        assert len({v.digest for v in values}) == 4
        assert len(hashing_threads) == 4
        assert threading.get_ident() not in hashing_threads
        # On the loop, no turn could happen while a hash ran; off it, the loop turns meanwhile.
        assert max(turns_during_hash) > 0

    async def test_closed_indexer_refuses_work(self, keyring: Keyring) -> None:
        """After close, the async path raises RuntimeError."""
        indexer = IdentityIndexer(keyring, TEST_ONLY_FAST, max_workers=1)
        indexer.close()
        with pytest.raises(RuntimeError):
            await indexer.compute_async("t", "cn_ric", RIC)


def _thread_stat(tid: int) -> tuple[str, int]:
    """A thread of this process: its OS name and nice value, from /proc (Linux's stat field 19)."""
    text = Path(f"/proc/self/task/{tid}/stat").read_text(encoding="ascii")
    name = text[text.index("(") + 1 : text.rindex(")")]
    return name, int(text.rsplit(")", 1)[1].split()[16])


def _record_hashing_threads(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The OS ids of the threads that run hashes from now on."""
    hashing: set[int] = set()

    def recording_hash(**kwargs: object) -> bytes:
        hashing.add(threading.get_native_id())
        return hash_secret_raw(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(identity_index, "hash_secret_raw", recording_hash)
    return hashing


class TestHashThreadPriority:
    async def test_hashes_run_in_named_threads_at_the_lowest_priority(
        self, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each pool thread is named for the OS and runs at nice 19; the event loop's thread keeps its own."""
        loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        hashing = _record_hashing_threads(monkeypatch)
        with IdentityIndexer(keyring.with_new_pepper(), TEST_ONLY_FAST, max_workers=2, niceness=19) as fast:
            for _ in range(20):
                await fast.candidates_async("t", "cn_ric", RIC)
            stats = {tid: _thread_stat(tid) for tid in hashing}

        assert hashing
        assert threading.get_native_id() not in hashing
        assert set(stats.values()) == {(identity_index.HASH_THREAD_NAME, max(19, loop_nice))}
        assert _thread_stat(threading.get_native_id())[1] == loop_nice

    async def test_by_default_hashes_keep_the_callers_priority(
        self, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without niceness the hash runs at the process's priority (the server's default)."""
        loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        hashing = _record_hashing_threads(monkeypatch)
        with IdentityIndexer(keyring, TEST_ONLY_FAST, max_workers=1) as fast:
            await fast.compute_async("t", "cn_ric", RIC)
            (tid,) = hashing
            assert _thread_stat(tid) == (identity_index.HASH_THREAD_NAME, loop_nice)

    def test_niceness_outside_linux_range_is_refused(self, keyring: Keyring) -> None:
        """A nice value Linux would not take is refused at construction, not at the first hash."""
        for niceness in (-1, 20):
            with pytest.raises(ValueError, match="niceness"):
                IdentityIndexer(keyring, TEST_ONLY_FAST, niceness=niceness)

"""Tests of name binding: the keyed hash that ties a normalized name to an identity index."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idverify.privacy.keyring import Keyring, UnknownKeyVersion
from idverify.privacy.name_binding import NAME_PURPOSE, name_binding, names_match

INDEX = bytes(range(32))
OTHER_INDEX = bytes(range(1, 33))
_SHARED_KEYRING = Keyring.generate()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


class TestNameBinding:
    def test_is_hmac_over_length_prefixed_index_and_name(self, keyring: Keyring) -> None:
        """The binding is HMAC-SHA256 under the name subkey over len(index) || index || UTF-8 name."""
        expected = hmac.digest(
            keyring.subkey("t", NAME_PURPOSE), b"\x00\x20" + INDEX + "张三".encode(), hashlib.sha256
        )
        assert name_binding(keyring, "t", INDEX, "张三") == expected

    def test_same_name_matches(self, keyring: Keyring) -> None:
        """The bound name matches its binding."""
        binding = name_binding(keyring, "t", INDEX, "张三")
        assert names_match(keyring, "t", INDEX, "张三", binding)

    def test_other_name_does_not_match(self, keyring: Keyring) -> None:
        """Another name does not match."""
        binding = name_binding(keyring, "t", INDEX, "张三")
        assert not names_match(keyring, "t", INDEX, "李四", binding)

    def test_binding_depends_on_index_and_tenant(self, keyring: Keyring) -> None:
        """The same name bound to another identity, or in another tenant, gives another binding."""
        base = name_binding(keyring, "tenant-a", INDEX, "张三")
        assert name_binding(keyring, "tenant-a", OTHER_INDEX, "张三") != base
        assert name_binding(keyring, "tenant-b", INDEX, "张三") != base

    def test_boundary_between_index_and_name_is_unambiguous(self, keyring: Keyring) -> None:
        """Moving a byte from the index into the name changes the binding."""
        assert name_binding(keyring, "t", b"ab", "c") != name_binding(keyring, "t", b"a", "bc")

    def test_binding_under_an_older_pepper(self, keyring: Keyring) -> None:
        """After a pepper rotation, a binding made earlier matches when checked under its pepper."""
        binding = name_binding(keyring, "t", INDEX, "张三")
        rotated = keyring.with_new_pepper()
        assert names_match(rotated, "t", INDEX, "张三", binding, pepper_version="p1")
        assert not names_match(rotated, "t", INDEX, "张三", binding)
        with pytest.raises(UnknownKeyVersion):
            name_binding(rotated, "t", INDEX, "张三", pepper_version="p3")

    @pytest.mark.parametrize(
        "name", ["", " 张三", "张三 ", "John  Smith", "\uff2a\uff2f\uff28\uff2e", "Jo\u0301hn"]
    )
    def test_rejects_unnormalized_names(self, keyring: Keyring, name: str) -> None:
        """Names that skipped normalization raise instead of reporting a false mismatch."""
        with pytest.raises(ValueError, match="normalized_name"):
            name_binding(keyring, "t", INDEX, name)

    def test_rejects_an_empty_index(self, keyring: Keyring) -> None:
        """An empty index is a bug and raises."""
        with pytest.raises(ValueError, match="index"):
            name_binding(keyring, "t", b"", "张三")

    def test_comparison_is_constant_time(self, keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
        """names_match compares through hmac.compare_digest."""
        calls: list[tuple[bytes, bytes]] = []
        real_compare = hmac.compare_digest

        def spy(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return real_compare(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)  # name_binding calls it through the module
        binding = name_binding(keyring, "t", INDEX, "张三")
        assert names_match(keyring, "t", INDEX, "张三", binding)
        assert calls == [(binding, binding)]

    @settings(database=None, max_examples=50)
    @given(name=st.text(min_size=1, max_size=40))
    def test_any_normalized_name_round_trips(self, name: str) -> None:
        """Any name in normalized form matches its own binding."""
        import unicodedata  # noqa: PLC0415 - only this property test needs it

        normalized = " ".join(unicodedata.normalize("NFKC", name).split())
        if not normalized or not unicodedata.is_normalized("NFKC", normalized):
            return
        binding = name_binding(_SHARED_KEYRING, "t", INDEX, normalized)
        assert names_match(_SHARED_KEYRING, "t", INDEX, normalized, binding)

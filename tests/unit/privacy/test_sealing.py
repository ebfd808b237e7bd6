"""Tests of sealing: AES-SIV round trips, tampering, associated data, versions and rotation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import (
    Sealer,
    SealError,
    SealTampered,
    UnknownSealVersion,
    associated_data,
    sealed_from_text,
    sealed_to_text,
    sealed_version,
)

INDEX = bytes(range(32))
AD = associated_data("tenant-a", "identity-index")
_SHARED_SEALER = Sealer(Keyring.generate())


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
def sealer(keyring: Keyring) -> Sealer:
    return Sealer(keyring)


class TestAssociatedData:
    def test_parts_are_length_prefixed(self) -> None:
        """Moving characters between tenant and purpose changes the associated data."""
        assert associated_data("ab", "c") != associated_data("a", "bc")
        assert associated_data("t", "p", "x") != associated_data("t", "px")
        assert associated_data("t", "p") == b"\x00\x00\x00\x01t\x00\x00\x00\x01p"

    @pytest.mark.parametrize(("tenant", "purpose"), [("", "p"), ("t", "")])
    def test_requires_tenant_and_purpose(self, tenant: str, purpose: str) -> None:
        """An empty tenant or purpose raises ValueError."""
        with pytest.raises(ValueError, match="non-empty"):
            associated_data(tenant, purpose)


class TestSealRoundTrip:
    @settings(database=None)
    @given(plaintext=st.binary(max_size=256), associated=st.binary(max_size=64))
    def test_round_trip(self, plaintext: bytes, associated: bytes) -> None:
        """Whatever is sealed unseals to itself with the same associated data."""
        sealed = _SHARED_SEALER.seal(plaintext, associated=associated)
        assert _SHARED_SEALER.unseal(sealed, associated=associated) == plaintext

    def test_is_deterministic(self, sealer: Sealer) -> None:
        """Sealing the same value twice gives the same bytes, so sealed values work as lookup keys."""
        assert sealer.seal(INDEX, associated=AD) == sealer.seal(INDEX, associated=AD)

    def test_context_changes_the_ciphertext(self, sealer: Sealer) -> None:
        """The same value sealed for another tenant or purpose looks unrelated."""
        base = sealer.seal(INDEX, associated=AD)
        assert sealer.seal(INDEX, associated=associated_data("tenant-b", "identity-index")) != base
        assert sealer.seal(INDEX, associated=associated_data("tenant-a", "name-binding")) != base

    def test_header_names_the_version(self, sealer: Sealer) -> None:
        """A sealed value starts with its wrapping-key version."""
        sealed = sealer.seal(INDEX, associated=AD)
        assert sealed.startswith(b"w1:")
        assert sealed_version(sealed) == "w1"
        assert len(sealed) == len(b"w1:") + 16 + len(INDEX)

    def test_repr_hides_keys(self, keyring: Keyring, sealer: Sealer) -> None:
        """The sealer's repr names the current version only."""
        assert repr(sealer) == "Sealer(current_version='w1')"
        assert keyring.wrapping_key("w1").hex() not in repr(sealer)


class TestSealTampering:
    def test_every_single_bit_flip_is_detected(self, sealer: Sealer) -> None:
        """Flipping any one bit of a sealed value makes unseal raise SealError."""
        sealed = sealer.seal(INDEX, associated=AD)
        for bit in range(len(sealed) * 8):
            tampered = bytearray(sealed)
            tampered[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(SealError):
                sealer.unseal(bytes(tampered), associated=AD)

    def test_body_bit_flip_is_a_tamper(self, sealer: Sealer) -> None:
        """A flipped bit after the header raises SealTampered specifically."""
        tampered = bytearray(sealer.seal(INDEX, associated=AD))
        tampered[-1] ^= 0x01
        with pytest.raises(SealTampered):
            sealer.unseal(bytes(tampered), associated=AD)

    @pytest.mark.parametrize("keep", [0, 2, 3, 10, 18, 34])
    def test_truncation_is_detected(self, sealer: Sealer, keep: int) -> None:
        """A truncated sealed value raises SealError."""
        sealed = sealer.seal(INDEX, associated=AD)
        with pytest.raises(SealError):
            sealer.unseal(sealed[:keep], associated=AD)

    def test_appended_bytes_are_detected(self, sealer: Sealer) -> None:
        """Bytes appended to a sealed value make it fail."""
        with pytest.raises(SealTampered):
            sealer.unseal(sealer.seal(INDEX, associated=AD) + b"\x00", associated=AD)

    @pytest.mark.parametrize(
        "other",
        [
            associated_data("tenant-b", "identity-index"),
            associated_data("tenant-a", "name-binding"),
            b"",
        ],
    )
    def test_wrong_associated_data_is_detected(self, sealer: Sealer, other: bytes) -> None:
        """A value moved to another tenant or field fails to unseal."""
        sealed = sealer.seal(INDEX, associated=AD)
        with pytest.raises(SealTampered):
            sealer.unseal(sealed, associated=other)

    def test_relabelled_header_is_detected(self, keyring: Keyring) -> None:
        """A value whose header is edited to name another present key fails as a tamper."""
        sealer = Sealer(keyring.with_new_wrapping_key(make_current=False))
        sealed = sealer.seal(INDEX, associated=AD)
        with pytest.raises(SealTampered):
            sealer.unseal(b"w2" + sealed[2:], associated=AD)

    def test_error_messages_hold_no_data(self, sealer: Sealer) -> None:
        """Seal errors say what failed, not what was sealed."""
        sealed = sealer.seal(INDEX, associated=AD)
        with pytest.raises(SealTampered) as info:
            sealer.unseal(sealed, associated=b"other")
        assert INDEX.hex() not in str(info.value)
        assert sealed.hex() not in str(info.value)
        assert info.value.__cause__ is None


class TestSealVersions:
    @pytest.mark.parametrize(
        "sealed", [b"", b"w1", b"x1:abc", b"w0:abc", b"W1:abc", b":abc", b"w1234567:abc"]
    )
    def test_missing_or_malformed_header(self, sealer: Sealer, sealed: bytes) -> None:
        """A value without a well-formed version header raises UnknownSealVersion."""
        with pytest.raises(UnknownSealVersion):
            sealer.unseal(sealed, associated=AD)

    def test_unknown_version(self, sealer: Sealer) -> None:
        """A version the keyring lacks raises UnknownSealVersion, for sealing and unsealing."""
        foreign = Sealer(Keyring.generate().with_new_wrapping_key()).seal(INDEX, associated=AD)
        assert sealed_version(foreign) == "w2"
        with pytest.raises(UnknownSealVersion):
            sealer.unseal(foreign, associated=AD)
        with pytest.raises(UnknownSealVersion):
            sealer.seal_with("w2", INDEX, associated=AD)

    def test_error_hierarchy(self) -> None:
        """Both failure kinds are SealErrors, so callers can catch one type."""
        assert issubclass(UnknownSealVersion, SealError)
        assert issubclass(SealTampered, SealError)


class TestRotation:
    def test_rotate_wrapping_key(self, keyring: Keyring) -> None:
        """Seal under w1, add w2: the old value unseals, reseals under w2, and w1 can then retire."""
        old_sealer = Sealer(keyring)
        old = old_sealer.seal(INDEX, associated=AD)

        rotated = keyring.with_new_wrapping_key()
        sealer = Sealer(rotated)
        assert sealer.current_version == "w2"
        assert sealer.unseal(old, associated=AD) == INDEX
        assert sealer.needs_reseal(old)

        new = sealer.reseal(old, associated=AD)
        assert sealed_version(new) == "w2"
        assert not sealer.needs_reseal(new)
        assert sealer.reseal(new, associated=AD) == new
        assert sealer.unseal(new, associated=AD) == INDEX

        retired = Sealer(rotated.without("w1"))
        assert retired.unseal(new, associated=AD) == INDEX
        with pytest.raises(UnknownSealVersion):
            retired.unseal(old, associated=AD)

    def test_candidates_find_records_under_every_version(self, keyring: Keyring) -> None:
        """During rotation, the lookup candidates include the value as sealed before, current first."""
        old = Sealer(keyring).seal(INDEX, associated=AD)
        sealer = Sealer(keyring.with_new_wrapping_key())
        candidates = sealer.seal_candidates(INDEX, associated=AD)
        assert [sealed_version(c) for c in candidates] == ["w2", "w1"]
        assert candidates[1] == old
        assert candidates[0] == sealer.seal(INDEX, associated=AD)

    def test_reseal_refuses_a_tampered_value(self, keyring: Keyring) -> None:
        """Resealing authenticates first, even when the value is already current."""
        sealer = Sealer(keyring)
        tampered = bytearray(sealer.seal(INDEX, associated=AD))
        tampered[-1] ^= 0x80
        with pytest.raises(SealTampered):
            sealer.reseal(bytes(tampered), associated=AD)


class TestSealedText:
    def test_text_form(self, sealer: Sealer) -> None:
        """The text form is the version, a colon and lower-case hex."""
        sealed = sealer.seal(INDEX, associated=AD)
        text = sealed_to_text(sealed)
        assert text == "w1:" + sealed[3:].hex()
        assert sealed_from_text(text) == sealed

    @settings(database=None)
    @given(plaintext=st.binary(max_size=64))
    def test_text_round_trip(self, plaintext: bytes) -> None:
        """Any sealed value survives the text form and still unseals."""
        sealed = _SHARED_SEALER.seal(plaintext, associated=AD)
        text = sealed_to_text(sealed)
        assert text.isascii()
        assert " " not in text
        assert _SHARED_SEALER.unseal(sealed_from_text(text), associated=AD) == plaintext

    @pytest.mark.parametrize("text", ["", "w1:", "w1:0", "w1:zz", "w1:AB", "x1:00", "w1-00", "w1:00 "])
    def test_rejects_malformed_text(self, text: str) -> None:
        """Text not in the w<n>:<hex> form raises UnknownSealVersion."""
        with pytest.raises(UnknownSealVersion):
            sealed_from_text(text)

    def test_to_text_needs_a_header(self) -> None:
        """Bytes without a version header have no text form."""
        with pytest.raises(UnknownSealVersion):
            sealed_to_text(b"no header")

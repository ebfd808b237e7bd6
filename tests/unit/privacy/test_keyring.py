"""Tests of the keyring: validation, files, subkeys, MACs and pseudonyms."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import pickle
import stat
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idverify.domain.errors import ConfigError
from idverify.privacy.keyring import (
    KEYRING_ENV_VAR,
    Keyring,
    LiveKeyring,
    UnknownKeyVersion,
    create_keyring_file,
    ensure_keyring_file,
    load_keyring,
    save_keyring_file,
)
from idverify.privacy.pseudonym_memo import MAX_PSEUDONYM_MEMOS

if TYPE_CHECKING:
    from pathlib import Path

    from idverify.verifiers.base import Keyed

PEPPER = bytes(range(32))
WRAPPING = bytes(range(64, 128))
# Recognizable secrets whose encodings must never appear in messages or reprs.
SECRET_PEPPER = b"S3CRET-PEPPER-" + b"x" * 40
SECRET_WRAPPING = b"S3CRET-WRAPPING-KEY-" + b"y" * 44


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def document(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "peppers": {"p1": b64(SECRET_PEPPER)},
        "pepper_current": "p1",
        "wrapping_keys": {"w1": b64(SECRET_WRAPPING)},
        "wrapping_current": "w1",
    }
    doc.update(changes)
    return doc


def fixed_keyring() -> Keyring:
    return Keyring(
        peppers={"p1": PEPPER}, pepper_current="p1", wrapping_keys={"w1": WRAPPING}, wrapping_current="w1"
    )


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out independently, to pin the derivation."""
    prk = hmac.digest(salt, ikm, hashlib.sha256)
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), hashlib.sha256)
        out += block
        counter += 1
    return out[:length]


def assert_no_secret(text: str) -> None:
    for secret in (SECRET_PEPPER, SECRET_WRAPPING):
        assert b64(secret) not in text
        assert secret.hex() not in text
        assert "S3CRET" not in text


class TestKeyringValidation:
    def test_generate_has_one_version_of_each(self) -> None:
        """A generated keyring has pepper p1 and wrapping key w1, both current."""
        keyring = Keyring.generate()
        assert keyring.pepper_versions == ("p1",)
        assert keyring.wrapping_versions == ("w1",)
        assert len(keyring.wrapping_key("w1")) == 64

    def test_generated_keyrings_differ(self) -> None:
        """Two generated keyrings share no secret."""
        one, two = Keyring.generate(), Keyring.generate()
        assert one.subkey("t", "index") != two.subkey("t", "index")
        assert one.wrapping_key("w1") != two.wrapping_key("w1")

    @pytest.mark.parametrize(
        ("peppers", "wrapping_keys"),
        [
            ({"p1": b"short"}, {"w1": WRAPPING}),
            ({"p1": PEPPER[:31]}, {"w1": WRAPPING}),
            ({"p1": PEPPER}, {"w1": WRAPPING[:32]}),
            ({"p1": PEPPER}, {"w1": WRAPPING + b"x"}),
            ({}, {"w1": WRAPPING}),
            ({"p1": PEPPER}, {}),
            ({"pepper1": PEPPER}, {"w1": WRAPPING}),
            ({"p0": PEPPER}, {"w1": WRAPPING}),
            ({"p1": PEPPER}, {"p1": WRAPPING}),
            ({"p1": PEPPER, "p2": PEPPER}, {"w1": WRAPPING}),
        ],
    )
    def test_rejects_bad_secrets(self, peppers: dict[str, bytes], wrapping_keys: dict[str, bytes]) -> None:
        """Wrong lengths, malformed version ids, empty sets and repeated secrets are refused."""
        current_pepper = next(iter(peppers), "p1")
        current_wrapping = next(iter(wrapping_keys), "w1")
        with pytest.raises(ConfigError):
            Keyring(
                peppers=peppers,
                pepper_current=current_pepper,
                wrapping_keys=wrapping_keys,
                wrapping_current=current_wrapping,
            )

    def test_rejects_missing_current_versions(self) -> None:
        """A current version that names no secret is refused."""
        with pytest.raises(ConfigError, match="pepper_current"):
            Keyring(
                peppers={"p1": PEPPER},
                pepper_current="p2",
                wrapping_keys={"w1": WRAPPING},
                wrapping_current="w1",
            )
        with pytest.raises(ConfigError, match="wrapping_current"):
            Keyring(
                peppers={"p1": PEPPER},
                pepper_current="p1",
                wrapping_keys={"w1": WRAPPING},
                wrapping_current="w2",
            )

    def test_repr_and_str_hide_secrets(self) -> None:
        """The repr and str forms name versions only."""
        keyring = Keyring(
            peppers={"p1": SECRET_PEPPER},
            pepper_current="p1",
            wrapping_keys={"w1": SECRET_WRAPPING},
            wrapping_current="w1",
        )
        for text in (repr(keyring), str(keyring), f"{keyring}"):
            assert_no_secret(text)
            assert "p1" in text
            assert "w1" in text

    def test_cannot_be_pickled(self) -> None:
        """Pickling is refused so secrets cannot leak into caches or queues."""
        with pytest.raises(TypeError):
            pickle.dumps(fixed_keyring())


class TestSubkeys:
    def test_subkey_is_pinned_hkdf_sha256(self) -> None:
        """The subkey is HKDF-SHA256 with the documented salt and length-prefixed info."""
        info = b"idverify/subkey/v1" + b"\x00\x00\x00\x05index" + b"\x00\x00\x00\x08tenant-a"
        expected = hkdf_sha256(PEPPER, b"idverify/keyring/v1", info, 32)
        assert fixed_keyring().subkey("tenant-a", "index") == expected

    def test_subkey_is_deterministic_and_cached(self) -> None:
        """The same inputs give the same subkey, served from the cache the second time."""
        keyring = fixed_keyring()
        first = keyring.subkey("tenant-a", "index")
        assert keyring.subkey("tenant-a", "index") is first
        assert fixed_keyring().subkey("tenant-a", "index") == first

    def test_tenants_and_purposes_get_different_subkeys(self) -> None:
        """Each (tenant, purpose) pair has its own subkey."""
        keyring = fixed_keyring()
        keys = {
            keyring.subkey("tenant-a", "index"),
            keyring.subkey("tenant-b", "index"),
            keyring.subkey("tenant-a", "name"),
            keyring.subkey("tenant-b", "name"),
        }
        assert len(keys) == 4

    def test_length_prefix_prevents_boundary_collisions(self) -> None:
        """Shifting characters between purpose and tenant gives a different subkey."""
        keyring = fixed_keyring()
        assert keyring.subkey("bc", "a") != keyring.subkey("c", "ab")
        assert keyring.subkey("a", "b") != keyring.subkey("b", "a")

    def test_pepper_versions_give_different_subkeys(self) -> None:
        """A new pepper version derives new subkeys; the default stays on the pinned pepper."""
        old = fixed_keyring()
        rotated = old.with_new_pepper()
        assert rotated.pepper_current == "p2"
        assert rotated.pseudonym_pepper == "p1"
        assert rotated.subkey("t", "index", "p1") == old.subkey("t", "index")
        assert rotated.subkey("t", "index", "p2") != rotated.subkey("t", "index", "p1")
        assert rotated.subkey("t", "index") == rotated.subkey("t", "index", "p1")

    def test_unknown_pepper_version_raises(self) -> None:
        """Asking for a pepper the keyring lacks raises UnknownKeyVersion."""
        with pytest.raises(UnknownKeyVersion):
            fixed_keyring().subkey("t", "index", "p9")

    @pytest.mark.parametrize(("tenant", "purpose"), [("", "index"), ("t", "")])
    def test_empty_tenant_or_purpose_raises(self, tenant: str, purpose: str) -> None:
        """An empty tenant or purpose is a bug and raises ValueError."""
        with pytest.raises(ValueError, match="non-empty"):
            fixed_keyring().subkey(tenant, purpose)

    def test_cache_stays_bounded(self) -> None:
        """Many distinct purposes do not grow the cache without bound."""
        keyring = fixed_keyring()
        for i in range(5000):
            keyring.subkey("t", f"purpose-{i}")
        assert len(keyring._subkeys) <= 4096


class TestMacAndPseudonym:
    def test_mac_is_hmac_sha256_under_the_subkey(self) -> None:
        """A MAC is HMAC-SHA256 of the data under the current subkey."""
        keyring = fixed_keyring()
        expected = hmac.digest(keyring.subkey("t", "otp"), b"data", hashlib.sha256)
        assert keyring.mac("t", "otp", b"data") == expected

    def test_satisfies_the_keyed_protocol(self) -> None:
        """A keyring can be handed to verifiers as their Keyed dependency."""
        keyed: Keyed = fixed_keyring()
        assert len(keyed.mac("t", "otp", b"data")) == 32

    def test_mac_survives_a_pepper_rotation(self) -> None:
        """MACs and pseudonyms stay on the pinned pepper; a version can still be named."""
        old = fixed_keyring()
        rotated = old.with_new_pepper()
        assert rotated.mac("t", "p", b"x") == old.mac("t", "p", b"x")
        assert rotated.pseudonym("t", "account", "a") == old.pseudonym("t", "account", "a")
        assert rotated.mac("t", "p", b"x", pepper_version="p2") != old.mac("t", "p", b"x")

    def test_pseudonym_is_32_hex_digits_and_stable(self) -> None:
        """A pseudonym is the first 16 bytes of the MAC, as hex."""
        keyring = fixed_keyring()
        pseudonym = keyring.pseudonym("t", "account", "acct-1")
        assert pseudonym == keyring.mac("t", "account", b"acct-1")[:16].hex()
        assert len(pseudonym) == 32
        assert pseudonym == keyring.pseudonym("t", "account", "acct-1")

    @settings(database=None, max_examples=50)
    @given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), max_size=20))
    def test_a_batch_of_pseudonyms_is_each_one_pseudonym(self, values: list[str]) -> None:
        """pseudonyms() (one subkey for the batch) agrees with pseudonym() value by value."""
        keyring = fixed_keyring()
        expected = [keyring.pseudonym("t", "account", value) for value in values]
        assert keyring.pseudonyms("t", "account", values) == expected

    @settings(database=None, max_examples=50)
    @given(st.lists(st.lists(st.sampled_from([f"acct-{n}" for n in range(12)]), max_size=8), max_size=6))
    def test_remembered_pseudonyms_agree_with_fresh_ones(self, batches: list[list[str]]) -> None:
        """Batches that repeat values, partly or wholly, get the same pseudonyms as fresh ones."""
        keyring = fixed_keyring()
        for values in batches:
            assert keyring.pseudonyms("t", "account", values) == [
                keyring.pseudonym("t", "account", value) for value in values
            ]

    def test_remembered_pseudonyms_stay_in_their_tenant_and_purpose(self) -> None:
        """A value seen in one tenant or purpose is not answered from another's memory."""
        keyring = fixed_keyring()
        seen = keyring.pseudonyms("tenant-a", "account", ["acct-1"])
        assert keyring.pseudonyms("tenant-b", "account", ["acct-1"]) != seen
        assert keyring.pseudonyms("tenant-a", "request", ["acct-1"]) != seen
        assert keyring.pseudonyms("tenant-b", "account", ["acct-1"]) == [
            keyring.pseudonym("tenant-b", "account", "acct-1")
        ]

    def test_many_tenants_keep_getting_the_right_pseudonyms(self) -> None:
        """More tenants than the keyring keeps memos for: each memo made again gives the same answers."""
        keyring = fixed_keyring()
        for round_number in range(2):
            for n in range(3 * MAX_PSEUDONYM_MEMOS):
                tenant = f"tenant-{n}"
                assert keyring.pseudonyms(tenant, "account", ["acct-1", f"acct-{round_number}"]) == [
                    keyring.pseudonym(tenant, "account", "acct-1"),
                    keyring.pseudonym(tenant, "account", f"acct-{round_number}"),
                ]
                assert len(keyring._pseudonym_memos) <= MAX_PSEUDONYM_MEMOS

    def test_pseudonyms_cannot_be_joined_across_tenants(self) -> None:
        """The same account id gets unrelated pseudonyms in two tenants."""
        keyring = fixed_keyring()
        assert keyring.pseudonym("tenant-a", "account", "acct-1") != keyring.pseudonym(
            "tenant-b", "account", "acct-1"
        )

    @settings(database=None, max_examples=50)
    @given(st.text(), st.text())
    def test_distinct_values_get_distinct_pseudonyms(self, one: str, two: str) -> None:
        """Distinct values never share a pseudonym (within any realistic sample)."""
        keyring = fixed_keyring()
        same = keyring.pseudonym("t", "account", one) == keyring.pseudonym("t", "account", two)
        assert same == (one.encode("utf-8", "surrogatepass") == two.encode("utf-8", "surrogatepass"))


class TestRotationHelpers:
    def test_new_versions_can_be_staged_without_becoming_current(self) -> None:
        """make_current=False adds a readable version and keeps the write version."""
        keyring = (
            fixed_keyring().with_new_pepper(make_current=False).with_new_wrapping_key(make_current=False)
        )
        assert keyring.pepper_current == "p1"
        assert keyring.pepper_versions == ("p1", "p2")
        assert keyring.wrapping_versions == ("w1", "w2")
        promoted = keyring.with_current(pepper="p2", wrapping="w2")
        assert promoted.pepper_versions == ("p2", "p1")
        assert promoted.wrapping_versions == ("w2", "w1")

    def test_versions_are_listed_current_first_then_newest(self) -> None:
        """Readable versions come current first, then from newest to oldest."""
        keyring = fixed_keyring().with_new_pepper().with_new_pepper().with_current(pepper="p2")
        assert keyring.pepper_versions == ("p2", "p3", "p1")

    def test_with_current_rejects_unknown_versions(self) -> None:
        """Promoting a version that does not exist is refused."""
        with pytest.raises(ConfigError):
            fixed_keyring().with_current(pepper="p7")

    def test_retiring_versions(self) -> None:
        """Old versions can be dropped; current ones, the pinned pepper and unknown ones cannot."""
        keyring = fixed_keyring().with_new_pepper().with_new_pepper().with_new_wrapping_key()
        trimmed = keyring.without("p2").without("w1")
        assert trimmed.pepper_versions == ("p3", "p1")
        assert trimmed.wrapping_versions == ("w2",)
        with pytest.raises(ConfigError, match="pinned"):
            keyring.without("p1")
        with pytest.raises(ConfigError):
            keyring.without("p3")
        with pytest.raises(ConfigError):
            keyring.without("w2")
        with pytest.raises(UnknownKeyVersion):
            keyring.without("p9")

    def test_original_keyring_is_unchanged(self) -> None:
        """The with_* methods return new keyrings and leave the original as it was."""
        keyring = fixed_keyring()
        keyring.with_new_pepper()
        assert keyring.pepper_versions == ("p1",)


class TestLoadKeyring:
    def test_env_variable_name(self) -> None:
        """The documented environment variable name is pinned."""
        assert KEYRING_ENV_VAR == "IDVERIFY_KEYRING"

    def test_round_trip_through_json_text(self) -> None:
        """A keyring survives to_json and load_keyring(text=...)."""
        keyring = fixed_keyring().with_new_pepper().with_new_wrapping_key(make_current=False)
        loaded = load_keyring(text=keyring.to_json())
        assert loaded.pepper_versions == keyring.pepper_versions
        assert loaded.wrapping_versions == keyring.wrapping_versions
        for version in keyring.pepper_versions:
            assert loaded.subkey("t", "p", version) == keyring.subkey("t", "p", version)
        for version in keyring.wrapping_versions:
            assert loaded.wrapping_key(version) == keyring.wrapping_key(version)

    def test_loads_the_documented_format(self) -> None:
        """The format from the docs loads."""
        loaded = load_keyring(text=json.dumps(document()))
        assert loaded.pepper_current == "p1"
        assert loaded.wrapping_key("w1") == SECRET_WRAPPING

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "not json " + b64(SECRET_PEPPER),
            '{"peppers": {"p1": "' + b64(SECRET_PEPPER) + '"',
            "[]",
            json.dumps(document(extra=1)),
            json.dumps(document(pepper_current=None)),
            json.dumps(document(pepper_current="p2")),
            json.dumps(document(wrapping_current=1)),
            json.dumps(document(peppers=[b64(SECRET_PEPPER)])),
            json.dumps(document(peppers={"p1": 5})),
            json.dumps(document(peppers={"p1": b64(SECRET_PEPPER) + "!"})),
            json.dumps(document(peppers={"p1": b64(SECRET_PEPPER[:31])})),
            json.dumps(document(peppers={b64(SECRET_PEPPER): b64(SECRET_PEPPER)})),
            json.dumps(document(wrapping_keys={"w1": b64(SECRET_WRAPPING[:32])})),
            json.dumps(document(wrapping_keys={"w1": b64(SECRET_WRAPPING), "w2": b64(SECRET_WRAPPING)})),
            json.dumps({**document(), b64(SECRET_PEPPER): "x"}),
        ],
        ids=lambda text: str(len(text)),
    )
    def test_rejects_bad_documents_without_echoing_secrets(self, text: str) -> None:
        """Malformed keyrings raise ConfigError whose message and context hold no key material."""
        with pytest.raises(ConfigError) as info:
            load_keyring(text=text)
        assert_no_secret(str(info.value))
        assert info.value.__context__ is None or not hasattr(info.value.__context__, "doc")

    def test_json_error_carries_no_context(self) -> None:
        """A JSON syntax error is not chained, so the document is not reachable from the error."""
        with pytest.raises(ConfigError) as info:
            load_keyring(text="{" + b64(SECRET_PEPPER))
        assert info.value.__context__ is None
        assert info.value.__cause__ is None

    def test_requires_exactly_one_source(self, tmp_path: Path) -> None:
        """Giving both a path and text, or neither, is refused."""
        with pytest.raises(ConfigError):
            load_keyring()
        with pytest.raises(ConfigError):
            load_keyring(path=tmp_path / "k.json", text="{}")

    def test_missing_file(self, tmp_path: Path) -> None:
        """An unreadable file raises ConfigError naming the path."""
        with pytest.raises(ConfigError, match="cannot be read"):
            load_keyring(path=tmp_path / "missing.json")

    def test_rejects_non_utf8_file_without_context(self, tmp_path: Path) -> None:
        """A binary file is refused without chaining the decoder error that holds its bytes."""
        path = tmp_path / "k.json"
        path.write_bytes(b"\xff" + SECRET_PEPPER)
        path.chmod(0o600)
        with pytest.raises(ConfigError, match="UTF-8") as info:
            load_keyring(path=path)
        assert info.value.__context__ is None

    def test_rejects_oversized_file(self, tmp_path: Path) -> None:
        """A file larger than 1 MiB is refused before parsing."""
        path = tmp_path / "k.json"
        path.write_bytes(b" " * (1 << 20) + json.dumps(document()).encode())
        path.chmod(0o600)
        with pytest.raises(ConfigError, match="larger"):
            load_keyring(path=path)

    def test_warns_about_a_group_readable_file(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A keyring file readable by others loads, with a warning."""
        path = tmp_path / "k.json"
        path.write_text(json.dumps(document()))
        path.chmod(0o644)
        with caplog.at_level(logging.WARNING, logger="idverify.privacy.keyring"):
            load_keyring(path=path)
        assert "0600" in caplog.text
        assert_no_secret(caplog.text)


class TestKeyringFiles:
    def test_create_writes_a_0600_file(self, tmp_path: Path) -> None:
        """A created keyring file has mode 0600 and loads back to the same keyring."""
        path = tmp_path / "keyring.json"
        keyring = create_keyring_file(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        loaded = load_keyring(path=path)
        assert loaded.subkey("t", "p") == keyring.subkey("t", "p")
        assert loaded.wrapping_key("w1") == keyring.wrapping_key("w1")

    def test_create_ignores_a_permissive_umask(self, tmp_path: Path) -> None:
        """The file is 0600 even when the process umask would allow more."""
        previous = os.umask(0)
        try:
            path = tmp_path / "keyring.json"
            create_keyring_file(path)
        finally:
            os.umask(previous)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_create_never_overwrites(self, tmp_path: Path) -> None:
        """Creating over an existing file fails and leaves the file and directory as they were."""
        path = tmp_path / "keyring.json"
        first = create_keyring_file(path)
        with pytest.raises(FileExistsError):
            create_keyring_file(path)
        assert load_keyring(path=path).subkey("t", "p") == first.subkey("t", "p")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.json"]

    def test_ensure_creates_once_then_loads(self, tmp_path: Path) -> None:
        """ensure_keyring_file creates on first call and loads the same keyring after."""
        path = tmp_path / "keyring.json"
        first = ensure_keyring_file(path)
        second = ensure_keyring_file(path)
        assert first.subkey("t", "p") == second.subkey("t", "p")

    def test_ensure_loads_the_winner_of_a_creation_race(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When another process creates the file first, ensure loads that one."""
        path = tmp_path / "keyring.json"
        winner = Keyring.generate()
        save_keyring_file(winner, path)
        monkeypatch.setattr(type(path), "exists", lambda _self: False)
        assert ensure_keyring_file(path).subkey("t", "p") == winner.subkey("t", "p")

    def test_save_replaces_atomically_with_mode_0600(self, tmp_path: Path) -> None:
        """save_keyring_file replaces the previous keyring and keeps mode 0600, leaving no temporaries."""
        path = tmp_path / "keyring.json"
        path.write_text("old")
        path.chmod(0o644)
        rotated = fixed_keyring().with_new_pepper()
        save_keyring_file(rotated, path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_keyring(path=path).pepper_versions == ("p2", "p1")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.json"]

    def test_failed_write_leaves_no_temporary(self, tmp_path: Path) -> None:
        """A write into a missing directory raises and leaves nothing behind."""
        with pytest.raises(OSError, match="No such file"):
            save_keyring_file(fixed_keyring(), tmp_path / "missing" / "keyring.json")
        assert list(tmp_path.iterdir()) == []


class TestPinnedPseudonymPepper:
    def test_round_trips_and_defaults_to_the_current_pepper(self) -> None:
        """A keyring file without the field pins its current pepper; the field survives to_json."""
        legacy = json.loads(fixed_keyring().to_json())
        del legacy["pseudonym_pepper"]
        assert load_keyring(text=json.dumps(legacy)).pseudonym_pepper == "p1"
        rotated = fixed_keyring().with_new_pepper()
        assert load_keyring(text=rotated.to_json()).pseudonym_pepper == "p1"

    def test_unknown_pinned_pepper_is_refused(self) -> None:
        """The pinned pepper must be one of the keyring's peppers."""
        document = json.loads(fixed_keyring().to_json())
        document["pseudonym_pepper"] = "p7"
        with pytest.raises(ConfigError, match="pseudonym_pepper"):
            load_keyring(text=json.dumps(document))


class TestLiveKeyring:
    def test_new_versions_become_visible_in_place(self) -> None:
        """After replace(), the same object reads and writes under the new versions."""
        live = LiveKeyring(fixed_keyring())
        pseudonym = live.pseudonym("t", "account", "a")
        assert live.replace(live.with_new_wrapping_key())
        assert live.wrapping_current == "w2"
        assert live.wrapping_versions == ("w2", "w1")
        assert live.pseudonym("t", "account", "a") == pseudonym
        assert not live.replace(live.current)

    def test_a_changed_secret_is_refused(self) -> None:
        """A keyring that gives an existing version another secret is not taken."""
        live = LiveKeyring(fixed_keyring())
        with pytest.raises(ConfigError, match="another secret"):
            live.replace(Keyring.generate())
        assert live.current.wrapping_versions == ("w1",)

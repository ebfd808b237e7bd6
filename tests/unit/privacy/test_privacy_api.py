"""Pins the public surface of idverify.privacy."""

from __future__ import annotations

import types

import idverify.privacy
from idverify.privacy import name_binding

EXPECTED = {
    "DEFAULT",
    "INDEX_PURPOSE",
    "KEYRING_ENV_VAR",
    "NAME_PURPOSE",
    "TEST_ONLY_FAST",
    "Argon2Params",
    "IdentityIndexer",
    "IndexValue",
    "Keyring",
    "SealError",
    "SealTampered",
    "Sealer",
    "UnknownKeyVersion",
    "UnknownSealVersion",
    "associated_data",
    "create_keyring_file",
    "ensure_keyring_file",
    "load_keyring",
    "mask_document",
    "mask_phone",
    "names_match",
    "parse_index_params",
    "save_keyring_file",
    "sealed_from_text",
    "sealed_to_text",
    "sealed_version",
}


class TestPublicSurface:
    def test_all_is_pinned(self) -> None:
        """__all__ lists exactly the documented names."""
        assert set(idverify.privacy.__all__) == EXPECTED
        assert len(idverify.privacy.__all__) == len(EXPECTED)

    def test_every_name_resolves(self) -> None:
        """Every exported name exists on the package."""
        for name in idverify.privacy.__all__:
            assert getattr(idverify.privacy, name) is not None

    def test_name_binding_submodule_is_not_shadowed(self) -> None:
        """idverify.privacy.name_binding is the module, not the function of the same name."""
        assert isinstance(name_binding, types.ModuleType)
        assert callable(name_binding.name_binding)

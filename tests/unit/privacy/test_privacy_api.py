"""Pins the public surface of idverify.privacy."""

from __future__ import annotations

import types

import idverify.privacy
from idverify.privacy import name_binding


class TestPublicSurface:
    def test_all_is_what_the_package_imports(self) -> None:
        """__all__ names each public name the package imports, once, and no submodule."""
        imported = {
            name
            for name, value in vars(idverify.privacy).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
        }
        assert sorted(idverify.privacy.__all__) == sorted(imported)
        assert len(idverify.privacy.__all__) == len(set(idverify.privacy.__all__))

    def test_every_name_resolves(self) -> None:
        """Every exported name exists on the package."""
        for name in idverify.privacy.__all__:
            assert getattr(idverify.privacy, name) is not None

    def test_name_binding_submodule_is_not_shadowed(self) -> None:
        """idverify.privacy.name_binding is the module, not the function of the same name."""
        assert isinstance(name_binding, types.ModuleType)
        assert callable(name_binding.name_binding)

"""The public surface of idverify.geo."""

from __future__ import annotations

import types

import idverify.geo


class TestExports:
    def test_exported_names(self) -> None:
        """The names the package imports for callers, each exported once, and only those."""
        imported = {
            name
            for name, value in vars(idverify.geo).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
        }
        assert sorted(idverify.geo.__all__) == sorted(imported)
        assert len(idverify.geo.__all__) == len(set(idverify.geo.__all__))
        assert all(hasattr(idverify.geo, name) for name in idverify.geo.__all__)

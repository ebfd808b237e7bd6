"""The documentation a clone carries: the layout names every module, and no link leaves the repository.

A clone has no design documents beside it and may be read offline, so README and docs/ link only
to files of the repository, and those files exist. ARCHITECTURE's Layout is where a newcomer
looks a module up: a package or a root module missing from it is a module nobody finds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
# [text](target) with the target up to a space or the closing bracket; a #fragment is dropped.
MARKDOWN_LINK = re.compile(r"\]\(([^)\s#]*)(?:#[^)\s]*)?\)")


def layout() -> str:
    """The fenced block under ARCHITECTURE's "### Layout" heading."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("### Layout", 1)[1]
    return section.split("```", 2)[1]


def test_layout_names_every_package() -> None:
    packages = sorted(path.parent.name for path in (REPO / "idverify").glob("*/__init__.py"))
    assert packages
    missing = [name for name in packages if not re.search(rf"^\s+{name}/", layout(), re.MULTILINE)]
    assert missing == [], "name them in docs/ARCHITECTURE.md's Layout"


def test_layout_names_every_root_module() -> None:
    modules = sorted(path.stem for path in (REPO / "idverify").glob("*.py") if path.stem != "__init__")
    assert modules
    missing = [name for name in modules if not re.search(rf"\b{re.escape(name)}\b", layout())]
    assert missing == [], "name them in docs/ARCHITECTURE.md's Layout"


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.relative_to(REPO).as_posix())
def test_links_stay_in_the_repository_and_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    targets = [target for target in MARKDOWN_LINK.findall(text) if target]
    outside = [target for target in targets if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)]
    assert outside == [], "links to outside the repository"
    broken = [
        target
        for target in targets
        if not (doc.parent / target).resolve().is_relative_to(REPO) or not (doc.parent / target).exists()
    ]
    assert broken == [], "links to files a clone does not have"
    assert "../shared" not in text


def test_clients_commands_without_a_token_ask_only_what_the_bootstrap_token_may() -> None:
    """``idverify clients create`` with no --token sends the bootstrap token (or breaks glass).

    The bootstrap token may create operators and admins only, so a README command that asks it
    for an auditor or registrar fails for the new user who types it (PERMISSION_DENIED).
    """
    text = (REPO / "README.md").read_text(encoding="utf-8")
    # Commands in code blocks and in inline code, a command broken over two lines joined.
    commands = re.findall(r"idverify clients\b[^`\n#]*(?:\n[^`\n#]*)?", text)
    creates = [" ".join(c.split()) for c in commands if " create" in c]
    assert len(creates) >= 4
    for command in creates:
        if "--token" in command or "--break-glass" in command:
            continue
        role = re.search(r"--role (\w+)", command)
        assert role is not None, command
        assert role.group(1) in {"operator", "admin"}, command

"""docs/REASON_CODES.md: current, complete against what tests and docs name, each entry traced."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "docs" / "REASON_CODES.md"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_reason_codes", ROOT / "scripts" / "gen_reason_codes.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


gen = _generator()


@pytest.fixture(scope="module")
def entries() -> dict[str, object]:
    return gen.collect()  # type: ignore[no-any-return]


def _catalogued() -> set[str]:
    return set(re.findall(r"^\| `([A-Z0-9_]+)` \|", CATALOGUE.read_text(encoding="utf-8"), re.MULTILINE))


def test_the_catalogue_is_what_the_code_says_now(entries: dict[str, object]) -> None:
    """Regenerated from the code, the catalogue is unchanged (as scripts/gen_reason_codes.py --check)."""
    assert gen.render(entries) == CATALOGUE.read_text(encoding="utf-8"), "run scripts/gen_reason_codes.py"


def test_a_note_for_a_code_the_source_never_gives_is_refused(entries: dict[str, object]) -> None:
    """A misspelt code in scripts/reason_code_notes.toml would otherwise drop its note silently."""
    assert gen.stray_notes(entries) == []
    assert gen.stray_notes(entries, {**gen.NOTES, "NO_SUCH_CODE": ("", "")}) == ["NO_SUCH_CODE"]


def test_a_note_may_leave_out_its_meaning_or_its_action(tmp_path: Path) -> None:
    notes = tmp_path / "notes.toml"
    notes.write_text('[A_CODE]\naction = "Retry."\n\n[B_CODE]\nmeaning = "It means B."\n', encoding="utf-8")
    assert gen.read_notes(notes) == {"A_CODE": ("", "Retry."), "B_CODE": ("It means B.", "")}


def _asserted_in_tests() -> set[str]:
    """Codes the tests expect from the server, found by how tests read them (not by the generator)."""
    patterns = (
        r"rich_error\([^)]*\)(?:\[0\])?\s*==\s*\(?\s*\"([A-Z][A-Z0-9_]+)\"",
        r"reason_code\s*==\s*\"([A-Z][A-Z0-9_]+)\"",
        r"\.reason\s*==\s*\"([A-Z][A-Z0-9_]+)\"",
        r"\"[a-z_.\[\]0-9]+\",\s*\"([A-Z][A-Z0-9_]+)\",\s*\)",  # a case ending (..., "field", "CODE")
    )
    found: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name == Path(__file__).name:
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            found |= set(re.findall(pattern, text))
    return found


def test_every_code_the_tests_expect_is_catalogued() -> None:
    """A code a test receives from a real server, but the generator missed, fails here."""
    asserted = _asserted_in_tests()
    assert len(asserted) > 40  # the patterns still find what the tests check
    assert asserted - _catalogued() == set()


def test_every_vendor_reason_of_the_vendor_guide_is_catalogued() -> None:
    """docs/VENDORS.md's table of step outcomes and the catalogue name the same codes."""
    text = (ROOT / "docs" / "VENDORS.md").read_text(encoding="utf-8")
    table = text.split("## Outcomes and reason codes", 1)[1].split("\n## ", 1)[0]
    reasons = {
        code
        for row in table.splitlines()
        if row.startswith("| ")
        for code in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[2])
    }
    assert len(reasons) > 20
    assert reasons - _catalogued() == set()


def test_every_entry_is_traced_to_a_place_in_the_code(entries: dict[str, object]) -> None:
    """Each code has a site that names it: at the site, in its file's table, as a stem, or as a default."""
    errors = (ROOT / "idverify" / "domain" / "errors.py").read_text(encoding="utf-8")
    defaults = set(re.findall(r'default_reason = "([A-Z0-9_]+)"', errors))
    for code, entry in entries.items():
        stem = code.removesuffix("_RATE_LIMITED").removesuffix("_LIMIT_REACHED").lower()
        named = code in defaults
        for site in entry.sites + entry.origins:  # type: ignore[attr-defined]
            path, line = site.where.rsplit(":", 1)
            lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
            assert 0 < int(line) <= len(lines), site
            window = "\n".join(lines[int(line) - 1 : int(line) + 4])
            named = (
                named
                or f'"{stem}"' in window
                or any(f"{q}{code}{q}" in text for q in "'\"" for text in lines)
            )
        assert named, (code, entry.sites)  # type: ignore[attr-defined]


def test_every_entry_reaches_a_caller(entries: dict[str, object]) -> None:
    """An error or outcome code comes from an RPC (or the command line); an audit entry's may not."""
    for code, entry in entries.items():
        if entry.kinds != {gen.AUDIT}:  # type: ignore[attr-defined]
            assert entry.rpcs, code  # type: ignore[attr-defined]


def test_the_catalogue_has_what_a_caller_needs(entries: dict[str, object]) -> None:
    """Status or reason_code, meaning, advice and RPCs in each row; well-known codes where they belong."""
    rows = [row for row in CATALOGUE.read_text(encoding="utf-8").splitlines() if row.startswith("| `")]
    assert len(rows) == len(entries)
    for row in rows:
        cells = [cell.strip() for cell in row.split(" | ")]
        assert len(cells) == 5, row
        assert all(cells), row
    by_code = {row.split("`")[1]: row for row in rows}
    assert "`INVALID_ARGUMENT`" in by_code["CHECKSUM_MISMATCH"]
    assert "VerificationService/StartVerification" in by_code["CHECKSUM_MISMATCH"]
    assert "`RESOURCE_EXHAUSTED`" in by_code["CHECK_LIMIT_REACHED"]
    assert "VerificationService/CheckIdentity" in by_code["CHECK_LIMIT_REACHED"]
    assert "`reason_code`" in by_code["OTP_EXPIRED"]
    assert "VerificationService/SubmitChallenge" in by_code["OTP_EXPIRED"]
    assert "`FAILED_PRECONDITION`" in by_code["GUARDIAN_NOT_ADULT"]
    assert "every RPC with a token" in by_code["INVALID_TOKEN"]
    assert (
        "`RESOURCE_EXHAUSTED`" in by_code["IDENTITY_RATE_LIMITED"]
    )  # from f"{purpose.upper()}_RATE_LIMITED"


def test_a_new_code_is_picked_up_by_regenerating(tmp_path: Path) -> None:
    """Self-maintaining: a code added anywhere appears, with its status and RPC; a class name may repeat."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "idverify", tree / "idverify", ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "idverify" / "flows" / "new_rule.py").write_text(
        "from idverify.domain.errors import RateLimited\n\n\n"
        "def check_new(account_id: str) -> None:\n"
        '    raise RateLimited("a rule added tomorrow", retry_after=1.0, reason="BRAND_NEW_RULE")\n',
        encoding="utf-8",
    )
    servicer = tree / "idverify" / "services" / "account.py"
    text = servicer.read_text(encoding="utf-8")
    text = "from idverify.flows.new_rule import check_new\n" + text
    text, replaced = re.subn(
        r"(    async def GetAccount\([^)]*\)[^:]*:\n)", r"\1        check_new(request.account_id)\n", text
    )
    assert replaced == 1
    servicer.write_text(text, encoding="utf-8")
    # A class named like another (the vendors' Verdict) elsewhere changes nothing for the first.
    (tree / "idverify" / "domain" / "aaa_verdicts.py").write_text(
        'from enum import Enum\n\n\nclass Verdict(Enum):\n    CONSISTENT = "consistent"\n', encoding="utf-8"
    )
    lua = tree / "idverify" / "store" / "lua" / "new_step.lua"
    lua.write_text(
        "finish(KEYS[1], KEYS[2], base, vf, 'REJECTED', 'BRAND_NEW_OUTCOME', false)\n", encoding="utf-8"
    )

    found = gen.collect(gen.Source(tree))
    assert found["BRAND_NEW_RULE"].statuses == {"RESOURCE_EXHAUSTED"}
    assert found["BRAND_NEW_RULE"].rpcs == {"AccountService/GetAccount"}
    assert found["BRAND_NEW_OUTCOME"].kinds == {gen.OUTCOME}
    assert "BRAND_NEW_RULE" in gen.render(found)
    assert "LIVENESS_REFUSED" in found  # only ever a vendors' Verdict(kind, "LIVENESS_REFUSED")
    assert "VerificationService/StartVerification" in found["AUTHORITY_MISMATCH"].rpcs


def test_a_port_and_common_method_names_change_no_other_code(
    tmp_path: Path, entries: dict[str, object]
) -> None:
    """A new port is seen through to its Redis implementation; new same-named methods cut no edge.

    The generator follows a call on an object of unknown type by the method's name only when few
    functions share it; types (annotations, constructors, a Protocol's implementers) must carry
    the rest, and a method called on a str, a dict or a library's object runs none of ours. An
    implementation may take more keyword-only parameters than its Protocol, with defaults.
    """
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "idverify", tree / "idverify", ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "idverify" / "flows" / "widgets.py").write_text(
        "from typing import Protocol\n\n\n"
        "class WidgetStore(Protocol):\n"
        "    async def read(self, widget_id: str) -> str: ...\n\n\n"
        "class WidgetFlow:\n"
        "    def __init__(self, store: WidgetStore) -> None:\n"
        "        self._store = store\n\n"
        "    async def show(self, widget_id: str) -> str:\n"
        "        return await self._store.read(widget_id)\n",
        encoding="utf-8",
    )
    (tree / "idverify" / "store" / "widgets.py").write_text(
        "from idverify.domain.errors import NotFound\n\n\n"
        "class RedisWidgets:\n"
        "    async def read(self, widget_id: str, *, fresh: bool = False) -> str:\n"
        '        raise NotFound("no such widget", reason="BRAND_NEW_PORT_REFUSAL")\n',
        encoding="utf-8",
    )
    # Common names, more of each than the untyped fallback follows, and one str method of ours.
    common = ("read", "update", "append", "get", "root", "count", "wait", "encode", "values", "execute")
    (tree / "idverify" / "domain" / "aaa_common_names.py").write_text(
        "from idverify.domain.errors import InvalidArgument\n\n\n"
        + "".join(
            f"class Common{n}:\n"
            + "".join(f"    def {name}(self) -> None: ...\n" for name in common)
            + "\n\n"
            for n in range(3)
        )
        + "class Shouting:\n"
        "    def lower(self) -> str:\n"
        '        raise InvalidArgument("never called on a str", reason="BRAND_NEW_NOISE")\n',
        encoding="utf-8",
    )
    servicer = tree / "idverify" / "services" / "account.py"
    text = "from idverify.flows.widgets import WidgetFlow\nfrom idverify.store.widgets import RedisWidgets\n"
    text += servicer.read_text(encoding="utf-8")
    text, replaced = re.subn(
        r"(    async def GetAccount\([^)]*\)[^:]*:\n)",
        r"\1        await WidgetFlow(RedisWidgets()).show(request.account_id)\n",
        text,
    )
    assert replaced == 1
    servicer.write_text(text, encoding="utf-8")

    found = gen.collect(gen.Source(tree))
    assert found["BRAND_NEW_PORT_REFUSAL"].rpcs == {"AccountService/GetAccount"}
    assert found["BRAND_NEW_NOISE"].rpcs == set()
    changed = {
        code: (entry.rpcs, found[code].rpcs)  # type: ignore[attr-defined]
        for code, entry in entries.items()
        if found[code].rpcs != entry.rpcs  # type: ignore[attr-defined]
    }
    assert changed == {}


def test_a_reason_template_is_followed_through_a_parameter_passed_on() -> None:
    """``judge_counted(reply, purpose)`` passes ``purpose`` on to ``refuse_at_limit``'s template."""
    text = CATALOGUE.read_text(encoding="utf-8")
    rows = {row.split("`")[1]: row for row in text.splitlines() if row.startswith("| `")}
    assert "VerificationService/StartVerification" in rows["CLAIM_REFUSALS_LIMIT_REACHED"]
    assert "VerificationService/StartVerification" in rows["IDENTITY_RATE_LIMITED"]

"""EventType lists every type the store's scripts write, so that auditors find them all named."""

from __future__ import annotations

import re
from pathlib import Path

import idverify
from idverify.audit.events import EventType

LUA = Path(idverify.__file__).parent / "store" / "lua"
# audit(..., {type = 'x.y', ...}) and the verification's final kinds, written as plain strings.
WRITTEN = re.compile(r"'([a-z_]+\.[a-z_]+)'")
# The prelude's comment shows the call with a made-up type.
EXAMPLE = "thing.happened"


def written_types() -> set[str]:
    found: set[str] = set()
    for script in LUA.glob("*.lua"):
        for line in script.read_text(encoding="utf-8").splitlines():
            if "type = " in line or "verification." in line:
                found.update(WRITTEN.findall(line))
    return found - {EXAMPLE}


def test_every_type_a_script_writes_is_an_event_type() -> None:
    """A new audit entry type added to a script without its name here fails this test."""
    written = written_types()
    assert {"binding.superseded", "verification.verified", "identity.checked"} <= written
    assert written <= {member.value for member in EventType}, sorted(written - set(EventType))

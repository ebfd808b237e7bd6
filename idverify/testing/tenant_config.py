"""A tenant's table of a config file a test writes: its settings and the verification methods it offers.

    config.write_text(tenant_toml("acme", {"doc": DOCUMENT_ONLY}, claim_assurance="low"))

gives ``[tenants.acme]`` with ``claim_assurance = "low"`` and a ``[tenants.acme.methods.doc]``
table, as an operator would write them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DOCUMENT_ONLY", "Method", "tenant_toml"]


@dataclass(frozen=True, slots=True)
class Method:
    """One ``[tenants.<tenant>.methods.<id>]`` table."""

    display_name: str
    assurance: str
    steps: tuple[str, ...]
    subject_kinds: tuple[str, ...] = ("person",)


DOCUMENT_ONLY = Method("document only", "low", ("document",))


def tenant_toml(tenant: str, methods: Mapping[str, Method], **settings: str) -> str:
    """``[tenants.<tenant>]`` with ``settings`` (``claim_assurance``, ...), then each method's table."""
    lines = [f"[tenants.{tenant}]", *(f"{key} = {_value(value)}" for key, value in settings.items())]
    for method_id, method in methods.items():
        lines += [
            "",
            f"[tenants.{tenant}.methods.{method_id}]",
            f"display_name = {_value(method.display_name)}",
            f"assurance = {_value(method.assurance)}",
            f"subject_kinds = {_value(list(method.subject_kinds))}",
            f"steps = {_value(list(method.steps))}",
        ]
    return "\n".join(lines) + "\n"


def _value(value: str | list[str]) -> str:
    return json.dumps(value)  # a JSON string, or array of strings, is the same TOML value

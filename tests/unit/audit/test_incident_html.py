"""The incident report's HTML page, read back with the standard library's HTML parser.

The page must state the items an incident report states, leave the operator's three fields
empty, load nothing, and carry any hostile string of the report as text, never as markup.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest

from idverify.audit.incident_html import OPERATOR_FIELDS, render_html
from tests.unit.audit.test_incident_report import report

HOSTILE = '</textarea><script>alert(1)</script><img src=x onerror=alert(1)><a href="//evil">\'&amp;'


class Page(HTMLParser):
    """What a browser would build: the elements, their attributes, the text under each heading."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.sections: dict[str, str] = {}
        self.textareas: dict[str, str] = {}
        self._section = ""
        self._textarea: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "h2":
            self._section = attributes.get("id") or ""
            self.sections[self._section] = ""
        if tag == "textarea":
            self._textarea = attributes.get("name") or ""
            self.textareas[self._textarea] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.textareas[self._textarea] += data
        if self._section:
            self.sections[self._section] += data


def _hostile(value: Any) -> Any:
    """The report with every string (client ids, tenant, notes, times) replaced by markup."""
    if isinstance(value, str):
        return HOSTILE
    if isinstance(value, dict):
        return {key: _hostile(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_hostile(item) for item in value]
    return value


def test_the_page_states_every_item_of_an_incident_report() -> None:
    page = Page(render_html(report()))
    assert set(page.sections) == {
        "what",
        "when",
        "scale",
        "categories",
        "threshold",
        "measures-taken",
        "measures-to-be-taken",
        "evidence",
    }
    assert "abc123" in page.sections["what"]
    assert "2026-12-06T07:00:00.000Z" in page.sections["when"]
    assert "1,234 (between" in page.sections["scale"]
    assert "persons (identities): 3" in page.sections["scale"]
    assert "Threshold crossed: yes" in page.sections["threshold"]
    assert "2026-12-06T11:00:00.000Z" in page.sections["threshold"]
    assert "00" * 32 in page.sections["evidence"]


def test_the_operators_fields_are_empty_text_areas() -> None:
    page = Page(render_html(report()))
    assert page.textareas == dict.fromkeys(OPERATOR_FIELDS, "")


def test_the_page_loads_nothing_and_runs_nothing() -> None:
    page = Page(render_html(report()))
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "form", "base"}
    assert not [attrs for _, attrs in page.tags if {"src", "href", "action"} & set(attrs)]
    (policy,) = [attrs["content"] for tag, attrs in page.tags if tag == "meta" and "content" in attrs]
    assert policy is not None
    assert "default-src 'none'" in policy


@pytest.mark.parametrize("where", ["every string", "principals only"])
def test_hostile_strings_stay_text(where: str) -> None:
    """A client id, tenant or note made of markup adds no element and shows as written."""
    benign = Page(render_html(report()))
    hostile_report = _hostile(report())
    if where == "principals only":
        hostile_report = report()
        hostile_report["incident"]["principals"] = [HOSTILE]
        hostile_report["reads"]["clients_that_read"] = [HOSTILE]
    page = Page(render_html(hostile_report))
    assert [tag for tag, _ in page.tags] == [tag for tag, _ in benign.tags]
    assert page.textareas == dict.fromkeys(OPERATOR_FIELDS, "")
    assert HOSTILE in page.sections["what"]

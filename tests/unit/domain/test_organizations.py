# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""An organization's legal representative and registered address: validated, named, hidden."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from idverify.domain.errors import InvalidArgument
from idverify.domain.organizations import organization_particulars, validate_particulars
from idverify.domain.subjects import DocumentType, Subject, SubjectKind

TODAY = date(2026, 6, 1)
REP_ID = "11010519491231002X"


def organization(**changes: Any) -> Subject:
    fields: dict[str, Any] = {
        "kind": SubjectKind.ORGANIZATION,
        "name": "杭州示例网络科技有限公司",
        "document_type": DocumentType.CN_USCC,
        "document_number": "91330106673959654P",
        "legal_representative_name": "张三",
        "legal_representative_document_type": DocumentType.CN_RIC,
        "legal_representative_document_number": REP_ID,
        "registered_address": "浙江省杭州市西湖区文三路１号",
    }
    fields.update(changes)
    return Subject(**fields)


def refused(subject: Subject, needed: frozenset[str] = frozenset()) -> tuple[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        organization_particulars(subject, needed, today=TODAY)
    return caught.value.reason, caught.value.field


class TestValid:
    def test_normalized_and_hidden(self) -> None:
        particulars = validate_particulars(organization(legal_representative_name=" 张　三 "), today=TODAY)
        assert particulars.legal_representative_name == "张 三"
        assert particulars.legal_representative_document is not None
        assert particulars.legal_representative_document.number == REP_ID
        # Full-width digits become ASCII (NFKC); whitespace collapses.
        assert particulars.registered_address == "浙江省杭州市西湖区文三路1号"
        for shown in (repr(particulars), str(particulars), repr(organization())):
            assert REP_ID not in shown
            assert "张" not in shown
            assert "杭州" not in shown

    def test_all_optional_unless_a_step_needs_them(self) -> None:
        empty = organization(
            legal_representative_name="",
            legal_representative_document_type=None,
            legal_representative_document_number="",
            registered_address="",
        )
        assert validate_particulars(empty, today=TODAY).legal_representative_name == ""
        assert refused(empty, frozenset({"legal_representative_name"})) == (
            "EMPTY",
            "subject.legal_representative_name",
        )
        assert refused(
            organization(legal_representative_document_type=None, legal_representative_document_number=""),
            frozenset({"legal_representative_document_number"}),
        ) == (
            "EMPTY",
            "subject.legal_representative_document_number",
        )


class TestRefused:
    @pytest.mark.parametrize(
        ("changes", "reason", "field"),
        [
            (
                {"legal_representative_name": "张\u200b三"},
                "BAD_CHARACTERS",
                "subject.legal_representative_name",
            ),
            ({"legal_representative_name": "张" * 101}, "TOO_LONG", "subject.legal_representative_name"),
            (
                {"legal_representative_document_number": "110105194912310021"},
                "CHECKSUM_MISMATCH",
                "subject.legal_representative_document_number",
            ),
            (
                {"legal_representative_document_type": None},
                "EMPTY",
                "subject.legal_representative_document_type",
            ),
            (
                {"legal_representative_document_number": " "},
                "EMPTY",
                "subject.legal_representative_document_number",
            ),
            (
                {
                    "legal_representative_document_type": DocumentType.CN_USCC,
                    "legal_representative_document_number": "91330106673959654P",
                },
                "KIND_MISMATCH",
                "subject.legal_representative_document_type",
            ),
            ({"legal_representative_name": ""}, "EMPTY", "subject.legal_representative_name"),
            ({"registered_address": "路\x00一号"}, "BAD_CHARACTERS", "subject.registered_address"),
            ({"registered_address": "路" * 201}, "TOO_LONG", "subject.registered_address"),
            ({"registered_address": "路" * 401}, "TOO_LONG", "subject.registered_address"),
        ],
    )
    def test_each_field_names_itself(self, changes: dict[str, Any], reason: str, field: str) -> None:
        assert refused(organization(**changes)) == (reason, field)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("legal_representative_name", "张三"),
            ("legal_representative_document_number", REP_ID),
            ("legal_representative_document_type", DocumentType.CN_RIC),
            ("registered_address", "北京市"),
        ],
    )
    def test_a_person_has_none_of_them(self, field: str, value: Any) -> None:
        person = Subject(SubjectKind.PERSON, "王五", DocumentType.CN_RIC, REP_ID, **{field: value})
        assert refused(person) == ("KIND_MISMATCH", f"subject.{field}")

    def test_messages_never_echo_the_value(self) -> None:
        with pytest.raises(InvalidArgument) as caught:
            validate_particulars(
                organization(legal_representative_document_number="110105194912310021"), today=TODAY
            )
        assert "110105194912310021" not in str(caught.value)

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Tests of the document verifier: it re-validates the subject's document and says when it does not apply."""

from __future__ import annotations

from dataclasses import replace

import pytest

from idverify.domain.errors import ConfigError
from idverify.domain.subjects import DocumentType, Subject, SubjectKind
from idverify.verifiers.base import Outcome, Verifier, VerifierDeps
from idverify.verifiers.document import DocumentVerifier

VALID_RIC = "11010519491231002X"


@pytest.fixture
def verifier(deps: VerifierDeps) -> DocumentVerifier:
    return DocumentVerifier({}, deps)


class TestDocumentVerifier:
    def test_declares_itself(self, verifier: DocumentVerifier) -> None:
        """It is the non-biometric `document` step and reads the document fields and name."""
        assert isinstance(verifier, Verifier)
        assert (verifier.name, verifier.biometric) == ("document", False)
        assert verifier.required_fields == frozenset({"document_type", "document_number", "name"})

    @pytest.mark.parametrize(
        "claim",
        [
            {"document_type": DocumentType.CN_RIC, "document_number": VALID_RIC},
            {
                "document_type": DocumentType.CN_RIC,
                "document_number": "110105 19491231 002x",
                "issuing_country": "CN",
            },
            {"document_type": DocumentType.CN_USCC, "document_number": "91350100M000100Y43"},
            {"document_type": DocumentType.PASSPORT, "document_number": "E12345678", "issuing_country": "CN"},
        ],
    )
    async def test_valid_document_passes(self, verifier, make_context, make_person, claim) -> None:
        """A well-formed number of its type passes, in any accepted spelling."""
        result = await verifier.check(make_context(replace(make_person(), **claim)))
        assert (result.outcome, result.reason) == (Outcome.PASS, "")

    @pytest.mark.parametrize(
        ("number", "reason"),
        [
            ("110105194912310021", "CHECKSUM_MISMATCH"),
            ("11010519491231002", "BAD_LENGTH"),
            ("11010519491231002Y", "BAD_FORMAT"),
        ],
    )
    async def test_invalid_document_fails_with_the_validators_reason(
        self, verifier, make_context, make_person, number, reason
    ) -> None:
        """A flipped check character or a truncated number fails with the stable reason code."""
        result = await verifier.check(make_context(make_person(document_number=number)))
        assert (result.outcome, result.reason) == (Outcome.FAIL, reason)

    async def test_birth_date_is_checked_against_the_verification_date(
        self, verifier, make_context, make_person
    ) -> None:
        """The step uses the context's date, not the clock: a number is judged as of its verification."""
        subject = make_person()
        context = make_context(subject)
        earlier = replace(context, today=context.today.replace(year=1940))
        assert (await verifier.check(context)).outcome is Outcome.PASS
        result = await verifier.check(earlier)
        assert (result.outcome, result.reason) == (Outcome.FAIL, "BIRTH_DATE_IN_FUTURE")

    async def test_passport_without_country_fails(self, verifier, make_context, make_person) -> None:
        """A bad issuing country is a failed claim, not an exception."""
        subject = make_person(document_type=DocumentType.PASSPORT, document_number="E12345678")
        result = await verifier.check(make_context(subject))
        assert result.outcome is Outcome.FAIL

    @pytest.mark.parametrize(("document_type", "number"), [(None, VALID_RIC), (DocumentType.CN_RIC, " ")])
    async def test_no_document_is_not_applicable(
        self, verifier, make_context, make_person, document_type, number
    ) -> None:
        """A subject claiming no document is skipped, not failed."""
        result = await verifier.check(
            make_context(make_person(document_type=document_type, document_number=number))
        )
        assert (result.outcome, result.reason) == (Outcome.NOT_APPLICABLE, "NO_DOCUMENT")

    async def test_missing_name_fails(self, verifier, make_context, make_person) -> None:
        """The name is a declared field; a document claimed without one fails."""
        result = await verifier.check(make_context(make_person(name=" ")))
        assert (result.outcome, result.reason) == (Outcome.FAIL, "NAME_REQUIRED")

    async def test_organization_document_passes(self, verifier, make_context) -> None:
        """Organizations are verified by their social credit code like persons by their ID."""
        subject = Subject(
            kind=SubjectKind.ORGANIZATION,
            name="示例科技有限公司",
            document_type=DocumentType.CN_USCC,
            document_number="91350100M000100Y43",
        )
        assert (await verifier.check(make_context(subject))).outcome is Outcome.PASS

    def test_refuses_options(self, deps: VerifierDeps) -> None:
        """The verifier has no options; a stray one is a configuration mistake."""
        with pytest.raises(ConfigError, match="takes no options"):
            DocumentVerifier({"strict": True}, deps)

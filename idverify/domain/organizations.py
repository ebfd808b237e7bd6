# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""What an organization's registry check reads besides its name and code, validated.

The legal representative's name and document and the registered address are held in memory
for one request only, like every subject field; errors name the field and a stable reason,
never the value.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from idverify.domain.documents import Document, validate_document
from idverify.domain.errors import InvalidArgument
from idverify.domain.normalize import normalize_name
from idverify.domain.subjects import SubjectKind

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import date

    from idverify.domain.subjects import Subject

__all__ = [
    "ADDRESS_FIELD",
    "MAX_ADDRESS_LENGTH",
    "REP_DOCUMENT_NUMBER_FIELD",
    "REP_DOCUMENT_TYPE_FIELD",
    "REP_NAME_FIELD",
    "OrganizationParticulars",
    "organization_particulars",
    "validate_particulars",
]

REP_NAME_FIELD: Final = "subject.legal_representative_name"
REP_DOCUMENT_TYPE_FIELD: Final = "subject.legal_representative_document_type"
REP_DOCUMENT_NUMBER_FIELD: Final = "subject.legal_representative_document_number"
ADDRESS_FIELD: Final = "subject.registered_address"
MAX_ADDRESS_LENGTH: Final = 200
_REJECTED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs"})


@dataclass(frozen=True, slots=True)
class OrganizationParticulars:
    """An organization's legal representative and registered address, normalized.

    Attributes:
        legal_representative_name: normalized like every name; empty when not given.
        legal_representative_document: the representative's validated (personal) document.
        registered_address: NFKC, whitespace collapsed; empty when not given.
    """

    legal_representative_name: str = ""
    legal_representative_document: Document | None = None
    registered_address: str = ""

    def __repr__(self) -> str:
        return "OrganizationParticulars(<personal fields hidden>)"

    __str__ = __repr__


def validate_particulars(subject: Subject, *, today: date) -> OrganizationParticulars:
    """Validate the organization-only fields of a subject.

    Args:
        subject: the subject as received.
        today: the date a document is checked against (Asia/Shanghai).

    Returns:
        The normalized particulars (all empty for a subject that gives none).

    Raises:
        InvalidArgument: ``KIND_MISMATCH`` when a person gives any of them; ``EMPTY`` for a
            document type without its number or the reverse, or a document without the name;
            the name's, document's or address's own reason (``BAD_CHARACTERS``, ``TOO_LONG``,
            ``CHECKSUM_MISMATCH``, ...) otherwise, always naming the ``legal_representative_*``
            or ``registered_address`` field.

    """
    given = {
        REP_NAME_FIELD: subject.legal_representative_name.strip(),
        REP_DOCUMENT_TYPE_FIELD: subject.legal_representative_document_type,
        REP_DOCUMENT_NUMBER_FIELD: subject.legal_representative_document_number.strip(),
        ADDRESS_FIELD: subject.registered_address.strip(),
    }
    if subject.kind is not SubjectKind.ORGANIZATION:
        for field, value in given.items():
            if value:
                raise InvalidArgument(
                    "only an organization has this field", reason="KIND_MISMATCH", field=field
                )
        return OrganizationParticulars()
    name = _rep_name(subject.legal_representative_name) if given[REP_NAME_FIELD] else ""
    document = (
        _rep_document(subject, today)
        if given[REP_DOCUMENT_TYPE_FIELD] or given[REP_DOCUMENT_NUMBER_FIELD]
        else None
    )
    if document is not None and not name:
        raise InvalidArgument(
            "the legal representative's document needs their name", reason="EMPTY", field=REP_NAME_FIELD
        )
    address = _address(subject.registered_address) if given[ADDRESS_FIELD] else ""
    return OrganizationParticulars(name, document, address)


def organization_particulars(
    subject: Subject, needed: Collection[str], *, today: date
) -> OrganizationParticulars:
    """Validate the organization-only fields and require those the method's steps read.

    Args:
        subject: the subject as received.
        needed: the subject fields the method's steps read (``legal_representative_name``,
            ``legal_representative_document_number``).
        today: the date a document is checked against.

    Returns:
        The normalized particulars.

    Raises:
        InvalidArgument: as :func:`validate_particulars`, or ``EMPTY`` naming a field a step
            needs that was not given.

    """
    particulars = validate_particulars(subject, today=today)
    if "legal_representative_name" in needed and not particulars.legal_representative_name:
        raise InvalidArgument(
            "the legal representative's name is required", reason="EMPTY", field=REP_NAME_FIELD
        )
    if "legal_representative_document_number" in needed and particulars.legal_representative_document is None:
        raise InvalidArgument(
            "the legal representative's document is required", reason="EMPTY", field=REP_DOCUMENT_NUMBER_FIELD
        )
    return particulars


def _rep_name(raw: str) -> str:
    try:
        return normalize_name(raw)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message, reason=exc.reason, field=REP_NAME_FIELD) from None


def _rep_document(subject: Subject, today: date) -> Document:
    document_type = subject.legal_representative_document_type
    if document_type is None:
        raise InvalidArgument("document type is required", reason="EMPTY", field=REP_DOCUMENT_TYPE_FIELD)
    if not subject.legal_representative_document_number.strip():
        raise InvalidArgument("document number is required", reason="EMPTY", field=REP_DOCUMENT_NUMBER_FIELD)
    try:
        # A legal representative's passport names no country here: only Chinese documents.
        document = validate_document(document_type, subject.legal_representative_document_number, today=today)
    except InvalidArgument as exc:
        field = (
            REP_DOCUMENT_TYPE_FIELD if exc.field.endswith("issuing_country") else REP_DOCUMENT_NUMBER_FIELD
        )
        raise type(exc)(exc.message, reason=exc.reason, field=field) from None
    if document.subject_kind is not SubjectKind.PERSON:
        raise InvalidArgument(
            "a legal representative's document is a person's",
            reason="KIND_MISMATCH",
            field=REP_DOCUMENT_TYPE_FIELD,
        )
    return document


def _address(raw: str) -> str:
    if len(raw) > 2 * MAX_ADDRESS_LENGTH:
        raise InvalidArgument(
            f"address is longer than {MAX_ADDRESS_LENGTH} characters", reason="TOO_LONG", field=ADDRESS_FIELD
        )
    text = unicodedata.normalize("NFKC", raw)
    if any(unicodedata.category(char) in _REJECTED_CATEGORIES for char in raw + text):
        raise InvalidArgument(
            "address has control, format or surrogate characters",
            reason="BAD_CHARACTERS",
            field=ADDRESS_FIELD,
        )
    text = " ".join(text.split())
    if len(text) > MAX_ADDRESS_LENGTH:
        raise InvalidArgument(
            f"address is longer than {MAX_ADDRESS_LENGTH} characters", reason="TOO_LONG", field=ADDRESS_FIELD
        )
    return text

"""Conversions between protobuf messages and domain values, shared by the servicers."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from idverify.domain.errors import InvalidArgument
from idverify.domain.subjects import AssuranceLevel, DocumentType, Subject, SubjectKind
from idverify.flows.verification import VerificationView
from idverify.v1 import common_pb2, verification_pb2

_KINDS = {
    common_pb2.SUBJECT_KIND_UNSPECIFIED: SubjectKind.PERSON,
    common_pb2.SUBJECT_KIND_PERSON: SubjectKind.PERSON,
    common_pb2.SUBJECT_KIND_ORGANIZATION: SubjectKind.ORGANIZATION,
}
KIND_TO_PROTO = {
    SubjectKind.PERSON: common_pb2.SUBJECT_KIND_PERSON,
    SubjectKind.ORGANIZATION: common_pb2.SUBJECT_KIND_ORGANIZATION,
}
_DOCUMENTS = {
    common_pb2.DOCUMENT_TYPE_CN_RIC: DocumentType.CN_RIC,
    common_pb2.DOCUMENT_TYPE_CN_RESIDENCE_PERMIT: DocumentType.CN_RESIDENCE_PERMIT,
    common_pb2.DOCUMENT_TYPE_CN_FOREIGN_PERMANENT_RESIDENT: DocumentType.CN_FOREIGN_PERMANENT_RESIDENT,
    common_pb2.DOCUMENT_TYPE_PASSPORT: DocumentType.PASSPORT,
    common_pb2.DOCUMENT_TYPE_CN_USCC: DocumentType.CN_USCC,
}
ASSURANCE_TO_PROTO = {
    AssuranceLevel.LOW: common_pb2.ASSURANCE_LEVEL_LOW,
    AssuranceLevel.SUBSTANTIAL: common_pb2.ASSURANCE_LEVEL_SUBSTANTIAL,
    AssuranceLevel.HIGH: common_pb2.ASSURANCE_LEVEL_HIGH,
}
_STATUS = {
    name: verification_pb2.VerificationStatus.Value(f"VERIFICATION_STATUS_{name}")
    for name in ("PENDING", "CHALLENGE_SENT", "VERIFIED", "REJECTED", "EXPIRED", "NEEDS_GUARDIAN_CONSENT")
}
# Bounds on free-text fields, checked before any work so that a huge field costs nothing.
_MAX_FIELD = {
    "name": 200,
    "document_number": 64,
    "phone_number": 32,
    "bank_card_number": 32,
    "issuing_country": 3,
    "birth_date": 32,
    "legal_representative_name": 200,
    "legal_representative_document_number": 64,
    "registered_address": 400,
}


def subject_kind(value: common_pb2.SubjectKind.ValueType | int, field: str = "subject.kind") -> SubjectKind:
    """A SubjectKind from its proto value (unspecified means person).

    Raises:
        InvalidArgument: on an unknown enum number.
    """
    try:
        return _KINDS[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument("unknown subject kind", reason="UNKNOWN_ENUM", field=field) from None


def subject_from_proto(message: common_pb2.Subject, field: str = "subject") -> Subject:
    """A domain Subject from its message (bounds checked, content validated later).

    Raises:
        InvalidArgument: on an unknown enum value or an oversized field.
    """
    for name, limit in _MAX_FIELD.items():
        if len(getattr(message, name)) > limit:
            raise InvalidArgument(f"at most {limit} characters", reason="TOO_LONG", field=f"{field}.{name}")
    document_type = _document_type(message.document_type, f"{field}.document_type")
    rep_document_type = _document_type(
        message.legal_representative_document_type, f"{field}.legal_representative_document_type"
    )
    return Subject(
        kind=subject_kind(message.kind, f"{field}.kind"),
        name=message.name,
        document_type=document_type,
        document_number=message.document_number,
        phone_number=message.phone_number,
        bank_card_number=message.bank_card_number,
        issuing_country=message.issuing_country,
        birth_date=message.birth_date,
        legal_representative_name=message.legal_representative_name,
        legal_representative_document_type=rep_document_type,
        legal_representative_document_number=message.legal_representative_document_number,
        registered_address=message.registered_address,
    )


def _document_type(value: int, field: str) -> DocumentType | None:
    """The document type of a proto enum value (None when unspecified).

    Raises:
        InvalidArgument: on an unknown enum number.
    """
    if value == common_pb2.DOCUMENT_TYPE_UNSPECIFIED:
        return None
    try:
        return _DOCUMENTS[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument("unknown document type", reason="UNKNOWN_ENUM", field=field) from None


def timestamp_ms(ms: int) -> Timestamp:
    """A Timestamp from epoch milliseconds."""
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def verification_to_proto(view: VerificationView) -> verification_pb2.Verification:
    """The wire form of a verification."""
    message = verification_pb2.Verification(
        verification_id=view.verification_id,
        status=_STATUS.get(view.status, verification_pb2.VERIFICATION_STATUS_UNSPECIFIED),
        reason_code=view.reason_code,
        next_step=view.next_step,
        masked_phone=view.masked_phone,
        attempts_left=view.attempts_left,
        fallback_method_ids=view.fallback_method_ids,
        account_id=view.account_id,
        method_id=view.method_id,
        challenge_url=view.challenge_url,
        challenge_token=view.challenge_token,
    )
    if view.created_ms:
        message.created_at.CopyFrom(timestamp_ms(view.created_ms))
    if view.expires_ms:
        message.expires_at.CopyFrom(timestamp_ms(view.expires_ms))
    return message

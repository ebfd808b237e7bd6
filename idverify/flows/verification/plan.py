"""A start's request validated once into a plan: what its admission, steps and commit read.

Personal data (the name, the document, the phone) lives only in the plan's fields while the start
runs; nothing here stores or logs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from idverify.domain import birth_dates
from idverify.domain import consent as consent_rules
from idverify.domain.buckets import bucket_of
from idverify.domain.documents import Document, validate_document
from idverify.domain.errors import InvalidArgument
from idverify.domain.methods import MethodSpec, is_biometric, required_fields
from idverify.domain.normalize import normalize_identifier, normalize_name, normalize_phone
from idverify.domain.organizations import OrganizationParticulars, organization_particulars
from idverify.domain.phone_destinations import check_phone_destination
from idverify.domain.subjects import Subject, SubjectKind
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.flows.verification.port import RequestRef
from idverify.privacy.keyring import Keyring
from idverify.privacy.name_binding import claim_tag
from idverify.privacy.verification_ids import new_verification_id


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A StartVerification call, as received (not yet validated)."""

    request_id: str
    account_id: str
    method_id: str
    subject: Subject
    consents: Sequence[str]
    client_ip: str = ""
    # For a vendor-run challenge (face liveness): where the vendor's page returns the user, and
    # the vendor client SDK's environment string. Passed to the step, never stored.
    return_url: str = ""
    meta_info: str = ""
    # The version (hash) of the consent text shown, per purpose in ``consents``.
    consent_text_versions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepExtras:
    """Request fields only some steps read: kept in memory for the steps, never stored."""

    organization: OrganizationParticulars = field(default_factory=OrganizationParticulars)
    bank_card: str = ""
    return_url: str = ""
    meta_info: str = ""

    def __repr__(self) -> str:
        return "StepExtras(<hidden>)"


@dataclass(frozen=True, slots=True)
class StartPlan:
    """A validated start, decided once and read by its admission, steps and commit.

    It carries the request's personal data (name, document, phone) in memory only, for as long
    as the start runs; its repr names none of it.
    """

    tenant: str
    request_id: str
    # The request id as the store keeps it: pseudonyms under its account, never the id.
    request: RequestRef
    verification_id: str
    account_id: str
    method: MethodSpec
    document: Document
    name: str
    # Normalized, or "" when no step of the method reads a phone.
    phone: str
    # The calendar day (Asia/Shanghai) ages are judged on, fixed for the whole start.
    today: date
    declared: date | None
    # The consent purposes the method needs, and the text versions given with the request.
    purposes: frozenset[str]
    given: Mapping[str, str]
    name_tag: str
    info: RequestInfo
    extras: StepExtras

    def __repr__(self) -> str:
        return f"StartPlan(tenant={self.tenant!r}, verification_id={self.verification_id!r}, <hidden>)"


def plan_start(deps: FlowDeps, tenant: str, request: StartRequest, info: RequestInfo) -> StartPlan:
    """Validates a start's request against the tenant's methods and policy: its plan.

    Raises:
        InvalidArgument: on any malformed field (named in the error).
        ConsentRequired: when the request's consents are malformed for their purposes.
    """
    request_id = normalize_identifier(request.request_id, field="request_id")
    account_id = normalize_identifier(request.account_id, field="account_id")
    method_id = normalize_identifier(request.method_id, field="method_id", max_length=40)
    subject = request.subject
    method = deps.settings.methods_for(tenant).get(method_id)
    if subject.kind not in method.subject_kinds:
        raise InvalidArgument(
            "method does not serve this subject kind", reason="KIND_MISMATCH", field="subject.kind"
        )
    needed = set(required_fields(method, deps.fields_of_step))
    name = normalize_name(subject.name)
    if subject.document_type is None:
        raise InvalidArgument("document type is required", reason="EMPTY", field="subject.document_type")
    today = deps.today()
    document = validate_document(
        subject.document_type, subject.document_number, subject.issuing_country, today=today
    )
    _check_kind(subject, document)
    declared = birth_dates.parse_declared(subject.birth_date, today=today, document_birth=document.birth_date)
    particulars = organization_particulars(subject, needed, today=today)
    phone = normalize_phone(subject.phone_number) if "phone_number" in needed else ""
    if phone:
        check_phone_destination(phone, deps.settings.sms_destinations.get(tenant, ()))
    _check_client_ip(request.client_ip)
    given = consent_rules.check_request_consents(request.consents, request.consent_text_versions)
    purposes = consent_rules.needed_purposes(needed, biometric=is_biometric(method, deps.biometric_steps))
    account_pseudonym = deps.keyring.pseudonym(tenant, "account", account_id)
    return StartPlan(
        tenant=tenant,
        request_id=request_id,
        request=request_ref(deps.keyring, tenant, account_pseudonym, request_id),
        # The id names the account's bucket, where its record is to live (issue 26).
        verification_id=new_verification_id(deps.keyring, tenant, bucket_of(account_pseudonym)),
        account_id=account_id,
        method=method,
        document=document,
        name=name,
        phone=phone,
        today=today,
        declared=declared,
        purposes=purposes,
        given=given,
        # Every counter that refuses a start counts per (document, name) pair, so that a
        # squatter's failures under a false name never refuse the owner who presents the true one.
        name_tag=claim_tag(deps.keyring, tenant, document.document_type.value, document.number, name),
        info=info,
        extras=StepExtras(
            bank_card=subject.bank_card_number.strip() if "bank_card_number" in needed else "",
            organization=particulars,
            return_url=request.return_url,
            meta_info=request.meta_info,
        ),
    )


def request_ref(keyring: Keyring, tenant: str, account_pseudonym: str, request_id: str) -> RequestRef:
    """A request id's keys: keyed over its account, so that another account's reuse is another key.

    A retry carries the same account, so the key can live in the account's bucket (issue 26, §2
    "Request ids"); the price is that the same request id under another account starts a second
    verification. The account's pseudonym is 32 hex digits, so the pair reads one way only. The
    legacy pseudonym (the request id's alone) names what older releases wrote.
    """
    return RequestRef(
        account_pseudonym=account_pseudonym,
        pseudonym=keyring.pseudonym(tenant, "account-request", f"{account_pseudonym}:{request_id}"),
        legacy_pseudonym=keyring.pseudonym(tenant, "request", request_id),
    )


def _check_kind(subject: Subject, document: Document) -> None:
    """Refuses a document of the other kind of subject, and a birth date for an organization.

    Raises:
        InvalidArgument: ``KIND_MISMATCH`` naming the field at fault.
    """
    if document.subject_kind is not subject.kind:
        raise InvalidArgument(
            "document type does not fit the subject kind",
            reason="KIND_MISMATCH",
            field="subject.document_type",
        )
    if subject.birth_date.strip() and document.subject_kind is not SubjectKind.PERSON:
        raise InvalidArgument(
            "only a person has a birth date", reason="KIND_MISMATCH", field=birth_dates.FIELD
        )


def _check_client_ip(value: str) -> None:
    import ipaddress  # noqa: PLC0415 - cheap, and only this check needs it

    if not value:
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise InvalidArgument("client_ip: not an IP address", reason="BAD_IP", field="client_ip") from None

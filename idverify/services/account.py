"""AccountService: account reads and IP-location display for the platform role."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

from idverify.domain.birth_dates import AgeSource
from idverify.domain.display_names import NameVerdict
from idverify.domain.subjects import AgeBand, AssuranceLevel, SubjectKind
from idverify.flows.account_export import AccountExportFlow, ErasureState, HeldForm
from idverify.flows.accounts import AccountFlow, AccountView
from idverify.flows.display_names import DisplayNameFlow
from idverify.flows.erasure import ErasureFlow
from idverify.flows.read_accounting import ALL_CATEGORIES, Category, Reader, ReadLedger
from idverify.security.principals import caller
from idverify.services.audit import head_to_proto
from idverify.services.consent import consent_to_proto
from idverify.services.convert import ASSURANCE_TO_PROTO, KIND_TO_PROTO, timestamp_ms
from idverify.services.grpc_types import Context, EncodedReply
from idverify.services.location_wire import encode_batch_reply, location_to_proto
from idverify.services.request_info import request_info
from idverify.v1 import account_pb2 as pb
from idverify.v1 import account_pb2_grpc

_AGE_BANDS = {
    AgeBand.UNDER_14.value: pb.AGE_BAND_UNDER_14,
    AgeBand.FROM_14_TO_17.value: pb.AGE_BAND_14_TO_17,
    AgeBand.ADULT.value: pb.AGE_BAND_ADULT,
}
_AGE_SOURCES = {
    AgeSource.DOCUMENT.value: pb.AGE_SOURCE_DOCUMENT,
    AgeSource.AUTHORITY.value: pb.AGE_SOURCE_AUTHORITY,
    AgeSource.DECLARED.value: pb.AGE_SOURCE_DECLARED,
    AgeSource.LEGACY.value: pb.AGE_SOURCE_LEGACY,
}
_ERASURE_STATES = {
    ErasureState.NOT_SCHEDULED: pb.ERASURE_STATE_NOT_SCHEDULED,
    ErasureState.SCHEDULED: pb.ERASURE_STATE_SCHEDULED,
    ErasureState.ERASED: pb.ERASURE_STATE_ERASED,
}
_VERDICTS = {
    NameVerdict.CONSISTENT: pb.DISPLAY_NAME_VERDICT_CONSISTENT,
    NameVerdict.INCONSISTENT: pb.DISPLAY_NAME_VERDICT_INCONSISTENT,
    NameVerdict.IMPERSONATION: pb.DISPLAY_NAME_VERDICT_IMPERSONATION,
    NameVerdict.UNVERIFIED: pb.DISPLAY_NAME_VERDICT_UNVERIFIED,
    NameVerdict.NOT_APPLICABLE: pb.DISPLAY_NAME_VERDICT_NOT_APPLICABLE,
}
_VERIFICATION = (Category.VERIFICATION,)
_HELD_FORMS = {HeldForm.KEYED_HASH: pb.HELD_FORM_KEYED_HASH, HeldForm.SEALED: pb.HELD_FORM_SEALED}


@dataclass(eq=False, slots=True)
class AccountServicer(account_pb2_grpc.AccountServiceServicer):
    """Platform-facing account RPCs."""

    flow: AccountFlow
    erasure: ErasureFlow
    export: AccountExportFlow
    reads: ReadLedger
    _: KW_ONLY
    consent_cooldown_ms: int
    display_names: DisplayNameFlow

    async def GetAccount(self, request: pb.GetAccountRequest, context: Context) -> pb.GetAccountResponse:
        """What a platform may know about an account."""
        del context
        principal = caller()
        view = await self.flow.get_account(principal.tenant, request.account_id)
        await self.reads.record(
            principal.tenant, Reader.of(principal, "GetAccount"), _VERIFICATION, [request.account_id]
        )
        return pb.GetAccountResponse(account=account_to_proto(view))

    async def LookupIp(self, request: pb.LookupIpRequest, context: Context) -> pb.LookupIpResponse:
        """Resolves an IP without storing anything."""
        del context
        return pb.LookupIpResponse(location=location_to_proto(await self.flow.lookup_ip(request.ip)))

    async def RecordLoginIp(
        self, request: pb.RecordLoginIpRequest, context: Context
    ) -> pb.RecordLoginIpResponse:
        """Stores a login IP's display label on the account."""
        location = await self.flow.record_login_ip(
            caller().tenant, request.account_id, request.ip, request_info(context)
        )
        return pb.RecordLoginIpResponse(location=location_to_proto(location))

    async def GetIpLocations(  # type: ignore[override]  # the interceptor sends EncodedReply as is
        self, request: pb.GetIpLocationsRequest, context: Context
    ) -> EncodedReply:
        """Stored labels of many accounts at once, as a reply assembled from their wire forms."""
        del context
        principal = caller()
        found, unknown = await self.flow.ip_locations(
            principal.tenant, request.account_ids, Reader.of(principal, "GetIpLocations")
        )
        return encode_batch_reply(found, unknown)

    async def CancelAccount(
        self, request: pb.CancelAccountRequest, context: Context
    ) -> pb.CancelAccountResponse:
        """Unbinds the account now and schedules the erasure of what is stored about it."""
        due_ms = await self.erasure.cancel(caller().tenant, request.account_id, request_info(context))
        return pb.CancelAccountResponse(erasure_due_at=timestamp_ms(due_ms))

    async def ExportAccountData(
        self, request: pb.ExportAccountDataRequest, context: Context
    ) -> pb.ExportAccountDataResponse:
        """A person's copy of their account's data, its audit entries proven; the export is audited."""
        principal = caller()
        bundle = await self.export.export(
            principal.tenant, request.account_id, request.start_index, request_info(context)
        )
        await self.reads.record(
            principal.tenant, Reader.of(principal, "ExportAccountData"), ALL_CATEGORIES, [request.account_id]
        )
        return pb.ExportAccountDataResponse(
            account=account_to_proto(bundle.view),
            consents=[consent_to_proto(state, self.consent_cooldown_ms) for state in bundle.consents],
            erasure_state=_ERASURE_STATES[bundle.erasure],
            held_values=[
                pb.HeldValue(item=held.item, form=_HELD_FORMS[held.form], record=held.record)
                for held in bundle.held
            ],
            audit_pseudonyms=bundle.audit_pseudonyms,
            head=head_to_proto(bundle.head),
            audit_entries=[
                pb.ProvenAuditEntry(index=entry.index, leaf=entry.leaf, inclusion_proof=entry.proof)
                for entry in bundle.entries
            ],
            next_start_index=bundle.next_start_index,
        )

    async def CheckDisplayName(
        self, request: pb.CheckDisplayNameRequest, context: Context
    ) -> pb.CheckDisplayNameResponse:
        """Whether a display name fits the account's verified identity: a verdict, never a name."""
        del context
        principal = caller()
        judgement = await self.display_names.check(
            principal.tenant, principal.client_id, request.account_id, request.display_name
        )
        # A verdict against the account's verified identity is a read of it.
        await self.reads.record(
            principal.tenant, Reader.of(principal, "CheckDisplayName"), _VERIFICATION, [request.account_id]
        )
        return pb.CheckDisplayNameResponse(verdict=_VERDICTS[judgement.verdict], reason_code=judgement.reason)


def account_to_proto(view: AccountView) -> pb.Account:
    """The wire form of an account view."""
    account = pb.Account(account_id=view.account_id, verified=view.verified, method_id=view.method_id)
    if view.verified_ms:
        account.verified_at.CopyFrom(timestamp_ms(view.verified_ms))
    if view.assurance:
        account.assurance = ASSURANCE_TO_PROTO[AssuranceLevel(view.assurance)]
    if view.subject_kind:
        account.subject_kind = KIND_TO_PROTO[SubjectKind(view.subject_kind)]
    account.age_band = _AGE_BANDS.get(view.age_band, pb.AGE_BAND_UNSPECIFIED)
    account.age_source = _AGE_SOURCES.get(view.age_source, pb.AGE_SOURCE_UNSPECIFIED)
    if view.location is not None:
        account.ip_location.CopyFrom(location_to_proto(view.location))
        account.ip_recorded_at.CopyFrom(timestamp_ms(view.location.recorded_ms))
    if view.erasure_due_ms:
        account.erasure_due_at.CopyFrom(timestamp_ms(view.erasure_due_ms))
    if view.verified:
        account.binding_state = pb.BINDING_STATE_BOUND
    elif view.superseded_ms:
        account.binding_state = pb.BINDING_STATE_SUPERSEDED
        account.superseded_at.CopyFrom(timestamp_ms(view.superseded_ms))
    else:
        account.binding_state = pb.BINDING_STATE_UNBOUND
    return account

"""ConsentService: consent per account and purpose, and a guardian's consent for a minor."""

from __future__ import annotations

from idverify.domain import consent as rules
from idverify.domain.consent import ConsentState
from idverify.flows.consent import ConsentFlow
from idverify.flows.read_accounting import Category, Reader, ReadLedger
from idverify.flows.verification import GuardianConsent, GuardianConsents
from idverify.security.principals import caller
from idverify.services.convert import timestamp_ms
from idverify.services.grpc_types import Context
from idverify.services.request_info import request_info
from idverify.v1 import consent_pb2 as pb
from idverify.v1 import consent_pb2_grpc

_CONSENT = (Category.CONSENT,)
_RELATIONSHIPS = {
    pb.GUARDIAN_RELATIONSHIP_PARENT: "parent",
    pb.GUARDIAN_RELATIONSHIP_LEGAL_GUARDIAN: "legal_guardian",
}


class ConsentServicer(consent_pb2_grpc.ConsentServiceServicer):
    """Consent RPCs for the registrar role."""

    def __init__(self, consent: ConsentFlow, guardians: GuardianConsents, reads: ReadLedger) -> None:
        # A guardian's consent is the one part of the verification use case this service reaches.
        self._consent = consent
        self._guardians = guardians
        self._reads = reads

    async def GrantConsent(
        self, request: pb.GrantConsentRequest, context: Context
    ) -> pb.GrantConsentResponse:
        """Grants one purpose; purpose ``guardian`` with a verification completes a minor's."""
        purpose = rules.check_purpose(request.purpose)
        text_version = rules.check_text_version(request.text_version)
        tenant, info = caller().tenant, request_info(context)
        if purpose == rules.GUARDIAN:
            await self._guardians.grant(
                GuardianConsent(
                    tenant=tenant,
                    account_id=request.account_id,
                    verification_id=request.verification_id,
                    guardian_account_id=request.guardian_account_id,
                    text_version=text_version,
                    relationship=_RELATIONSHIPS.get(request.relationship, ""),
                    info=info,
                )
            )
        # The guardian step audited its consent already; the record is kept the same way.
        state = await self._consent.grant(
            tenant, request.account_id, purpose, text_version, info, audit=purpose != rules.GUARDIAN
        )
        return pb.GrantConsentResponse(consent=self._to_proto(state))

    async def WithdrawConsent(
        self, request: pb.WithdrawConsentRequest, context: Context
    ) -> pb.WithdrawConsentResponse:
        """Withdraws (or refuses) one purpose, at once."""
        state = await self._consent.withdraw(
            caller().tenant, request.account_id, request.purpose, request_info(context)
        )
        return pb.WithdrawConsentResponse(consent=self._to_proto(state))

    async def ListConsents(
        self, request: pb.ListConsentsRequest, context: Context
    ) -> pb.ListConsentsResponse:
        """Every purpose on record for the account."""
        del context
        principal = caller()
        states = await self._consent.list(principal.tenant, request.account_id)
        if states:
            await self._reads.record(
                principal.tenant,
                Reader.of(principal, "ListConsents"),
                _CONSENT,
                [request.account_id],
                only_existing=False,
            )
        return pb.ListConsentsResponse(consents=[self._to_proto(state) for state in states])

    def _to_proto(self, state: ConsentState) -> pb.Consent:
        return consent_to_proto(state, self._consent.cooldown_ms)


def consent_to_proto(state: ConsentState, cooldown_ms: int) -> pb.Consent:
    """The wire form of one purpose's consent record."""
    consent = pb.Consent(purpose=state.purpose, text_version=state.text_version, granted=state.granted)
    if state.granted_ms:
        consent.granted_at.CopyFrom(timestamp_ms(state.granted_ms))
    if state.withdrawn_ms:
        consent.withdrawn_at.CopyFrom(timestamp_ms(state.withdrawn_ms))
    until = state.cooldown_until_ms(cooldown_ms)
    if until:
        consent.cooldown_until.CopyFrom(timestamp_ms(until))
    return consent

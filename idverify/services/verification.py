"""VerificationService: proto in, flow call, proto out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from idverify.events.streams import EventStreams
from idverify.flows.context import RequestInfo
from idverify.flows.identity_check import IdentityCheckFlow
from idverify.flows.read_accounting import Category, Reader, ReadLedger
from idverify.flows.verification import StartRequest, VerificationFlow, VerificationView
from idverify.security.principals import caller
from idverify.services.convert import (
    ASSURANCE_TO_PROTO,
    subject_from_proto,
    subject_kind,
    verification_to_proto,
)
from idverify.services.grpc_types import Context
from idverify.services.request_info import RequestIdPseudonyms, request_info
from idverify.v1 import verification_pb2 as pb
from idverify.v1 import verification_pb2_grpc

_VERIFICATION = (Category.VERIFICATION,)


@dataclass(eq=False, slots=True)
class VerificationServicer(verification_pb2_grpc.VerificationServiceServicer):
    """Signup-flow RPCs for the registrar role."""

    flow: VerificationFlow
    identity_check: IdentityCheckFlow
    request_ids: RequestIdPseudonyms
    streams: EventStreams
    reads: ReadLedger

    async def ListMethods(self, request: pb.ListMethodsRequest, context: Context) -> pb.ListMethodsResponse:
        """The methods the caller's tenant offers for a subject kind (and account, if named)."""
        del context
        kind = subject_kind(request.subject_kind)
        offered = (
            await self.flow.methods_for_account(caller().tenant, kind, request.account_id)
            if request.account_id
            else self.flow.list_methods(caller().tenant, kind)
        )
        methods = [
            pb.Method(
                id=spec.id,
                display_name=spec.display_name,
                assurance=ASSURANCE_TO_PROTO[spec.assurance],
                biometric=biometric,
                required_fields=fields,
                steps=list(spec.steps),
            )
            for spec, biometric, fields in offered
        ]
        return pb.ListMethodsResponse(methods=methods)

    async def StartVerification(
        self, request: pb.StartVerificationRequest, context: Context
    ) -> pb.StartVerificationResponse:
        """Starts a verification (idempotent on request_id)."""
        start = StartRequest(
            request_id=request.request_id,
            account_id=request.account_id,
            method_id=request.method_id,
            subject=subject_from_proto(request.subject),
            consents=list(request.consents),
            client_ip=request.client_ip,
            return_url=request.challenge_client.return_url,
            meta_info=request.challenge_client.meta_info,
            consent_text_versions=dict(request.consent_text_versions),
        )
        info = self.request_ids.request_info(context, request.request_id)
        view = await self.flow.start(caller().tenant, start, info)
        return pb.StartVerificationResponse(verification=verification_to_proto(view))

    async def SubmitChallenge(
        self, request: pb.SubmitChallengeRequest, context: Context
    ) -> pb.SubmitChallengeResponse:
        """Answers the pending challenge."""
        view = await self.flow.submit(
            caller().tenant, request.verification_id, request.code, request_info(context)
        )
        return pb.SubmitChallengeResponse(verification=verification_to_proto(view))

    async def GetVerification(
        self, request: pb.GetVerificationRequest, context: Context
    ) -> pb.GetVerificationResponse:
        """Reads a verification."""
        principal = caller()
        view = await self.flow.get(
            principal.tenant,
            request.verification_id,
            request_info(context),
            reader=Reader.of(principal, "GetVerification"),
        )
        return pb.GetVerificationResponse(verification=verification_to_proto(view))

    async def WatchVerification(
        self, request: pb.WatchVerificationRequest, context: Context
    ) -> AsyncIterator[pb.WatchVerificationResponse]:
        """The verification's state now and at each change, until it is final."""
        principal = caller()
        info = request_info(context)

        reader = Reader.of(principal, "WatchVerification")

        async def read() -> VerificationView:
            return await self.flow.get(principal.tenant, request.verification_id, info, reader=reader)

        sent: pb.Verification | None = None
        async for view in self.streams.watch(principal, read, request.verification_id):
            message = verification_to_proto(view)
            if message != sent:
                sent = message
                yield pb.WatchVerificationResponse(verification=message)

    async def CheckIdentity(
        self, request: pb.CheckIdentityRequest, context: Context
    ) -> pb.CheckIdentityResponse:
        """Whether a claim matches the identity bound to an account."""
        principal = caller()
        match = await self.identity_check.check_identity(
            principal.tenant, request.account_id, subject_from_proto(request.subject), request_info(context)
        )
        # Answered, so read: a refused check (its limit reached) told nothing of the account.
        await self.reads.record(
            principal.tenant, Reader.of(principal, "CheckIdentity"), _VERIFICATION, [request.account_id]
        )
        return pb.CheckIdentityResponse(match=match)


__all__ = ["RequestInfo", "VerificationServicer"]

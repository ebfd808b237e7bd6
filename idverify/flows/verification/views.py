"""What a caller sees of a verification, read from its stored record, and the counts it feeds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from idverify.domain.errors import InvalidArgument, NotFound
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.flows.read_accounting import Category, Reader, read_spec
from idverify.flows.verification.port import VerificationStore, WriteOutcome, Written
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.observability import telemetry
from idverify.privacy.sealing import SealError, associated_data, sealed_from_text

_VERIFICATION_ID_HEX = 32
_FINAL = frozenset({"VERIFIED", "REJECTED", "EXPIRED", "NEEDS_GUARDIAN_CONSENT"})


@dataclass(frozen=True, slots=True)
class VerificationView:
    """What a caller may see of a verification: no personal data beyond the masked phone."""

    verification_id: str
    status: str
    reason_code: str
    next_step: str
    masked_phone: str
    attempts_left: int
    account_id: str
    method_id: str
    created_ms: int
    expires_ms: int
    fallback_method_ids: list[str] = field(default_factory=list)
    # A vendor-run challenge's page and session token, while it waits to be completed.
    challenge_url: str = ""
    challenge_token: str = ""


class VerificationReader:
    """Reads verifications, and turns a stored record (or what a write answered) into a view."""

    def __init__(self, deps: FlowDeps, store: VerificationStore) -> None:
        self._d = deps
        self._store = store

    async def get(
        self, tenant: str, verification_id: str, info: RequestInfo, reader: Reader | None = None
    ) -> VerificationView:
        """The current state of a verification; the same step records ``reader``'s read of its account.

        Raises:
            InvalidArgument: on a malformed id.
            NotFound: when the verification does not exist (or has expired away).
        """
        verification_id = check_verification_id(verification_id)
        spec = (
            read_spec(reader, (Category.VERIFICATION,), self._d.settings.reads.retention_days)
            if reader is not None
            else None
        )
        written = await self._store.read(tenant, verification_id, json.dumps(info.audit_fields()), spec)
        return self.written_view(tenant, verification_id, written, count=False)

    async def record(self, tenant: str, verification_id: str) -> VerificationRecord | None:
        """The verification's stored record; None when there is none.

        Raises:
            StoreUnavailable: when the store is down.
        """
        return await self._store.record(tenant, verification_id)

    def written_view(
        self, tenant: str, verification_id: str, written: Written, *, count: bool = True
    ) -> VerificationView:
        """The view of the record a write answered with; ``count`` feeds the finish metrics.

        Raises:
            NotFound: the write found no such verification.
        """
        if written.outcome is WriteOutcome.NOT_FOUND or written.record is None:
            raise NotFound("no such verification", field="verification_id")
        view = self.view(tenant, verification_id, written.record)
        if count:
            count_finish(view)
        return view

    def view(self, tenant: str, verification_id: str, record: VerificationRecord) -> VerificationView:
        """A stored record as its caller may see it (the account id unsealed, nothing personal)."""
        try:
            account_id = self._d.sealer.unseal(
                sealed_from_text(record.acct_sealed),
                associated=associated_data(tenant, "account-id", verification_id),
            ).decode()
        except SealError:
            account_id = ""
        status = record.status
        challenge_url, challenge_token = (
            self.vendor_challenge(tenant, verification_id, record)
            if status is Status.CHALLENGE_SENT
            else ("", "")
        )
        return VerificationView(
            verification_id=verification_id,
            status=status.value,
            reason_code=record.reason,
            next_step=record.next_step,
            masked_phone=record.masked_phone,
            attempts_left=record.attempts_left,
            account_id=account_id,
            method_id=record.method,
            created_ms=record.created_ms,
            expires_ms=record.expires_ms,
            fallback_method_ids=list(record.fallbacks) if status is Status.REJECTED else [],
            challenge_url=challenge_url,
            challenge_token=challenge_token,
        )

    def vendor_challenge(
        self, tenant: str, verification_id: str, record: VerificationRecord
    ) -> tuple[str, str]:
        """The (url, token) of a pending vendor-run challenge, or empty strings."""
        sealed = record.challenge_sealed
        if not sealed:
            return "", ""
        try:
            opened = json.loads(
                self._d.sealer.unseal(
                    sealed_from_text(sealed),
                    associated=associated_data(tenant, "vendor-challenge", verification_id),
                )
            )
        except (SealError, ValueError):
            return "", ""
        return str(opened.get("url", "")), str(opened.get("token", ""))


def check_verification_id(value: str) -> str:
    """The id, if it is one a verification can have.

    Raises:
        InvalidArgument: ``BAD_ID``.
    """
    if len(value) != _VERIFICATION_ID_HEX or any(c not in "0123456789abcdef" for c in value):
        raise InvalidArgument(
            "verification_id: 32 lower-case hex characters", reason="BAD_ID", field="verification_id"
        )
    return value


def count_start(method_id: str, view: VerificationView) -> None:
    """Counts a start (and the code it sent) in the metrics, then its finish if it finished."""
    metrics = telemetry.instruments
    telemetry.Instruments.add(metrics.verifications_started, method=method_id)
    if view.status == "CHALLENGE_SENT":
        telemetry.Instruments.add(metrics.challenge_sends, method=method_id)
    count_finish(view)


def count_finish(view: VerificationView) -> None:
    """Counts a wrong code, a finish and a binding refusal in the metrics."""
    metrics = telemetry.instruments
    if view.reason_code == "OTP_MISMATCH":
        telemetry.Instruments.add(metrics.challenge_failures, method=view.method_id)
    if view.status in _FINAL:
        telemetry.Instruments.add(
            metrics.verifications_finished, method=view.method_id, status=view.status, reason=view.reason_code
        )
    if view.reason_code in {"BINDING_LIMIT_REACHED", "ACCOUNT_BOUND_TO_OTHER_IDENTITY", "NAME_MISMATCH"}:
        telemetry.Instruments.add(metrics.binding_refusals, reason=view.reason_code)

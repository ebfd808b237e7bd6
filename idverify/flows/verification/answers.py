"""Answers to a verification's challenge: a code, or a vendor-run challenge's verdict.

A code is counted for its phone across tenants before the tenant's step judges it. A vendor-run
challenge (face liveness) is judged by asking the vendor, when the caller submits an empty code
or when the vendor's callback says the user is done; the store records the verdict like an answer.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

from idverify.domain.errors import FailedPrecondition, InvalidArgument, NotFound, StoreUnavailable
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.flows.verification.binding import BindingPoints
from idverify.flows.verification.challenge_memo import ChallengeMemo
from idverify.flows.verification.port import (
    AnswerCount,
    ChallengeAnswer,
    VerificationStore,
    WriteOutcome,
    Written,
)
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.flows.verification.views import VerificationReader, VerificationView, check_verification_id
from idverify.observability import telemetry
from idverify.privacy.sealing import SealError, associated_data, sealed_from_text
from idverify.verifiers.base import JudgedChallengeVerifier, Outcome


@dataclass(frozen=True, slots=True)
class AnswerFlow:
    """Judges answers to verifications' challenges."""

    deps: FlowDeps
    store: VerificationStore
    reader: VerificationReader
    binding: BindingPoints
    # This worker's code challenges, whose answers need not read them (None: every answer reads).
    memo: ChallengeMemo | None = None

    async def submit(
        self, tenant: str, verification_id: str, code: str, info: RequestInfo
    ) -> VerificationView:
        """Judges one answer to the verification's challenge.

        A vendor-run challenge (face liveness) takes no code: an empty one asks the vendor for
        its verdict, which the store then records like an answer.

        Raises:
            InvalidArgument: on a malformed id or code.
            NotFound: when the verification does not exist (or has expired away).
            FailedPrecondition: when the verification is not waiting for a code.
            StoreUnavailable: when Redis, or the vendor judging the challenge, is unreachable.
        """
        d = self.deps
        verification_id = check_verification_id(verification_id)
        bad_code = InvalidArgument("code: 1-16 digits", reason="BAD_CODE", field="code")
        if code and (len(code) > 16 or not code.strip().isdigit()):  # noqa: PLR2004
            raise bad_code
        remembered = self._remembered(tenant, verification_id) if code else None
        if remembered is not None:
            written = await self._judge_code(tenant, verification_id, remembered, code, info, remembered=True)
            if written.outcome is not WriteOutcome.STALE:
                return self._answered(tenant, verification_id, written)
        record = await self.reader.record(tenant, verification_id)
        if record is not None:
            judged = d.judged_verifiers.get(record.step_verifier)
            if judged is not None:
                return await self._submit_judged(tenant, verification_id, record, judged, info)
        if not code:
            raise bad_code
        if record is None:
            raise NotFound("no such verification", field="verification_id")
        if record.status is not Status.CHALLENGE_SENT:
            raise FailedPrecondition(
                f"verification is {record.status.value}, not awaiting a code",
                reason="NOT_AWAITING_CHALLENGE",
                field="verification_id",
            )
        written = await self._judge_code(tenant, verification_id, record, code, info, remembered=False)
        return self._answered(tenant, verification_id, written)

    def _remembered(self, tenant: str, verification_id: str) -> VerificationRecord | None:
        """The record this worker remembers, where an answer may be judged from it without a read.

        Not when its identity must be pointed on first: that move reads and writes on the
        record's word, which only a read may give.
        """
        if self.memo is None:
            return None
        record = self.memo.recall(tenant, verification_id)
        if record is None or record.step_verifier not in self.deps.challenge_verifiers:
            return None
        return record if self.binding.in_place(record) else None

    async def _judge_code(
        self,
        tenant: str,
        verification_id: str,
        record: VerificationRecord,
        code: str,
        info: RequestInfo,
        *,
        remembered: bool,
    ) -> Written:
        """Counts and judges a code against ``record``, read just now or ``remembered``.

        A remembered record goes to the store as ``expect``: STALE when Redis holds another.
        """
        d = self.deps
        verifier = d.challenge_verifiers[record.step_verifier]  # recorded only for challenge steps
        digest = verifier.digest_answer(tenant, verification_id, bytes.fromhex(record.salt), code.strip())
        # Counted for its phone across tenants before the tenant's step judges it; the same
        # digest decides there, so a code is wrong here exactly when it is wrong there.
        phone_ps = self._phone_pseudonym(tenant, verification_id, record)
        if phone_ps is None:
            if remembered:
                # Perhaps resealed under a key this worker no longer has: the record as it is decides.
                return Written(WriteOutcome.STALE)
            # Uncounted wrong codes would slip past the phone's limit: judge nothing instead.
            raise StoreUnavailable("the verification's phone counter cannot be opened", reason="NOT_COUNTED")
        wrong = not hmac.compare_digest(record.digest, digest.hex())
        count = AnswerCount(
            phone_pseudonym=phone_ps,
            wrong=wrong,
            lock_pseudonym=record.otp_ps,
            account_pseudonym=record.acct,
            request={
                **info.audit_fields(),
                "verification_id": verification_id,
                "account": record.acct_audit,
            },
        )
        return await self.store.submit(
            ChallengeAnswer(
                tenant=tenant,
                verification_id=verification_id,
                digest=digest.hex(),
                binding_limit=d.settings.verification.binding_limit,
                failure_window_ms=d.settings.verification.otp_failure_window_seconds * 1000,
                request_json=json.dumps(info.audit_fields()),
                count=count,
                expect=record if remembered else None,
            ),
            self.binding.point(tenant, verification_id, record),
        )

    def _answered(self, tenant: str, verification_id: str, written: Written) -> VerificationView:
        """What a judged code answers the caller; the record it left is remembered while it waits."""
        if self.memo is not None:
            if written.record is not None:
                self.memo.remember(tenant, verification_id, written.record)
            else:
                self.memo.forget(tenant, verification_id)
        if written.outcome is WriteOutcome.STATE:
            # Another answer changed the state between our read and the write: same answer as above.
            raise FailedPrecondition(
                "verification is no longer awaiting a code",
                reason="NOT_AWAITING_CHALLENGE",
                field="verification_id",
            )
        return self.reader.written_view(tenant, verification_id, written)

    async def finish_by_callback(
        self, tenant: str, verification_id: str, vendor_token: str, info: RequestInfo
    ) -> str:
        """Finishes a vendor-run challenge the vendor says is done, as an empty SubmitChallenge does.

        The vendor's callback only says when to look: the verdict is fetched from the vendor by
        the token recorded at the start, and only when the callback names that same token.

        Returns:
            ``finished`` (the verdict is recorded), ``pending`` (the vendor says the user is not
            done), ``final`` (nothing waits for a verdict: already finished, a replay),
            ``unknown`` (no such verification) or ``mismatch`` (another flow's token, or a
            verification without a vendor-run challenge).

        Raises:
            InvalidArgument: on a malformed verification id.
            StoreUnavailable: when Redis, or the vendor asked for the verdict, is unreachable;
                the verification stays as it was and SubmitChallenge still finishes it.
        """
        verification_id = check_verification_id(verification_id)
        record = await self.reader.record(tenant, verification_id)
        if record is None:
            return "unknown"
        judged = self.deps.judged_verifiers.get(record.step_verifier)
        if record.status is not Status.CHALLENGE_SENT:
            return "final"
        if judged is None:
            return "mismatch"
        _, token = self.reader.vendor_challenge(tenant, verification_id, record)
        if not token or not hmac.compare_digest(token.encode(), vendor_token.encode("utf-8", "replace")):
            return "mismatch"
        try:
            view = await self._submit_judged(tenant, verification_id, record, judged, info)
        except FailedPrecondition:
            # Another callback or SubmitChallenge recorded the verdict in between: once is enough.
            return "final"
        return "pending" if view.status == "CHALLENGE_SENT" else "finished"

    async def _submit_judged(
        self,
        tenant: str,
        verification_id: str,
        record: VerificationRecord,
        verifier: JudgedChallengeVerifier,
        info: RequestInfo,
    ) -> VerificationView:
        """Asks the vendor for the verdict of its challenge and records it like an answer."""
        d = self.deps
        if record.status is not Status.CHALLENGE_SENT:
            raise FailedPrecondition(
                f"verification is {record.status.value}, not awaiting a challenge",
                reason="NOT_AWAITING_CHALLENGE",
                field="verification_id",
            )
        _, token = self.reader.vendor_challenge(tenant, verification_id, record)
        step_name = record.step_verifier
        with telemetry.span(f"verifier.{step_name}.judge", verifier=step_name) as current:
            result = await verifier.judge(tenant, verification_id, token)
            current.set_attributes(
                telemetry.safe_attributes(
                    {"idverify.outcome": result.outcome.value, "idverify.vendor_code": result.vendor_code}
                )
            )
        if result.outcome is Outcome.CHALLENGE:
            # The user has not finished at the vendor yet: nothing changes.
            return await self.reader.get(tenant, verification_id, info)
        if result.outcome is Outcome.UNAVAILABLE:
            raise StoreUnavailable(
                "the vendor judging the challenge is unavailable; retry", reason=result.reason
            )
        verdict = "pass" if result.outcome is Outcome.PASS else "fail"
        written = await self.store.submit(
            ChallengeAnswer(
                tenant=tenant,
                verification_id=verification_id,
                digest="",
                binding_limit=d.settings.verification.binding_limit,
                failure_window_ms=d.settings.verification.otp_failure_window_seconds * 1000,
                request_json=json.dumps(info.audit_fields()),
                verdict=verdict,
                verdict_reason=result.reason or ("" if verdict == "pass" else "STEP_FAILED"),
                vendor_code=result.vendor_code,
            ),
            self.binding.point(tenant, verification_id, record),
        )
        if written.outcome is WriteOutcome.STATE:
            raise FailedPrecondition(
                "verification is no longer awaiting a challenge",
                reason="NOT_AWAITING_CHALLENGE",
                field="verification_id",
            )
        return self.reader.written_view(tenant, verification_id, written)

    def _phone_pseudonym(self, tenant: str, verification_id: str, record: VerificationRecord) -> str | None:
        """The phone's deployment-wide pseudonym the record holds sealed ("" if none; None: unopenable)."""
        sealed = record.phone_ps_sealed
        if not sealed:
            return ""
        try:
            return self.deps.sealer.unseal(
                sealed_from_text(sealed),
                associated=associated_data(tenant, "phone-pseudonym", verification_id),
            ).decode()
        except SealError:
            return None

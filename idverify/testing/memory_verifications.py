"""An in-memory ``flows.verification.port.VerificationStore``: verifications as plain values.

It keeps what the scripts keep, as the port sees it: request ids and their holders (a released
attempt's marker), verifications with their lifetime (their fields as the scripts keep them,
through ``store.verification_fields``), accounts' bindings, identities
(their bound accounts, established claim and whether key rotation moved them), and the counters
that refuse (claim refusals, the identity's window, wrong codes per account + phone and per
phone, code sends). The consent records are a ``MemoryConsentStore``'s. The clock is a number
the test moves. Not modelled: audit entries, events, the index of organization names, reads'
records. ``tests/unit/usecases/test_verification_contract.py`` holds it and
``store.verifications.RedisVerificationStore`` to the same assertions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from idverify.domain.errors import RateLimited, StoreUnavailable
from idverify.flows.consent import ConsentAdmission
from idverify.flows.verification.port import (
    GUARDIAN_FIELDS,
    Admission,
    AdmissionAnswer,
    ChallengeAnswer,
    CodeSend,
    GuardianGrant,
    Held,
    NewVerification,
    Point,
    Readmission,
    RequestRef,
    Reservation,
    SendCount,
    SendVerdict,
    StartRead,
    WindowCount,
    WriteOutcome,
    Written,
)
from idverify.flows.verification.record import VerificationRecord
from idverify.security.code_sends import SendLimits
from idverify.store.verification_fields import fields_of, fields_read, record_of
from idverify.testing.memory_consents import MemoryConsentStore
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryVerificationStore"]

_MOVE_ATTEMPTS = 3
_ASSURANCE_RANK = {"low": 1, "substantial": 2, "high": 3}
_AGE_SOURCE_RANK = {"none": 0, "declared": 1, "authority": 2, "document": 2}
_DAY_MS = 86_400_000
_AGE_FIELDS = ("age_band", "age_source", "birth_sealed")
_PRINCIPAL = "PRINCIPAL_SEND_BUDGET_EXCEEDED"
_TENANT = "TENANT_SEND_BUDGET_EXCEEDED"


@dataclass(slots=True)
class _Identity:
    accounts: set[str] = field(default_factory=set)
    name_binding: str = ""
    established: bool = False
    claim_tag: str = ""
    moved_to: str = ""


class MemoryVerificationStore:
    """Verifications of every tenant in memory; ``down`` makes every call fail as Redis down would."""

    def __init__(self, consents: MemoryConsentStore, limits: SendLimits) -> None:
        self.consents = consents
        self.limits = limits
        self.down = False
        # By (tenant, request pseudonym): the account's, or a legacy one a test wrote as older
        # releases did (this store, like Redis's, never writes one).
        self.requests: dict[tuple[str, str], str] = {}
        self.released: set[tuple[str, str]] = set()
        self.verifications: dict[tuple[str, str], dict[str, str]] = {}
        self.accounts: dict[tuple[str, str], dict[str, str]] = {}
        self.identities: dict[tuple[str, str], _Identity] = {}
        self.counters: dict[tuple[str, ...], int] = {}

    @property
    def now(self) -> int:
        """The clock, shared with the consent records."""
        return self.consents.now

    def _reach(self) -> None:
        refuse_if_down(self.down)

    def move_identity(self, tenant: str, ref: str, to: str) -> None:
        """Key rotation moved the identity ``ref`` to ``to``: writes that bind ``ref`` find it moved."""
        self._identity(tenant, ref).moved_to = to

    def _identity(self, tenant: str, ref: str) -> _Identity:
        return self.identities.setdefault((tenant, ref), _Identity())

    def _verification(self, tenant: str, verification_id: str) -> dict[str, str] | None:
        self._reach()
        found = self.verifications.get((tenant, verification_id))
        if found is not None and int(found.get("expires_ms", "0")) <= self.now:
            del self.verifications[(tenant, verification_id)]
            return None
        return found

    def _moved(self, tenant: str, vf: dict[str, str]) -> bool:
        identity = self.identities.get((tenant, vf.get("identity", "")))
        if identity is not None and identity.moved_to:
            return True
        return bool(vf.get("name_binding_seen")) and identity is None

    # -- a start's admission -----------------------------------------------------------------

    def _held(self, tenant: str, request: RequestRef) -> Held | None:
        holder = self.requests.get((tenant, request.pseudonym))
        if holder is not None:
            return Held(holder)
        legacy = self.requests.get((tenant, request.legacy_pseudonym))
        return Held(legacy, legacy=True) if legacy is not None else None

    async def read_start(self, tenant: str, request: RequestRef, name_tag: str) -> StartRead:
        """The request id's holder (the account's key, else the legacy one) and the consent record.

        The claims are checked with the reservation: nothing more is read.
        """
        del name_tag
        self._reach()
        return StartRead(
            self._held(tenant, request), await self.consents.read(tenant, request.account_pseudonym)
        )

    async def admit(self, admission: Admission) -> AdmissionAnswer:
        """Reserves, checks the claims, admits the consents and counts the window, in that order."""
        self._reach()
        tenant, request = admission.tenant, (admission.tenant, admission.request.pseudonym)
        if (tenant, admission.verification_id) in self.released:
            return AdmissionAnswer(Reservation.RELEASED)
        holder = self.requests.get(request)
        if holder is not None:
            return AdmissionAnswer(Reservation.HELD, holder=holder)
        self.requests[request] = admission.verification_id
        claims = admission.claims
        if 0 < claims.limit <= self.counters.get((tenant, "claims", claims.name_tag), 0):
            return AdmissionAnswer(
                Reservation.RESERVED,
                claims_refusal=RateLimited(
                    "limit for claim_refusals reached",
                    retry_after=_DAY_MS / 1000,
                    reason="CLAIM_REFUSALS_LIMIT_REACHED",
                ),
            )
        readmitted = await self.readmit(tenant, admission.consent, admission.window)
        return AdmissionAnswer(
            Reservation.RESERVED,
            consent=readmitted.consent,
            window_counted=readmitted.window_counted,
            window_refusal=readmitted.window_refusal,
        )

    async def readmit(
        self, tenant: str, consent: ConsentAdmission, window: WindowCount | None
    ) -> Readmission:
        """Admits the consents, then counts the window if they were admitted."""
        reply = await self.consents.admit(tenant, consent)
        if reply.outcome.value != "admitted" or window is None:
            return Readmission(reply)
        return Readmission(reply, window_counted=True, window_refusal=self._count(tenant, window))

    def _count(self, tenant: str, window: WindowCount) -> RateLimited | None:
        key = (tenant, "window", window.identity_pseudonym)
        self.counters[key] = count = self.counters.get(key, 0) + 1
        if count <= window.limit:
            return None
        return RateLimited(
            "rate limit for identity reached",
            retry_after=window.window_seconds,
            reason="IDENTITY_RATE_LIMITED",
        )

    async def count_window(self, tenant: str, window: WindowCount) -> None:
        """Counts the window alone."""
        self._reach()
        refused = self._count(tenant, window)
        if refused is not None:
            raise refused

    async def release(
        self, tenant: str, request: RequestRef, verification_id: str, reservation_ms: int
    ) -> None:
        """Frees the request id unless the verification was stored; marks the attempt released."""
        del reservation_ms
        if self._verification(tenant, verification_id) is not None:
            return
        holder = self.requests.get((tenant, request.pseudonym))
        if holder is not None and holder != verification_id:
            return
        self.requests.pop((tenant, request.pseudonym), None)
        self.released.add((tenant, verification_id))

    async def holder(self, tenant: str, request: RequestRef) -> Held | None:
        """The request id's holder: the account's key, else the legacy one."""
        self._reach()
        return self._held(tenant, request)

    async def confirm(self, tenant: str, request: RequestRef) -> None:
        """Nothing waits for replicas here."""
        del tenant, request
        self._reach()

    # -- a start's steps and commit ----------------------------------------------------------

    def _spend(self, windows: Sequence[tuple[tuple[str, ...], int, str]]) -> None:
        """Counts a send in every window, after checking them all (a refused send spends none)."""
        for key, limit, reason in windows:
            if 0 < limit <= self.counters.get(key, 0):
                raise RateLimited(f"limit {key[1]} reached", retry_after=60, reason=reason)
        for key, limit, _ in windows:
            if limit > 0:
                self.counters[key] = self.counters.get(key, 0) + 1

    async def count_send(self, send: CodeSend) -> SendCount:
        """The account + phone's wrong codes, the send windows, then the phone's lock."""
        self._reach()
        tenant, limits = send.tenant, self.limits
        failures = self.counters.get((tenant, "otp", send.account_phone), 0)
        if failures >= send.max_attempts:
            return SendCount(SendVerdict.OTP_LOCKED, failures)
        tenant_windows = (
            ((tenant, "phone", send.tenant_phone), limits.per_phone_per_hour, "PHONE_RATE_LIMITED"),
            ((tenant, "principal_minute", send.principal), limits.per_principal_per_minute, _PRINCIPAL),
            ((tenant, "principal_day", send.principal), limits.per_principal_per_day, _PRINCIPAL),
            ((tenant, "tenant_minute"), limits.per_tenant_per_minute, _TENANT),
            ((tenant, "tenant_day"), limits.per_tenant_per_day, _TENANT),
        )
        self._spend(tenant_windows)
        if 0 < limits.phone_failure_limit <= self.counters.get(("guesses", send.phone), 0):
            return SendCount(SendVerdict.PHONE_LOCKED, 0)
        # The phone's windows shared by every tenant answer as the tenant's own would.
        self._spend(
            (
                (("phone_hour", send.phone), limits.per_phone_all_tenants_per_hour, "PHONE_RATE_LIMITED"),
                (("phone_day", send.phone), limits.per_phone_all_tenants_per_day, "PHONE_RATE_LIMITED"),
            )
        )
        return SendCount(SendVerdict.OK, failures)

    async def commit(self, start: NewVerification, point: Point) -> Written:
        """Stores the verification as ``start.lua`` does, its fields as Redis keeps them."""
        tenant, verification_id, record = start.tenant, start.verification_id, start.record
        for attempt in range(_MOVE_ATTEMPTS):
            if attempt:
                record = await point(True)  # noqa: FBT003 - the port's callback
            self._reach()
            if (tenant, verification_id) in self.released:
                return Written(WriteOutcome.RELEASED)
            existing = self.requests.get((tenant, start.request_pseudonym))
            if existing is not None and existing != verification_id:
                return Written(WriteOutcome.EXISTS, detail=existing)
            if self._verification(tenant, verification_id) is not None:
                return Written(WriteOutcome.EXISTS, detail=verification_id)
            fields = fields_of(record)
            if start.mode == "bind" and self._moved(tenant, fields):
                continue
            vf = {**fields, "id": verification_id, "created_ms": str(self.now)}
            vf["expires_ms"] = str(self.now + start.ttl_ms)
            if start.mode == "challenge":
                vf["challenge_expires_ms"] = str(self.now + int(vf["challenge_ttl_ms"]))
            self.verifications[(tenant, verification_id)] = vf
            if start.mode == "bind":
                self._finish(vf, *self._bind(tenant, vf, start.account_pseudonym, start.binding_limit))
            elif start.mode == "rejected":
                self._finish(vf, "REJECTED", vf.get("reason", ""))
            self.requests[(tenant, start.request_pseudonym)] = verification_id
            return Written(WriteOutcome.DONE, record_of(vf))
        raise StoreUnavailable("the identity kept moving; retry", reason="CONTENDED")

    # -- a stored verification ---------------------------------------------------------------

    async def record(self, tenant: str, verification_id: str) -> VerificationRecord | None:
        """The verification's record."""
        vf = self._verification(tenant, verification_id)
        return record_of(vf) if vf is not None else None

    async def read(
        self, tenant: str, verification_id: str, request_json: str, read_spec: Sequence[str] | None
    ) -> Written:
        """The verification, a challenge past its time expired first."""
        del request_json, read_spec
        vf = self._verification(tenant, verification_id)
        if vf is None:
            return Written(WriteOutcome.NOT_FOUND)
        if vf.get("status") == "CHALLENGE_SENT" and self.now > int(vf["challenge_expires_ms"]):
            self._finish(vf, "EXPIRED", "OTP_EXPIRED")
        return Written(WriteOutcome.DONE, record_of(vf))

    async def submit(self, answer: ChallengeAnswer, point: Point) -> Written:
        """Checks a remembered record, counts the answer for its phone, judges it as ``submit.lua`` does."""
        if answer.expect is not None:
            vf = self._verification(answer.tenant, answer.verification_id) or {}
            if any(vf.get(name, "") != value for name, value in fields_read(answer.expect).items()):
                return Written(WriteOutcome.STALE)
        count = answer.count
        if count is not None and count.phone_pseudonym and self.limits.phone_failure_limit > 0:
            self._reach()
            key = ("guesses", count.phone_pseudonym)
            if self.counters.get(key, 0) >= self.limits.phone_failure_limit:
                raise RateLimited("limit phone_locked reached", retry_after=60, reason="PHONE_LOCKED")
            if count.wrong:
                self.counters[key] = self.counters.get(key, 0) + 1
        for attempt in range(_MOVE_ATTEMPTS):
            record = await point(attempt > 0)
            written = await self._judge(answer, record)
            if written is not None:
                return written
        raise StoreUnavailable("the identity kept moving; retry", reason="CONTENDED")

    async def _judge(self, answer: ChallengeAnswer, record: VerificationRecord) -> Written | None:
        """``submit.lua`` on the record; None: the identity moved."""
        tenant = answer.tenant
        vf = self._verification(tenant, answer.verification_id)
        if vf is None:
            return Written(WriteOutcome.NOT_FOUND)
        if vf.get("status") != "CHALLENGE_SENT":
            return Written(WriteOutcome.STATE, record_of(vf))
        if self._moved(tenant, vf):
            return None
        if answer.verdict and vf.get("digest"):
            return Written(WriteOutcome.STATE, record_of(vf))
        if self.now > int(vf["challenge_expires_ms"]):
            self._finish(vf, "EXPIRED", "OTP_EXPIRED")
        elif answer.verdict == "fail":
            vf["attempts_left"] = "0"
            self._finish(vf, "REJECTED", answer.verdict_reason)
        else:
            await self._judge_code(answer, record, vf)
        return Written(WriteOutcome.DONE, record_of(vf))

    async def _judge_code(
        self, answer: ChallengeAnswer, record: VerificationRecord, vf: dict[str, str]
    ) -> None:
        tenant = answer.tenant
        most, key = int(vf["max_attempts"]), (tenant, "otp", record.otp_ps)
        fails = self.counters.get(key, 0)
        if not answer.verdict and fails >= most:
            vf["attempts_left"] = "0"
            self._finish(vf, "REJECTED", "OTP_ATTEMPTS_EXHAUSTED")
            return
        if not answer.verdict and vf.get("digest", "") != answer.digest:
            self.counters[key] = fails = fails + 1
            vf.update(attempts_left=str(max(most - fails, 0)), reason="OTP_MISMATCH")
            if most - fails <= 0:
                self._finish(vf, "REJECTED", "OTP_ATTEMPTS_EXHAUSTED")
            return
        vf.pop("digest", None)
        if vf.get("minor") == "1":
            vf.update(
                status="NEEDS_GUARDIAN_CONSENT",
                reason="GUARDIAN_CONSENT_REQUIRED",
                next_step="guardian_consent",
            )
            return
        self._finish(vf, *self._bind(tenant, vf, vf["acct"], answer.binding_limit))
        if vf["status"] == "VERIFIED":
            await self.consents.keep(tenant, vf["acct"])  # in the same step, as submit.lua does

    async def account_fields(
        self, tenant: str, account_pseudonym: str, names: Sequence[str]
    ) -> dict[str, str]:
        """The account's fields of ``names`` that are set."""
        self._reach()
        account = self.accounts.get((tenant, account_pseudonym), {})
        return {name: account[name] for name in names if account.get(name)}

    async def grant_guardian(self, grant: GuardianGrant, point: Point) -> Written:
        """Completes the minor's verification as ``guardian.lua`` does."""
        for attempt in range(_MOVE_ATTEMPTS):
            await point(attempt > 0)
            written = self._guardian(grant)
            if written is not None:
                return written
        raise StoreUnavailable("the identity kept moving; retry", reason="CONTENDED")

    def _guardian(self, grant: GuardianGrant) -> Written | None:
        """``guardian.lua`` on the record; None: the identity moved."""
        tenant = grant.tenant
        vf = self._verification(tenant, grant.verification_id)
        if vf is None:
            return Written(WriteOutcome.NOT_FOUND)
        if vf.get("status") != "NEEDS_GUARDIAN_CONSENT":
            return Written(WriteOutcome.STATE, record_of(vf))
        if self._moved(tenant, vf):
            return None
        guardian = self.accounts.get((tenant, grant.guardian_pseudonym), {})
        refusal = grant.refusal
        if not guardian.get("identity"):
            refusal = "GUARDIAN_NOT_VERIFIED"
        elif any(guardian.get(name, "") != grant.guardian_fields.get(name, "") for name in GUARDIAN_FIELDS):
            return Written(WriteOutcome.GUARDIAN_CHANGED)
        elif not refusal and guardian["identity"] == vf.get("identity"):
            refusal = "GUARDIAN_IS_SUBJECT"
        if refusal:
            return Written(WriteOutcome.GUARDIAN_REFUSED, detail=refusal)
        self._finish(vf, *self._bind(tenant, vf, grant.account_pseudonym, grant.binding_limit))
        return Written(WriteOutcome.DONE, record_of(vf))

    # -- binding -----------------------------------------------------------------------------

    @staticmethod
    def _finish(vf: dict[str, str], status: str, reason: str) -> None:
        vf.update(status=status, reason=reason, next_step="")
        vf.pop("digest", None)

    def _bind(self, tenant: str, vf: dict[str, str], account_ps: str, limit: int) -> tuple[str, str]:
        """A binding as the scripts' steps make it (``place_member``, ``bind_account``), tagged ones."""
        account = self.accounts.setdefault((tenant, account_ps), {})
        current = account.get("identity")
        if current and current != vf["identity"]:
            return "REJECTED", "ACCOUNT_BOUND_TO_OTHER_IDENTITY"
        identity, tag = self._identity(tenant, vf["identity"]), vf.get("name_tag", "")

        def refuse(reason: str) -> tuple[str, str]:
            if tag:
                key = (tenant, "claims", tag)
                self.counters[key] = self.counters.get(key, 0) + 1
            return "REJECTED", reason

        if identity.established and identity.claim_tag != tag:
            return refuse("NAME_MISMATCH")
        if vf.get("establishes") == "1" and not identity.established:
            self._establish(tenant, identity, vf)
            current = account.get("identity")
        if not (current and account.get("name_tag", "") == tag):
            taken = sum(
                1
                for member in identity.accounts
                if member != account_ps
                and (identity.established or self.accounts[(tenant, member)].get("name_tag", "") == tag)
            )
            if taken >= limit:
                return refuse("BINDING_LIMIT_REACHED")
            identity.accounts.add(account_ps)
            identity.name_binding = identity.name_binding or vf["name_binding"]
            account.update(
                identity=vf["identity"],
                verified_ms=str(self.now),
                method=vf["method"],
                assurance=vf["assurance"],
                kind=vf["kind"],
                audit=vf.get("acct_audit", ""),
                name_tag=tag,
            )
            account.pop("superseded_ms", None)
            self._set_age(account, vf, again=False)
            return "VERIFIED", ""
        was = account.get("assurance", "")
        assurance = (
            was if _ASSURANCE_RANK.get(was, 0) > _ASSURANCE_RANK.get(vf["assurance"], 0) else vf["assurance"]
        )
        account.update(verified_ms=str(self.now), method=vf["method"], assurance=assurance, name_tag=tag)
        self._set_age(account, vf, again=True)
        return "VERIFIED", ""

    def _establish(self, tenant: str, identity: _Identity, vf: dict[str, str]) -> None:
        """The verification establishes its name's claim: accounts bound under other names lose theirs."""
        tag = vf.get("name_tag", "")
        for member in sorted(identity.accounts):
            other = self.accounts[(tenant, member)]
            if other.get("name_tag", "") != tag:
                identity.accounts.discard(member)
                for name in ("identity", "name_tag", "verified_ms", "method", "assurance", *_AGE_FIELDS):
                    other.pop(name, None)
                other["superseded_ms"] = str(self.now)
        identity.name_binding, identity.established, identity.claim_tag = vf["name_binding"], True, tag

    @staticmethod
    def _set_age(account: dict[str, str], vf: dict[str, str], *, again: bool) -> None:
        source = vf.get("age_source", "")
        if again and _AGE_SOURCE_RANK.get(account.get("age_source", "none"), 0) > _AGE_SOURCE_RANK.get(
            source, 0
        ):
            return
        account["age_source"] = source
        for name in ("age_band", "birth_sealed"):
            if vf.get(name):
                account[name] = vf[name]
            else:
                account.pop(name, None)

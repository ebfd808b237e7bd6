"""Consent records per account and purpose: grants, withdrawals, and admitting a verification.

Records live in the tenant's slot under the account's pseudonym; every change is one script with
its audit entry. How consents given with a StartVerification relate to stored grants: each
purpose given with the request is recorded as a grant (with the text version the request names
for it, which every grant must) in the same step that admits the verification; a standing grant
covers a purpose the request does not repeat. After a refusal or withdrawal, biometric consent
may not be asked again for the cool-down period. The rules themselves live in
:mod:`idverify.domain.consent`; this module reads the state, applies them, and writes atomically,
deciding again when the record changed in between.

The flow reads and writes the records through :class:`ConsentStore`, the port declared here, in
typed values; ``store.consents.RedisConsentStore`` implements it (the record's fields, the three
scripts and their replies) and gives a verification's start the pieces that put the read and the
admission into its own pipeline and chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from idverify.config import ConsentSettings
from idverify.domain import consent as rules
from idverify.domain.consent import ConsentState
from idverify.domain.errors import FailedPrecondition, StoreUnavailable
from idverify.domain.methods import MethodSpec
from idverify.domain.normalize import normalize_identifier
from idverify.events.accounts import request_naming_account
from idverify.flows.context import RequestInfo
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer

__all__ = [
    "AdmitOutcome",
    "AdmitReply",
    "ConsentAdmission",
    "ConsentFlow",
    "ConsentGrant",
    "ConsentRecord",
    "ConsentStore",
    "ConsentWithdrawal",
    "ConsentedStart",
]

_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """An account's consent states by purpose, the record's revision, and whether it is cancelled."""

    states: Mapping[str, ConsentState]
    revision: str
    cancelled: bool


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    """One purpose granted, with the version of the text shown."""

    account_pseudonym: str
    audit_pseudonym: str
    purpose: str
    text_version: str
    request_json: str  # the request's audit fields, the account named in them sealed, as JSON
    audit: bool  # False when the step that made the grant audited it already (a guardian's)


@dataclass(frozen=True, slots=True)
class ConsentWithdrawal:
    """One purpose withdrawn (or refused, when it was never granted)."""

    account_pseudonym: str
    audit_pseudonym: str
    purpose: str
    request_json: str


@dataclass(frozen=True, slots=True)
class ConsentAdmission:
    """A verification admitted under the record as judged: the grants it adds and where it is listed."""

    account_pseudonym: str
    audit_pseudonym: str
    verification_id: str
    lifetime_ms: int  # how long it is listed among the account's live verifications
    revision: str  # of the record judged: a record changed since is not admitted on
    grants: tuple[tuple[str, str], ...]  # (purpose, text version) given with the request, news only
    request_json: str
    method_id: str


class AdmitOutcome(Enum):
    """How an admission went."""

    ADMITTED = "admitted"
    CANCELLED = "cancelled"  # the account is cancelled
    CHANGED = "changed"  # the record changed since it was judged: judge it again


@dataclass(frozen=True, slots=True)
class AdmitReply:
    """An admission's outcome, and the record as it is now when it changed."""

    outcome: AdmitOutcome
    record: ConsentRecord | None = None


class ConsentedStart(Protocol):
    """What a verification's start tells its consents (``flows.verification.plan.StartPlan`` is one)."""

    @property
    def tenant(self) -> str:
        """The tenant it starts in."""
        ...

    @property
    def account_id(self) -> str:
        """The account it binds, as the caller named it."""
        ...

    @property
    def verification_id(self) -> str:
        """The verification it starts."""
        ...

    @property
    def method(self) -> MethodSpec:
        """The method it runs."""
        ...

    @property
    def purposes(self) -> frozenset[str]:
        """The purposes the method needs."""
        ...

    @property
    def given(self) -> Mapping[str, str]:
        """The purposes consented to with the request, each with its text version."""
        ...

    @property
    def info(self) -> RequestInfo:
        """Who asked, for the audit entries."""
        ...


class ConsentStore(Protocol):
    """Accounts' consent records; every method may raise StoreUnavailable."""

    async def now_ms(self) -> int:
        """The store's clock, in ms of the epoch."""
        ...

    async def read(self, tenant: str, account_ps: str) -> ConsentRecord:
        """The account's consent record, and whether the account is cancelled."""
        ...

    async def grant(self, tenant: str, grant: ConsentGrant) -> ConsentState | None:
        """Records the grant, lasting; the purpose's state, or None when the account is cancelled.

        Audited unless ``grant.audit`` is False.
        """
        ...

    async def withdraw(self, tenant: str, withdrawal: ConsentWithdrawal) -> ConsentState | None:
        """Records the withdrawal, lasting and audited; the purpose's state, or None: try again.

        Ends the account's pending verifications that rely on the purpose; None when those
        changed while they were read.
        """
        ...

    async def keep(self, tenant: str, account_ps: str) -> None:
        """Makes the account's record lasting (consents given with a start expire with it until then)."""
        ...

    async def admit(self, tenant: str, admission: ConsentAdmission) -> AdmitReply:
        """Records the admission's grants, audited, and lists its verification as live.

        Refused when the account is cancelled or the record's revision changed.
        """
        ...


class ConsentFlow:
    """Consent for every tenant."""

    def __init__(
        self,
        store: ConsentStore,
        settings: ConsentSettings,
        keyring: Keyring,
        sealer: Sealer,
        *,
        lifetime_ms: int,
    ) -> None:
        """Builds the flow.

        Args:
            store: the consent records.
            settings: the biometric cool-down.
            keyring: the accounts' pseudonyms.
            sealer: seals the account's id for a change's event.
            lifetime_ms: how long a verification stays live (its session plus the start's
                reservation): how long it is listed among the account's live verifications.
        """
        self._store = store
        self._settings = settings
        self._keyring = keyring
        self._sealer = sealer
        self._lifetime_ms = lifetime_ms

    @property
    def cooldown_ms(self) -> int:
        """The biometric cool-down in milliseconds."""
        return rules.cooldown_ms(self._settings.biometric_cooldown_days)

    def _request(self, info: RequestInfo, tenant: str, account_id: str) -> str:
        """The audit request of a consent change, with the account's id sealed for its event."""
        return request_naming_account(info.audit_fields(), self._keyring, self._sealer, tenant, account_id)

    def _pseudonyms(self, tenant: str, account_id: str) -> tuple[str, str, str]:
        account_id = normalize_identifier(account_id, field="account_id")
        keyring = self._keyring
        return (
            account_id,
            keyring.pseudonym(tenant, "account", account_id),
            keyring.pseudonym(tenant, "audit", account_id),
        )

    async def list(self, tenant: str, account_id: str) -> list[ConsentState]:
        """Every purpose with a record for the account (granted, withdrawn or refused).

        Raises:
            InvalidArgument: on a malformed account id.
        """
        _, account_ps, _ = self._pseudonyms(tenant, account_id)
        states = (await self._store.read(tenant, account_ps)).states
        return [states[p] for p in sorted(states)]

    async def biometric_cooldown_until(self, tenant: str, account_id: str) -> int:
        """Until when biometric methods are not offered to the account (epoch ms; 0: they are).

        Raises:
            InvalidArgument: on a malformed account id.
        """
        _, account_ps, _ = self._pseudonyms(tenant, account_id)
        states = (await self._store.read(tenant, account_ps)).states
        state = states.get(rules.BIOMETRIC, ConsentState(rules.BIOMETRIC))
        until = state.cooldown_until_ms(self.cooldown_ms)
        return until if until > await self._store.now_ms() else 0

    async def grant(
        self,
        tenant: str,
        account_id: str,
        purpose: str,
        text_version: str,
        info: RequestInfo,
        *,
        audit: bool = True,
    ) -> ConsentState:
        """Records one purpose as granted, with the version of the text shown.

        A grant is the user's own act, so a biometric grant also ends a running cool-down.

        Raises:
            InvalidArgument: on a malformed account id, purpose or text version.
            FailedPrecondition: ``ACCOUNT_CANCELLED``.
        """
        _, account_ps, audit_ps = self._pseudonyms(tenant, account_id)
        grant = ConsentGrant(
            account_pseudonym=account_ps,
            audit_pseudonym=audit_ps,
            purpose=rules.check_purpose(purpose),
            text_version=rules.check_text_version(text_version),
            request_json=self._request(info, tenant, account_id),
            audit=audit,
        )
        state = await self._store.grant(tenant, grant)
        if state is None:
            raise _cancelled()
        return state

    async def withdraw(self, tenant: str, account_id: str, purpose: str, info: RequestInfo) -> ConsentState:
        """Withdraws one purpose (or records its refusal when it was never granted), at once.

        The account's pending verifications that rely on the purpose end REJECTED with
        ``CONSENT_WITHDRAWN``. What a finished verification bound stays until the account is
        cancelled: the binding rests on the platform's real-name duty, and cancellation erases it.

        Raises:
            InvalidArgument: on a malformed account id or purpose.
            StoreUnavailable: Redis is down, or the account's verifications kept changing.
        """
        _, account_ps, audit_ps = self._pseudonyms(tenant, account_id)
        purpose = rules.check_purpose(purpose)
        for _ in range(_ATTEMPTS):
            withdrawal = ConsentWithdrawal(
                account_ps, audit_ps, purpose, self._request(info, tenant, account_id)
            )
            state = await self._store.withdraw(tenant, withdrawal)
            if state is not None:
                return state
        raise StoreUnavailable("the account's verifications kept changing; retry", reason="CONTENDED")

    async def keep(self, tenant: str, account_ps: str) -> None:
        """Makes the consents given with a verification lasting, once it bound the account.

        Until then they expire with the verification (``consent_start.lua``). A crash before this
        call leaves them to expire: the audit log still holds every grant.

        Raises:
            StoreUnavailable: Redis is down.
        """
        await self._store.keep(tenant, account_ps)

    async def admit_start(self, plan: ConsentedStart, record: ConsentRecord | None = None) -> None:
        """Lets a verification start under the account's consents, recording those given now.

        ``record`` is the record as the caller read it, judged first; the store refuses it if it
        changed since, and the record is read again.

        Raises:
            FailedPrecondition: ``ACCOUNT_CANCELLED`` or ``BIOMETRIC_COOLDOWN``.
            ConsentRequired: a needed purpose is not consented to.
            StoreUnavailable: Redis is down, or the consent record kept changing.
        """
        _, account_ps, _ = self._pseudonyms(plan.tenant, plan.account_id)
        for _ in range(_ATTEMPTS):
            admission = await self.judge_start(
                plan, record or await self._store.read(plan.tenant, account_ps)
            )
            record = None
            if self.admitted(await self._store.admit(plan.tenant, admission)):
                return
        raise StoreUnavailable("the consent record kept changing; retry", reason="CONTENDED")

    async def judge_start(self, plan: ConsentedStart, record: ConsentRecord) -> ConsentAdmission:
        """Judges the record as read; the admission to make if it did not change since.

        :meth:`admitted` reads the store's reply to it.

        Raises:
            FailedPrecondition: ``ACCOUNT_CANCELLED`` or ``BIOMETRIC_COOLDOWN``.
            ConsentRequired: a needed purpose is not consented to.
        """
        tenant, account_id, given = plan.tenant, plan.account_id, plan.given
        _, account_ps, audit_ps = self._pseudonyms(tenant, account_id)
        if record.cancelled:
            raise _cancelled()
        stored = record.states
        rules.check_start_consents(
            plan.purposes,
            given,
            stored,
            now_ms=await self._store.now_ms(),
            biometric_cooldown_ms=self.cooldown_ms,
        )
        grants = tuple(
            (purpose, version)
            for purpose, version in sorted(given.items())
            if purpose != rules.GUARDIAN and _is_news(stored.get(purpose), version)
        )
        return ConsentAdmission(
            account_pseudonym=account_ps,
            audit_pseudonym=audit_ps,
            verification_id=plan.verification_id,
            lifetime_ms=self._lifetime_ms,
            revision=record.revision,
            grants=grants,
            request_json=self._request(plan.info, tenant, account_id),
            method_id=plan.method.id,
        )

    @staticmethod
    def admitted(reply: AdmitReply) -> bool:
        """Whether the admission of :meth:`judge_start` was made (False: judge again).

        Raises:
            FailedPrecondition: ``ACCOUNT_CANCELLED``.
        """
        if reply.outcome is AdmitOutcome.CANCELLED:
            raise _cancelled()
        return reply.outcome is AdmitOutcome.ADMITTED


def _is_news(state: ConsentState | None, version: str) -> bool:
    """Whether a consent given with a request changes the record (a guardian's never does here)."""
    if state is None or not state.granted:
        return True
    return version != state.text_version


def _cancelled() -> FailedPrecondition:
    return FailedPrecondition(
        "the account is cancelled and awaits erasure", reason="ACCOUNT_CANCELLED", field="account_id"
    )

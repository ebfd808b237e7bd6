"""Consent records per account and purpose: grants, withdrawals, and admitting a verification.

Records live in the tenant's slot under the account's pseudonym; every change is one script with
its audit entry. How consents given with a StartVerification relate to stored grants: each
purpose given with the request is recorded as a grant (with the text version the request names
for it, which every grant must) in the same step that admits the verification; a standing grant
covers a purpose the request does not repeat. After a refusal or withdrawal, biometric consent
may not be asked again for the cool-down period. The rules themselves live in
:mod:`idverify.domain.consent`; this module reads the state, applies them, and writes atomically,
deciding again when the record changed in between.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from idverify.domain import consent as rules
from idverify.domain.consent import ConsentState
from idverify.domain.errors import FailedPrecondition, StoreUnavailable
from idverify.domain.normalize import normalize_identifier
from idverify.events.accounts import request_naming_account
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripts import ChainStep, decode_flat

if TYPE_CHECKING:
    # Only the type: the verification flow builds its consents on this module.
    from idverify.flows.verification.plan import StartPlan

_ATTEMPTS = 5

# An account's consent states, the record's revision, and whether the account is cancelled.
ConsentRead = tuple[dict[str, ConsentState], str, bool]


def consent_read(raw: Mapping[Any, Any], cancelled: object) -> ConsentRead:
    """The replies of :meth:`ConsentFlow.queue_read`'s two reads, as states and revision."""
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    return rules.states_from_fields(fields), fields.get("rev", ""), bool(cancelled)


class ConsentFlow:
    """Consent for every tenant."""

    def __init__(self, deps: FlowDeps, *, lifetime_ms: int) -> None:
        """Builds the flow.

        Args:
            deps: the shared services.
            lifetime_ms: how long a verification stays live (its session plus the start's
                reservation): how long it is listed among the account's live verifications.
        """
        self._d = deps
        self._lifetime_ms = lifetime_ms

    @property
    def cooldown_ms(self) -> int:
        """The biometric cool-down in milliseconds."""
        return rules.cooldown_ms(self._d.settings.consent.biometric_cooldown_days)

    def _request(self, info: RequestInfo, tenant: str, account_id: str) -> str:
        """The audit request of a consent change, with the account's id sealed for its event."""
        d = self._d
        return request_naming_account(info.audit_fields(), d.keyring, d.sealer, tenant, account_id)

    def _pseudonyms(self, tenant: str, account_id: str) -> tuple[str, str, str]:
        account_id = normalize_identifier(account_id, field="account_id")
        keyring = self._d.keyring
        return (
            account_id,
            keyring.pseudonym(tenant, "account", account_id),
            keyring.pseudonym(tenant, "audit", account_id),
        )

    @staticmethod
    def queue_read(pipe: Any, tenant: str, account_ps: str) -> None:
        """Queues the reads of an account's consents on ``pipe`` (:func:`consent_read` reads them).

        A caller with other reads in the account's tenant makes them all one round trip.
        """
        keys = TenantKeys(tenant)
        pipe.hgetall(keys.consent(account_ps))
        pipe.hexists(keys.account(account_ps), "cancelled_ms")

    async def _read(self, tenant: str, account_ps: str) -> ConsentRead:
        """The account's consent states, the record's revision, and whether it is cancelled."""
        async with translate_errors(), self._d.redis.pipeline(transaction=False) as pipe:
            self.queue_read(pipe, tenant, account_ps)
            raw, cancelled = await pipe.execute()
        return consent_read(raw, cancelled)

    async def list(self, tenant: str, account_id: str) -> list[ConsentState]:
        """Every purpose with a record for the account (granted, withdrawn or refused).

        Raises:
            InvalidArgument: on a malformed account id.
        """
        _, account_ps, _ = self._pseudonyms(tenant, account_id)
        states, _, _ = await self._read(tenant, account_ps)
        return [states[p] for p in sorted(states)]

    async def biometric_cooldown_until(self, tenant: str, account_id: str) -> int:
        """Until when biometric methods are not offered to the account (epoch ms; 0: they are).

        Raises:
            InvalidArgument: on a malformed account id.
        """
        _, account_ps, _ = self._pseudonyms(tenant, account_id)
        states, _, _ = await self._read(tenant, account_ps)
        state = states.get(rules.BIOMETRIC, ConsentState(rules.BIOMETRIC))
        until = state.cooldown_until_ms(self.cooldown_ms)
        return until if until > await self._d.scripts.clock.now_ms() else 0

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
        purpose = rules.check_purpose(purpose)
        text_version = rules.check_text_version(text_version)
        keys = TenantKeys(tenant)
        result = await self._d.scripts.run(
            "consent_grant",
            [keys.account(account_ps), keys.consent(account_ps), keys.audit_log()],
            [purpose, text_version, self._request(info, tenant, account_id), audit_ps, "1" if audit else "0"],
        )
        if result[0] == b"CANCELLED":
            raise _cancelled()
        return rules.states_from_fields(decode_flat(result[1]))[purpose]

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
        keys = TenantKeys(tenant)
        for _ in range(_ATTEMPTS):
            async with translate_errors():
                live = _texts(
                    await self._d.redis.zrangebyscore(
                        keys.account_verifications(account_ps), await self._d.scripts.clock.now_ms(), "+inf"
                    )
                )
            result = await self._d.scripts.run(
                "consent_withdraw",
                [
                    keys.consent(account_ps),
                    keys.account_verifications(account_ps),
                    keys.audit_log(),
                    *(keys.verification(v) for v in live),
                ],
                [purpose, self._request(info, tenant, account_id), audit_ps, json.dumps(live)],
            )
            if result[0] == b"OK":
                return rules.states_from_fields(decode_flat(result[1]))[purpose]
        raise StoreUnavailable("the account's verifications kept changing; retry", reason="CONTENDED")

    async def keep(self, tenant: str, account_ps: str) -> None:
        """Makes the consents given with a verification lasting, once it bound the account.

        Until then they expire with the verification (``consent_start.lua``). A crash before this
        call leaves them to expire: the audit log still holds every grant.

        Raises:
            StoreUnavailable: Redis is down.
        """
        async with translate_errors():
            await self._d.redis.persist(TenantKeys(tenant).consent(account_ps))

    async def admit_start(self, plan: StartPlan, read: ConsentRead | None = None) -> None:
        """Lets a verification start under the account's consents, recording those given now.

        ``read`` is the record as the caller read it (:meth:`queue_read`), judged first; the
        script refuses it if it changed since, and the record is read again.

        Raises:
            FailedPrecondition: ``ACCOUNT_CANCELLED`` or ``BIOMETRIC_COOLDOWN``.
            ConsentRequired: a needed purpose is not consented to.
            StoreUnavailable: Redis is down, or the consent record kept changing.
        """
        _, account_ps, _ = self._pseudonyms(plan.tenant, plan.account_id)
        for _ in range(_ATTEMPTS):
            step = await self.start_step(plan, read or await self._read(plan.tenant, account_ps))
            read = None
            result = await self._d.scripts.run(step.name, step.keys, step.args)
            if self.admitted(result):
                return
        raise StoreUnavailable("the consent record kept changing; retry", reason="CONTENDED")

    async def start_step(self, plan: StartPlan, read: ConsentRead) -> ChainStep:
        """Judges the record as read; the step that admits the verification if it did not change.

        A chain may run the step and go on only once it answered ``OK``; :meth:`admitted`
        reads its reply.

        Raises:
            FailedPrecondition: ``ACCOUNT_CANCELLED`` or ``BIOMETRIC_COOLDOWN``.
            ConsentRequired: a needed purpose is not consented to.
        """
        tenant, account_id, given = plan.tenant, plan.account_id, plan.given
        _, account_ps, audit_ps = self._pseudonyms(tenant, account_id)
        keys = TenantKeys(tenant)
        stored, revision, cancelled = read
        if cancelled:
            raise _cancelled()
        rules.check_start_consents(
            plan.purposes,
            given,
            stored,
            now_ms=await self._d.scripts.clock.now_ms(),
            biometric_cooldown_ms=self.cooldown_ms,
        )
        grants = [
            {"purpose": purpose, "version": version}
            for purpose, version in sorted(given.items())
            if purpose != rules.GUARDIAN and _is_news(stored.get(purpose), version)
        ]
        return ChainStep(
            "consent_start",
            [
                keys.account(account_ps),
                keys.consent(account_ps),
                keys.account_verifications(account_ps),
                keys.audit_log(),
            ],
            [
                plan.verification_id,
                self._lifetime_ms,
                revision,
                json.dumps(grants),
                self._request(plan.info, tenant, account_id),
                audit_ps,
                plan.method.id,
            ],
            proceed_on=("OK",),
        )

    @staticmethod
    def admitted(result: Any) -> bool:
        """Whether the step of :meth:`start_step` admitted the verification (False: judge again).

        Raises:
            FailedPrecondition: ``ACCOUNT_CANCELLED``.
        """
        if result[0] == b"CANCELLED":
            raise _cancelled()
        return bool(result[0] == b"OK")


def _is_news(state: ConsentState | None, version: str) -> bool:
    """Whether a consent given with a request changes the record (a guardian's never does here)."""
    if state is None or not state.granted:
        return True
    return version != state.text_version


def _cancelled() -> FailedPrecondition:
    return FailedPrecondition(
        "the account is cancelled and awaits erasure", reason="ACCOUNT_CANCELLED", field="account_id"
    )


__all__ = ["ConsentFlow", "ConsentRead", "consent_read"]


def _texts(values: Any) -> list[str]:
    """A Redis array reply as text."""
    return [as_text(value) for value in values]

"""CheckIdentity: does a claimed name + document match the identity bound to an account.

The answer has one shape and the same cost (one argon2id) whether or not the account exists or
is bound, so it cannot be used to enumerate accounts or identities. Wrong claims are counted per
account and per calling principal over a day (``store/lua/identity_check.lua``): at a limit the
check is refused whatever the claim, so trying document numbers one after another recovers none.
Every check is audited (``identity.checked``) with its outcome and principal, before its answer
is given: an answer that could not be counted is not given.

The flow reads and counts through :class:`IdentityCheckStore`, the port declared here, in typed
records; ``store.identity_checks.RedisIdentityChecks`` implements it over Redis (the key names,
the two reads, the script and its reply).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from enum import StrEnum
from typing import Protocol

from idverify.config import RateLimitSettings
from idverify.domain.age import today_in_shanghai
from idverify.domain.documents import Document, validate_document
from idverify.domain.errors import InvalidArgument, RateLimited
from idverify.domain.normalize import normalize_identifier, normalize_name
from idverify.domain.subjects import Subject
from idverify.flows.context import RequestInfo
from idverify.observability import telemetry
from idverify.privacy.identity_index import IdentityIndexer, IndexValue, parse_index_params
from idverify.privacy.keyring import Keyring
from idverify.privacy.name_binding import claim_tag, names_match
from idverify.privacy.sealing import Sealer, SealError, associated_data, sealed_from_text

__all__ = [
    "CHECK_WINDOW_MS",
    "BoundIdentity",
    "CheckLimited",
    "CheckStep",
    "CheckTally",
    "IdentityCheckFlow",
    "IdentityCheckStore",
]

# A window of mismatches lasts a day from its first one.
CHECK_WINDOW_MS = 86_400_000


class CheckStep(StrEnum):
    """What a tally records: a check about to be judged, or its answer."""

    ADMIT = "admit"  # before the hash: refused at a limit, counts nothing
    MATCH = "match"
    MISMATCH = "mismatch"  # counts against the account and the caller


@dataclass(frozen=True, slots=True)
class CheckTally:
    """One check's counters and audit entry, named by pseudonyms only."""

    tenant: str
    account: str  # the account's pseudonym: its mismatches
    principal: str  # the caller's check-principal pseudonym: its mismatches over all accounts
    per_account: int  # mismatches a window allows per account
    per_principal: int  # and per caller
    window_ms: int  # a window starts with its first mismatch and lasts this long
    audit: Mapping[str, str]  # the entry's request fields and the account's audit pseudonym


@dataclass(frozen=True, slots=True)
class CheckLimited:
    """A check refused at a limit (audited as refused; nothing counted)."""

    reached: str  # the limit: CHECK_LIMIT_REACHED (the account's) or PRINCIPAL_CHECK_LIMIT_REACHED
    retry_after_ms: int  # until the later of the full windows ends


@dataclass(frozen=True, slots=True)
class BoundIdentity:
    """What a check compares a claim with: an account's binding and its identity record."""

    identity_ref: str  # the account's sealed identity index, in text
    name_tag: str | None  # the name the account bound under, when recorded
    name_binding: str | None  # the identity record's sealed name binding; None without a record
    index_params: str  # the identity's index parameters (its pepper version); "" when unknown


class IdentityCheckStore(Protocol):
    """What a check reads and counts; every method may raise StoreUnavailable."""

    async def bound_identity(self, tenant: str, account: str) -> BoundIdentity | None:
        """The identity bound to the account (by pseudonym), or None when it is not bound."""
        ...

    async def tally(self, tally: CheckTally, step: CheckStep) -> CheckLimited | None:
        """Judges the limits, then counts a mismatch and audits the answer; None when not refused.

        A refusal is audited (``refused`` with its reason) whatever the step; ``ADMIT`` audits
        nothing otherwise; ``MATCH`` and ``MISMATCH`` audit their outcome.
        """
        ...


@dataclass(eq=False, slots=True)
class IdentityCheckFlow:
    """Answers CheckIdentity for every tenant over its store.

    The keys and the indexer are the service's own.
    """

    store: IdentityCheckStore
    _: KW_ONLY
    keyring: Keyring
    sealer: Sealer
    indexer: IdentityIndexer
    limits: RateLimitSettings

    async def check_identity(self, tenant: str, account_id: str, subject: Subject, info: RequestInfo) -> bool:
        """Whether a claimed name + document match the identity bound to an account.

        Raises:
            InvalidArgument: on malformed input (nothing is counted).
            RateLimited: the account or the caller reached its mismatches of the day
                (``CHECK_LIMIT_REACHED`` / ``PRINCIPAL_CHECK_LIMIT_REACHED``), whatever the claim.
            StoreUnavailable: the check could not be counted and audited; no answer is given.
        """
        account_id = normalize_identifier(account_id, field="account_id")
        name = normalize_name(subject.name)
        if subject.document_type is None:
            raise InvalidArgument("document type is required", reason="EMPTY", field="subject.document_type")
        document = validate_document(
            subject.document_type, subject.document_number, subject.issuing_country, today=today_in_shanghai()
        )
        account_ps = self.keyring.pseudonym(tenant, "account", account_id)
        tally = CheckTally(
            tenant=tenant,
            account=account_ps,
            principal=self.keyring.pseudonym(tenant, "check-principal", info.principal),
            per_account=self.limits.check_identity_mismatches_per_account_per_day,
            per_principal=self.limits.check_identity_mismatches_per_principal_per_day,
            window_ms=CHECK_WINDOW_MS,
            audit={**info.audit_fields(), "account": self.keyring.pseudonym(tenant, "audit", account_id)},
        )
        # Refused before the hash: a refused check costs no argon2id.
        await self._count(tally, CheckStep.ADMIT)
        match = await self._judge(tenant, account_ps, name, document)
        await self._count(tally, CheckStep.MATCH if match else CheckStep.MISMATCH)
        return match

    async def _judge(self, tenant: str, account_ps: str, name: str, document: Document) -> bool:
        bound = await self.store.bound_identity(tenant, account_ps)
        # The record's own pepper: it may not have moved to the current one yet (that happens
        # when the identity is next verified), and the cost stays one argon2id either way.
        try:
            pepper_version = parse_index_params(bound.index_params if bound else "")[1]
        except ValueError:
            pepper_version = None
        if pepper_version not in self.keyring.pepper_versions:
            pepper_version = None
        index = await self._hash_identity(tenant, document, pepper_version=pepper_version)
        if bound is None:
            return False
        try:
            bound_digest = self.sealer.unseal(
                sealed_from_text(bound.identity_ref), associated=associated_data(tenant, "identity-index")
            )
        except SealError:
            return False
        if bound.name_binding is None or not hmac.compare_digest(bound_digest, index.digest):
            return False
        if bound.name_tag is not None:
            # The name the account bound under, which is the identity's established name once
            # there is one (README "Identity claims"); the identity's first name otherwise.
            presented = claim_tag(self.keyring, tenant, document.document_type.value, document.number, name)
            return hmac.compare_digest(bound.name_tag, presented)
        try:
            binding = self.sealer.unseal(
                sealed_from_text(bound.name_binding), associated=associated_data(tenant, "name-binding")
            )
        except SealError:
            return False
        return names_match(
            self.keyring, tenant, index.digest, name, binding, pepper_version=index.pepper_version
        )

    async def _count(self, tally: CheckTally, step: CheckStep) -> None:
        limited = await self.store.tally(tally, step)
        if limited is not None:
            telemetry.Instruments.add(telemetry.instruments.rate_limit_hits, limit=limited.reached.lower())
            raise RateLimited(
                "too many wrong identity claims today",
                retry_after=max(limited.retry_after_ms, 0) / 1000,
                reason=limited.reached,
            )

    async def _hash_identity(
        self, tenant: str, document: Document, *, pepper_version: str | None = None
    ) -> IndexValue:
        """The check's one argon2id, off the event loop, traced and timed like a verification's."""
        with telemetry.leaf_span("argon2id.index"), telemetry.timed(telemetry.instruments.argon2_duration):
            return await self.indexer.compute_async(
                tenant, document.document_type, document.number, pepper_version=pepper_version
            )

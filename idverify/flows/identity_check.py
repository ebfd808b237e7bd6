"""CheckIdentity: does a claimed name + document match the identity bound to an account.

The answer has one shape and the same cost (one argon2id) whether or not the account exists or
is bound, so it cannot be used to enumerate accounts or identities. Wrong claims are counted per
account and per calling principal over a day (``store/lua/identity_check.lua``): at a limit the
check is refused whatever the claim, so trying document numbers one after another recovers none.
Every check is audited (``identity.checked``) with its outcome and principal, before its answer
is given: an answer that could not be counted is not given.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

from idverify.domain.age import today_in_shanghai
from idverify.domain.documents import Document, validate_document
from idverify.domain.errors import InvalidArgument, RateLimited
from idverify.domain.normalize import normalize_identifier, normalize_name
from idverify.domain.subjects import Subject
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.observability import telemetry
from idverify.privacy.identity_index import IndexValue, parse_index_params
from idverify.privacy.name_binding import claim_tag, names_match
from idverify.privacy.sealing import SealError, associated_data, sealed_from_text
from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import TenantKeys

# A window of mismatches lasts a day from its first one.
CHECK_WINDOW_MS = 86_400_000


class IdentityCheckFlow:
    """Answers CheckIdentity for every tenant."""

    def __init__(self, deps: FlowDeps) -> None:
        self._d = deps
        limits = deps.settings.rate_limits
        self._per_account = limits.check_identity_mismatches_per_account_per_day
        self._per_principal = limits.check_identity_mismatches_per_principal_per_day

    async def check_identity(self, tenant: str, account_id: str, subject: Subject, info: RequestInfo) -> bool:
        """Whether a claimed name + document match the identity bound to an account.

        Raises:
            InvalidArgument: on malformed input (nothing is counted).
            RateLimited: the account or the caller reached its mismatches of the day
                (``CHECK_LIMIT_REACHED`` / ``PRINCIPAL_CHECK_LIMIT_REACHED``), whatever the claim.
            StoreUnavailable: the check could not be counted and audited; no answer is given.
        """
        d = self._d
        account_id = normalize_identifier(account_id, field="account_id")
        name = normalize_name(subject.name)
        if subject.document_type is None:
            raise InvalidArgument("document type is required", reason="EMPTY", field="subject.document_type")
        document = validate_document(
            subject.document_type, subject.document_number, subject.issuing_country, today=today_in_shanghai()
        )
        keys = TenantKeys(tenant)
        account_ps = d.keyring.pseudonym(tenant, "account", account_id)
        count = _Count(
            keys=[
                keys.check_mismatches("acct", account_ps),
                keys.check_mismatches(
                    "principal", d.keyring.pseudonym(tenant, "check-principal", info.principal)
                ),
                keys.audit_log(),
            ],
            request=json.dumps(
                {**info.audit_fields(), "account": d.keyring.pseudonym(tenant, "audit", account_id)}
            ),
        )
        # Refused before the hash: a refused check costs no argon2id.
        await self._count(count, "admit")
        match = await self._judge(tenant, keys, account_ps, name, document)
        await self._count(count, "match" if match else "mismatch")
        return match

    async def _judge(
        self, tenant: str, keys: TenantKeys, account_ps: str, name: str, document: Document
    ) -> bool:
        d = self._d
        async with translate_errors():
            bound_ref, name_tag = await d.redis.hmget(keys.account(account_ps), ["identity", "name_tag"])
            stored, phc = (
                await d.redis.hmget(keys.identity(as_text(bound_ref)), ["name_binding", "pepper"])
                if bound_ref is not None
                else (None, None)
            )
        # The record's own pepper: it may not have moved to the current one yet (that happens
        # when the identity is next verified), and the cost stays one argon2id either way.
        try:
            pepper_version = parse_index_params(as_text(phc or b""))[1]
        except ValueError:
            pepper_version = None
        if pepper_version not in d.keyring.pepper_versions:
            pepper_version = None
        index = await self._hash_identity(tenant, document, pepper_version=pepper_version)
        if bound_ref is None:
            return False
        try:
            bound_digest = d.sealer.unseal(
                sealed_from_text(as_text(bound_ref)), associated=associated_data(tenant, "identity-index")
            )
        except SealError:
            return False
        if stored is None or not hmac.compare_digest(bound_digest, index.digest):
            return False
        if name_tag is not None:
            # The name the account bound under, which is the identity's established name once
            # there is one (README "Identity claims"); the identity's first name otherwise.
            presented = claim_tag(d.keyring, tenant, document.document_type.value, document.number, name)
            return hmac.compare_digest(as_text(name_tag), presented)
        try:
            binding = d.sealer.unseal(
                sealed_from_text(as_text(stored)), associated=associated_data(tenant, "name-binding")
            )
        except SealError:
            return False
        return names_match(
            d.keyring, tenant, index.digest, name, binding, pepper_version=index.pepper_version
        )

    async def _count(self, count: _Count, step: str) -> None:
        answer = await self._d.scripts.run(
            "identity_check",
            count.keys,
            [step, self._per_account, self._per_principal, CHECK_WINDOW_MS, count.request],
        )
        if answer[0] == b"LIMITED":
            reason = as_text(answer[1])
            telemetry.Instruments.add(telemetry.instruments.rate_limit_hits, limit=reason.lower())
            raise RateLimited(
                "too many wrong identity claims today",
                retry_after=max(int(answer[2]), 0) / 1000,
                reason=reason,
            )

    async def _hash_identity(
        self, tenant: str, document: Document, *, pepper_version: str | None = None
    ) -> IndexValue:
        """The check's one argon2id, off the event loop, traced and timed like a verification's."""
        with telemetry.leaf_span("argon2id.index"), telemetry.timed(telemetry.instruments.argon2_duration):
            return await self._d.indexer.compute_async(
                tenant, document.document_type, document.number, pepper_version=pepper_version
            )


@dataclass(frozen=True, slots=True)
class _Count:
    """The script's keys and audit fields for one check (pseudonyms only)."""

    keys: list[str]
    request: str

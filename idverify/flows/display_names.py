"""Display names against verified names: CheckDisplayName and the approval of short names and brands.

Names are held only as keyed hashes of their folded forms (idverify/domain/display_names.py),
so "contains" is answered by hashing every substring of the folded display name and looking all
of them up in the tenant's index in one script (docs/ARCHITECTURE.md "Display names").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from idverify.domain.display_names import (
    MAX_APPROVED_NAMES,
    MIN_PROTECTED_LENGTH,
    AccountFacts,
    Found,
    Judgement,
    NameKind,
    fold,
    judge,
    protected_forms,
    substrings,
)
from idverify.domain.errors import FailedPrecondition, InvalidArgument, RateLimited
from idverify.domain.normalize import normalize_identifier
from idverify.domain.subjects import AssuranceLevel, SubjectKind
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.privacy.hmac_batch import hmac_sha256_each
from idverify.privacy.keyring import Keyring
from idverify.store.connection import as_text
from idverify.store.keys import TenantKeys

NAME_PURPOSE: Final = "org-name"
"""Keyring purpose of the keyed hashes in the index of organization names (the pinned pepper)."""

_HASH_HEX: Final = 32  # 128 bits of HMAC-SHA256: no collision among a tenant's few million forms
_DAY_MS: Final = 86_400_000
_ASSURANCE_RANK: Final = {AssuranceLevel.LOW: 1, AssuranceLevel.SUBSTANTIAL: 2, AssuranceLevel.HIGH: 3}


def name_hashes(keyring: Keyring, tenant: str, folded_names: list[str]) -> list[str]:
    """The index's keyed hash (hex) of each folded name, in order.

    Keyed by the tenant's ``org-name`` subkey under the pinned pseudonym pepper, so the index
    outlives pepper rotations as every other pseudonym does.
    """
    key = keyring.subkey(tenant, NAME_PURPOSE)
    return [
        digest[: _HASH_HEX // 2].hex() for digest in hmac_sha256_each(key, (n.encode() for n in folded_names))
    ]


def organization_name_hashes(keyring: Keyring, tenant: str, registered_name: str) -> str:
    """What a verification of an organization carries for the index (``vf.org_names``).

    Raises:
        InvalidArgument: the name folds to nothing or to more than 64 characters.
    """
    return ",".join(name_hashes(keyring, tenant, sorted(protected_forms(registered_name))))


@dataclass(frozen=True, slots=True)
class _Lookup:
    facts: AccountFacts
    found: list[Found]


class DisplayNameFlow:
    """CheckDisplayName (platform) and SetApprovedNames (admin), for every tenant."""

    def __init__(self, deps: FlowDeps) -> None:
        self._d = deps

    async def check(self, tenant: str, client_id: str, account_id: str, display_name: str) -> Judgement:
        """The verdict on an account's display name, never a stored name.

        Raises:
            InvalidArgument: a malformed account id or display name (named in the error).
            RateLimited: the client used up its checks of the day (DISPLAY_NAME_CHECKS_RATE_LIMITED).
            StoreUnavailable: when Redis is down.
        """
        d = self._d
        account_id = normalize_identifier(account_id, field="account_id")
        folded = fold(display_name)
        spans = list(substrings(folded))
        hashes = name_hashes(d.keyring, tenant, [folded[start:end] for start, end in spans])
        keys = TenantKeys(tenant)
        limit = d.settings.rate_limits.display_name_checks_per_principal_per_day
        reply = await d.scripts.run(
            "display_name",
            [
                keys.account(d.keyring.pseudonym(tenant, "account", account_id)),
                keys.organization_names(),
                keys.rate_limit("display_checks", d.keyring.pseudonym(tenant, "principal", client_id)),
            ],
            [limit, _DAY_MS, *hashes],
        )
        lookup = self._read(tenant, reply, spans)
        policy = d.settings.methods_for(tenant).display_names
        return judge(lookup.facts, [*lookup.found, *policy.reserved().find(folded)])

    def _read(self, tenant: str, reply: list[bytes], spans: list[tuple[int, int]]) -> _Lookup:
        status = as_text(reply[0])
        if status == "LIMIT":
            raise RateLimited(
                "CheckDisplayName calls of this client reached the day's limit",
                retry_after=max(int(reply[1]), 0) / 1000,
                reason="DISPLAY_NAME_CHECKS_RATE_LIMITED",
            )
        bound, kind, assurance, tag, indexed = (as_text(value) for value in reply[1:6])
        claim = self._d.settings.methods_for(tenant).claim_assurance
        facts = AccountFacts(
            bound=bound == "1",
            organization=kind == SubjectKind.ORGANIZATION.value,
            name_tag=tag,
            at_claim_assurance=_rank(assurance) >= _ASSURANCE_RANK[claim],
            names_indexed=indexed == "1",
        )
        found = []
        for at in range(6, len(reply), 3):
            start, end = spans[int(reply[at]) - 1]
            own = as_text(reply[at + 2])
            found.append(
                Found(
                    start,
                    end,
                    NameKind.APPROVED if own == NameKind.APPROVED.value else NameKind.VERIFIED,
                    frozenset(as_text(reply[at + 1]).split()),
                )
            )
        return _Lookup(facts, found)

    async def set_approved(self, tenant: str, account_id: str, names: list[str], info: RequestInfo) -> int:
        """Records the short names and brands approved for an organization account (audited).

        Returns:
            How many names are approved now (a name that is a verified form counts as verified).

        Raises:
            InvalidArgument: a malformed account id or name (field ``names[i]``, its index as sent),
                too many names (field ``names``).
            FailedPrecondition: the account is not an organization established at the claim
                assurance, a name is or contains a reserved name (NAME_RESERVED) or another
                organization's name (NAME_TAKEN).
        """
        d = self._d
        account_id = normalize_identifier(account_id, field="account_id")
        if len(names) > MAX_APPROVED_NAMES:
            raise InvalidArgument(f"at most {MAX_APPROVED_NAMES} names", reason="TOO_MANY", field="names")
        # Each refusal names the entry at fault by its index as sent (names[3]), as other lists do.
        forms = [fold(name, field=f"names[{index}]") for index, name in enumerate(names)]
        for index, form in enumerate(forms):
            if len(form) < MIN_PROTECTED_LENGTH:
                raise InvalidArgument(
                    "a name needs at least two letters or digits", reason="TOO_SHORT", field=f"names[{index}]"
                )
        policy = d.settings.methods_for(tenant)
        reserved = policy.display_names.reserved()
        for index, form in enumerate(forms):
            if reserved.holds(form):
                raise FailedPrecondition(
                    "a name is, or contains, a reserved name", reason="NAME_RESERVED", field=f"names[{index}]"
                )
        folded = sorted(set(forms))
        # Every substring too: a brand that contains another organization's name would make
        # that name the approved organization's own wherever its brand stands.
        parts = sorted({name[start:end] for name in folded for start, end in substrings(name)} - set(folded))
        keys = TenantKeys(tenant)
        reply = await d.scripts.run(
            "approved_names",
            [
                keys.account(d.keyring.pseudonym(tenant, "account", account_id)),
                keys.organization_names(),
                keys.audit_log(),
            ],
            [
                json.dumps({**info.audit_fields(), "account": ""}),
                policy.claim_assurance.value,
                len(folded),
                *name_hashes(d.keyring, tenant, [*folded, *parts]),
            ],
        )
        match as_text(reply[0]):
            case "OK":
                return int(reply[1])
            case "NOT_BOUND":
                raise FailedPrecondition("the account is not bound to an identity", reason="NOT_BOUND")
            case "NOT_ORGANIZATION":
                raise FailedPrecondition("the account is not an organization's", reason="NOT_ORGANIZATION")
            case "NAME_TAKEN":
                raise FailedPrecondition(
                    "a name is, or contains, another organization's name", reason="NAME_TAKEN"
                )
            case _:
                raise FailedPrecondition(
                    "the organization's name is not established at the tenant's claim assurance",
                    reason="NOT_ESTABLISHED",
                )


def _rank(assurance: str) -> int:
    try:
        return _ASSURANCE_RANK[AssuranceLevel(assurance)]
    except ValueError:
        return 0

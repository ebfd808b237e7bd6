"""Display names against verified names: CheckDisplayName and the approval of short names and brands.

Names are held only as keyed hashes of their folded forms (idverify/domain/display_names.py),
so "contains" is answered by hashing every substring of the folded display name and looking all
of them up in the tenant's index in one script (docs/ARCHITECTURE.md "Display names").

The flow reads and writes the index through :class:`DisplayNameStore`, the port declared here, in
typed records; ``store.display_names.RedisDisplayNames`` implements it over Redis
(``display_name.lua`` and ``approved_names.lua``, their keys and replies).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from idverify.config import Settings
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
from idverify.flows.context import RequestInfo
from idverify.privacy.hmac_batch import hmac_sha256_each
from idverify.privacy.keyring import Keyring

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
class NameQuery:
    """One CheckDisplayName's lookup: the account and caller by pseudonym, the substrings' hashes."""

    tenant: str
    account: str
    caller: str
    hashes: tuple[str, ...]
    limit: int  # calls a caller may make per window
    window_ms: int


@dataclass(frozen=True, slots=True)
class NamesApproval:
    """One SetApprovedNames: the names' hashes and their substrings' (``parts``)."""

    tenant: str
    account: str
    names: tuple[str, ...]
    parts: tuple[str, ...]
    claim_assurance: AssuranceLevel  # the organization must be established at it
    audit: Mapping[str, str]  # the request's audit fields


@dataclass(frozen=True, slots=True)
class NameHit:
    """A looked-up hash the index holds."""

    position: int  # its index in the hashes asked about
    owners: frozenset[str]  # the claim tags of the organizations holding it
    own: str  # the asking account's own kind of it ("v", "a"), or "" when not its own


@dataclass(frozen=True, slots=True)
class NameLookup:
    """What a check reads: the account's facts as stored, and the hashes the index holds."""

    bound: bool
    kind: str  # the subject kind ("person", "organization"), "" when unbound
    assurance: str
    name_tag: str
    names_indexed: bool  # the account's organization holds names in the index
    hits: tuple[NameHit, ...]


@dataclass(frozen=True, slots=True)
class ChecksLimited:
    """The client used up its checks of the window (this call counted too)."""

    retry_after_ms: int


class Approval(enum.Enum):
    """How an approval of names ended."""

    APPROVED = "OK"
    NOT_BOUND = "NOT_BOUND"
    NOT_ORGANIZATION = "NOT_ORGANIZATION"
    NOT_ESTABLISHED = "NOT_ESTABLISHED"
    NAME_TAKEN = "NAME_TAKEN"  # audited as a refused names.approved


class DisplayNameStore(Protocol):
    """The tenant's index of organization names; every method may raise StoreUnavailable."""

    async def look_up(self, query: NameQuery) -> NameLookup | ChecksLimited:
        """Counts the call against the caller's window, then reads the account and the hashes."""
        ...

    async def approve(self, approval: NamesApproval) -> tuple[Approval, int]:
        """Replaces the organization's approved names with ``approval.names``; how many are approved now.

        Refused unless the account is an organization's established at the claim assurance, and
        when a name or one of its parts is another organization's.
        """
        ...


class DisplayNameFlow:
    """CheckDisplayName (platform) and SetApprovedNames (admin), for every tenant."""

    def __init__(self, store: DisplayNameStore, *, keyring: Keyring, settings: Settings) -> None:
        self._store = store
        self._keyring = keyring
        self._settings = settings

    async def check(self, tenant: str, client_id: str, account_id: str, display_name: str) -> Judgement:
        """The verdict on an account's display name, never a stored name.

        Raises:
            InvalidArgument: a malformed account id or display name (named in the error).
            RateLimited: the client used up its checks of the day (DISPLAY_NAME_CHECKS_RATE_LIMITED).
            StoreUnavailable: when Redis is down.
        """
        account_id = normalize_identifier(account_id, field="account_id")
        folded = fold(display_name)
        spans = list(substrings(folded))
        hashes = name_hashes(self._keyring, tenant, [folded[start:end] for start, end in spans])
        looked = await self._store.look_up(
            NameQuery(
                tenant,
                self._keyring.pseudonym(tenant, "account", account_id),
                self._keyring.pseudonym(tenant, "principal", client_id),
                tuple(hashes),
                self._settings.rate_limits.display_name_checks_per_principal_per_day,
                _DAY_MS,
            )
        )
        if isinstance(looked, ChecksLimited):
            raise RateLimited(
                "CheckDisplayName calls of this client reached the day's limit",
                retry_after=max(looked.retry_after_ms, 0) / 1000,
                reason="DISPLAY_NAME_CHECKS_RATE_LIMITED",
            )
        methods = self._settings.methods_for(tenant)
        facts = AccountFacts(
            bound=looked.bound,
            organization=looked.kind == SubjectKind.ORGANIZATION.value,
            name_tag=looked.name_tag,
            at_claim_assurance=_rank(looked.assurance) >= _ASSURANCE_RANK[methods.claim_assurance],
            names_indexed=looked.names_indexed,
        )
        found = [
            Found(
                *spans[hit.position],
                NameKind.APPROVED if hit.own == NameKind.APPROVED.value else NameKind.VERIFIED,
                hit.owners,
            )
            for hit in looked.hits
        ]
        return judge(facts, [*found, *methods.display_names.reserved().find(folded)])

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
        policy = self._settings.methods_for(tenant)
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
        hashes = name_hashes(self._keyring, tenant, [*folded, *parts])
        outcome, approved = await self._store.approve(
            NamesApproval(
                tenant,
                self._keyring.pseudonym(tenant, "account", account_id),
                tuple(hashes[: len(folded)]),
                tuple(hashes[len(folded) :]),
                policy.claim_assurance,
                {**info.audit_fields(), "account": ""},
            )
        )
        match outcome:
            case Approval.APPROVED:
                return approved
            case Approval.NOT_BOUND:
                raise FailedPrecondition("the account is not bound to an identity", reason="NOT_BOUND")
            case Approval.NOT_ORGANIZATION:
                raise FailedPrecondition("the account is not an organization's", reason="NOT_ORGANIZATION")
            case Approval.NAME_TAKEN:
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

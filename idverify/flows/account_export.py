"""A person's copy of what is held about their account, with its audit entries proven.

The bundle joins what a platform may read about the account (its view, consents, erasure state)
with every audit entry about it, each with an RFC 6962 inclusion proof to one signed tree head,
and names the personal data held only as keyed hashes or sealed values without revealing it.
The export is audited first, so the head taken after it proves the export's own entry too.
An account's entries are few; a page holds at most ``MAX_ENTRIES`` (about 1 KiB each with its
proof), and the caller asks again from ``next_start_index`` for the rest, each page audited.

The flow reads the store through :class:`AccountExportStore`, the port declared here with the
records it speaks in (``store.account_exports.RedisAccountExports`` implements it over Redis),
and the other use cases through the narrow ports :class:`AccountViews`, :class:`ConsentLists`
and :class:`ProvenLog`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from idverify.audit.checkpoint import SignedHead
from idverify.audit.events import EventType
from idverify.audit.query import EventFilter, QueryResult
from idverify.domain.consent import ConsentState
from idverify.domain.normalize import normalize_identifier
from idverify.flows.accounts import AccountView
from idverify.flows.audit import InclusionProof
from idverify.flows.context import RequestInfo
from idverify.privacy.keyring import Keyring

__all__ = [
    "MAX_ENTRIES",
    "AccountBundle",
    "AccountExportFlow",
    "AccountExportStore",
    "AccountRecord",
    "AccountViews",
    "ConsentLists",
    "ErasureState",
    "HeldRecords",
    "HeldValue",
    "ProvenEntry",
    "ProvenLog",
]

MAX_ENTRIES = 500
"""Audit entries per page: with their proofs, well under gRPC's 4 MiB message limit."""


class ErasureState(StrEnum):
    """Where the account stands with the erasure of what is stored about it."""

    NOT_SCHEDULED = "not_scheduled"
    SCHEDULED = "scheduled"
    ERASED = "erased"


class HeldForm(StrEnum):
    """How a held value is kept."""

    KEYED_HASH = "keyed_hash"
    SEALED = "sealed"


@dataclass(frozen=True, slots=True)
class HeldValue:
    """One piece of personal data held about the account, named and never shown."""

    item: str
    form: HeldForm
    record: str


@dataclass(frozen=True, slots=True)
class ProvenEntry:
    """An audit entry's exact bytes and its audit path to the bundle's head."""

    index: int
    leaf: bytes
    proof: list[bytes]


@dataclass(frozen=True, slots=True)
class AccountBundle:
    """What ExportAccountData returns."""

    view: AccountView
    consents: list[ConsentState]
    erasure: ErasureState
    held: list[HeldValue]
    audit_pseudonyms: tuple[str, ...]
    head: SignedHead
    entries: list[ProvenEntry]
    next_start_index: int


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """What an account record says, as far as an export tells of it."""

    audit_pseudonym: str  # the audit pseudonym recorded with the account, or ""
    identity_ref: str  # the identity record the account is bound to, or ""
    name_tag: bool  # a keyed hash of the name is held
    birth_sealed: bool  # the birth date is held sealed
    erasure_due: bool  # an erasure is scheduled


@dataclass(frozen=True, slots=True)
class HeldRecords:
    """Which of the account's other records exist."""

    identity: bool  # the identity record it is bound to
    verifications: bool  # any verification record not yet expired


class AccountExportStore(Protocol):
    """What an export reads and writes; every method may raise StoreUnavailable."""

    async def account(self, tenant: str, account_ps: str) -> AccountRecord | None:
        """The account record of pseudonym ``account_ps``, or None when there is none."""
        ...

    async def append_export(
        self, tenant: str, request_fields: str, audit_pseudonym: str, start_index: int
    ) -> None:
        """Appends the ``account.exported`` entry (request fields as JSON) to the tenant's log."""
        ...

    async def held_records(self, tenant: str, account_ps: str, identity_ref: str) -> HeldRecords:
        """Whether identity ``identity_ref`` (none when "") and a live verification of the account exist."""
        ...


class AccountViews(Protocol):
    """An account as a platform reads it (``flows.accounts.AccountFlow``)."""

    async def get_account(self, tenant: str, account_id: str) -> AccountView:
        """The account's view; an unknown one reads as unverified."""
        ...


class ConsentLists(Protocol):
    """An account's consents (``flows.consent.ConsentFlow``)."""

    async def list(self, tenant: str, account_id: str) -> list[ConsentState]:
        """The account's consents."""
        ...


class ProvenLog(Protocol):
    """The audit log's heads, entries and proofs (``flows.audit.AuditFlow``)."""

    async def signed_head(self, tenant: str) -> SignedHead:
        """A signed head of everything appended so far."""
        ...

    def entries(self, tenant: str, query: EventFilter) -> AsyncIterator[QueryResult]:
        """The entries matching ``query``, in index order."""
        ...

    async def inclusion_proof(self, tenant: str, index: int, tree_size: int) -> InclusionProof:
        """The proof that entry ``index`` is in the tree of ``tree_size`` entries."""
        ...


# What each record holds of a person, by the account-record field that says it is there; the
# identity and verification records hold theirs whenever they exist (ARCHITECTURE's retention table).
_ACCOUNT_DOCUMENT = HeldValue("document_number", HeldForm.KEYED_HASH, "account")
_ACCOUNT_NAME = HeldValue("name", HeldForm.KEYED_HASH, "account")
_ACCOUNT_BIRTH = HeldValue("birth_date", HeldForm.SEALED, "account")
_IDENTITY_RECORD = (
    HeldValue("document_number", HeldForm.SEALED, "identity"),
    HeldValue("name", HeldForm.KEYED_HASH, "identity"),
)
_VERIFICATION_RECORD = (
    HeldValue("document_number", HeldForm.SEALED, "verification"),
    HeldValue("name", HeldForm.KEYED_HASH, "verification"),
    HeldValue("birth_date", HeldForm.SEALED, "verification"),
    HeldValue("account_id", HeldForm.SEALED, "verification"),
    HeldValue("one_time_code", HeldForm.KEYED_HASH, "verification"),
)


@dataclass(eq=False, slots=True)
class AccountExportFlow:
    """Account data exports for every tenant."""

    store: AccountExportStore
    keyring: Keyring
    accounts: AccountViews
    consent: ConsentLists
    audit: ProvenLog

    async def export(
        self, tenant: str, account_id: str, start_index: int, info: RequestInfo
    ) -> AccountBundle:
        """The account's bundle, its entries from ``start_index`` on (at most ``MAX_ENTRIES``).

        An unknown account (or another tenant's: account ids are the tenant's own) reads as an
        unverified account with no consents, exactly as GetAccount; its bundle still proves the
        export's own entry.

        Raises:
            InvalidArgument: on a malformed account id.
            FailedPrecondition: when the log is behind a head it published (AUDIT_LOG_ROLLED_BACK).
            StoreUnavailable: when Redis cannot be reached.
        """
        account_id = normalize_identifier(account_id, field="account_id")
        keyring = self.keyring
        account_ps = keyring.pseudonym(tenant, "account", account_id)
        record = await self.store.account(tenant, account_ps)
        current = keyring.pseudonym(tenant, "audit", account_id)
        # Entries carry the audit pseudonym of the pepper current when they were written.
        versions = keyring.pepper_versions
        older = [keyring.pseudonym(tenant, "audit", account_id, pepper_version=v) for v in versions]
        recorded = record.audit_pseudonym if record is not None else ""
        pseudonyms = tuple(dict.fromkeys([current, *older, *([recorded] if recorded else [])]))
        request = json.dumps(info.audit_fields())
        await self.store.append_export(tenant, request, recorded or current, start_index)
        head = await self.audit.signed_head(tenant)
        entries, next_start = await self._entries(tenant, pseudonyms, start_index, head.head.size)
        view = await self.accounts.get_account(tenant, account_id)
        consents = await self.consent.list(tenant, account_id)
        return AccountBundle(
            view=view,
            consents=consents,
            erasure=await self._erasure_state(tenant, record, pseudonyms),
            held=await self._held(tenant, account_ps, record),
            audit_pseudonyms=pseudonyms,
            head=head,
            entries=entries,
            next_start_index=next_start,
        )

    async def _entries(
        self, tenant: str, pseudonyms: tuple[str, ...], start_index: int, size: int
    ) -> tuple[list[ProvenEntry], int]:
        """The account's entries below ``size`` from ``start_index``, proven, and the next page's start."""
        found: list[tuple[int, bytes]] = []
        query = EventFilter(accounts=pseudonyms, start_index=start_index, limit=MAX_ENTRIES + 1)
        next_start = 0
        async for result in self.audit.entries(tenant, query):
            if result.event.index >= size:
                break
            if len(found) == MAX_ENTRIES:
                next_start = result.event.index
                break
            found.append((result.event.index, result.leaf))
        proofs = await asyncio.gather(*(self.audit.inclusion_proof(tenant, i, size) for i, _ in found))
        entries = [
            ProvenEntry(index, leaf, proof.hashes) for (index, leaf), proof in zip(found, proofs, strict=True)
        ]
        return entries, next_start

    async def _erasure_state(
        self, tenant: str, record: AccountRecord | None, pseudonyms: tuple[str, ...]
    ) -> ErasureState:
        if record is not None:
            return ErasureState.SCHEDULED if record.erasure_due else ErasureState.NOT_SCHEDULED
        erased = EventFilter(types=frozenset({EventType.ACCOUNT_ERASED.value}), accounts=pseudonyms, limit=1)
        async for _ in self.audit.entries(tenant, erased):
            return ErasureState.ERASED
        return ErasureState.NOT_SCHEDULED

    async def _held(self, tenant: str, account_ps: str, record: AccountRecord | None) -> list[HeldValue]:
        if record is None:
            return []
        held = [HeldValue("account_id", HeldForm.KEYED_HASH, "account")]
        held += [
            value
            for present, value in (
                (bool(record.identity_ref), _ACCOUNT_DOCUMENT),
                (record.name_tag, _ACCOUNT_NAME),
                (record.birth_sealed, _ACCOUNT_BIRTH),
            )
            if present
        ]
        records = await self.store.held_records(tenant, account_ps, record.identity_ref)
        if records.identity:
            held += _IDENTITY_RECORD
        if records.verifications:
            held += _VERIFICATION_RECORD
        return held

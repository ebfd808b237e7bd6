"""Key rotation's tools: what each key version still protects, and the reindex that re-seals it.

``idverify keys status`` and ``keys retire`` count the records each wrapping-key and pepper
version still protects (:func:`count_key_usage`); ``idverify keys reindex`` re-seals every
identity (moved, flows/identity_mover.py), verification, account, tenant's event account ids and
webhook secret under the current wrapping key, resumably (:class:`Reindexer`).

Both read and write the records through :class:`SealedRecords`, the port declared here, in typed
values; ``store.sealed_records.RedisSealedRecords`` implements it (the key patterns, SCAN and
HSCAN pages, the pipelined reads, ``reseal_verification.lua`` and the checkpoint's hash).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Protocol

from idverify.events.accounts import EVENT_ACCOUNT
from idverify.flows.account_age import BIRTH_DATE
from idverify.flows.identity_mover import IDENTITY_INDEX, NAME_BINDING, IdentityMover
from idverify.privacy.identity_index import parse_index_params
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import SealError, text_version
from idverify.webhooks.subscriptions import WEBHOOK_SECRET

__all__ = [
    "ACCOUNT_FIELDS",
    "VERIFICATION_FIELDS",
    "KeyUsage",
    "RecordKind",
    "ReindexCheckpoint",
    "ReindexReport",
    "Reindexer",
    "SealedRecord",
    "SealedRecords",
    "count_key_usage",
]

# The sealed fields of a verification: associated-data purpose, and what else its context holds:
# nothing, the verification id, the account pseudonym (a birth date, sealed for the account it
# is copied to) or the account's audit pseudonym (its id, for its events).
VERIFICATION_FIELDS: Final[Mapping[str, tuple[str, str]]] = {
    "identity": (IDENTITY_INDEX, ""),
    "name_binding": (NAME_BINDING, ""),
    "name_binding_seen": (NAME_BINDING, ""),
    "acct_sealed": ("account-id", "verification"),
    "challenge_sealed": ("vendor-challenge", "verification"),
    "phone_ps_sealed": ("phone-pseudonym", "verification"),
    "birth_sealed": (BIRTH_DATE, "account"),
    "event_account": (EVENT_ACCOUNT, "audit"),
}
# The sealed fields of an account, as a verification's: the birth date sealed with the account
# pseudonym as its context, the account's id for its events with its audit pseudonym (the
# account's ``audit`` field).
ACCOUNT_FIELDS: Final[Mapping[str, tuple[str, str]]] = {
    "birth_sealed": (BIRTH_DATE, "account"),
    "event_account": (EVENT_ACCOUNT, "audit"),
}


class RecordKind(Enum):
    """The kinds of records holding sealed values, named as their keys name them."""

    IDENTITY = "id"
    VERIFICATION = "vf"
    ACCOUNT = "acct"
    EVENT_ACCOUNTS = "events"  # each tenant's legacy hash of account ids sealed for events (read until empty)
    WEBHOOK = "webhook"


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """One record: its kind, its tenant, and its name within them.

    The name is an identity's ref, a verification's id, an account's pseudonym or a webhook's
    id; ``acct`` for a tenant's event accounts.
    """

    kind: RecordKind
    tenant: str
    name: str


@dataclass(frozen=True, slots=True)
class ReindexCheckpoint:
    """Where a reindex stopped: the version it sealed under, its phase and the scan's cursor."""

    target: str
    phase: str
    cursor: int


class SealedRecords(Protocol):
    """The records holding sealed values, across tenants; every method may raise StoreUnavailable."""

    def records(
        self, kind: RecordKind, *, cursor: int = 0, count: int = 500
    ) -> AsyncIterator[tuple[int, list[SealedRecord]]]:
        """Pages of every record of ``kind`` from ``cursor``, each with the cursor after it (0: the end).

        A page may repeat records of an earlier one; a cursor may not resume everywhere (0 then).
        """
        ...

    async def read_fields(
        self, records: Sequence[SealedRecord], fields: Sequence[str]
    ) -> list[list[str | None]]:
        """Each record's ``fields`` (None: absent), in order, read together."""
        ...

    def hash_pages(self, record: SealedRecord) -> AsyncIterator[dict[str, str]]:
        """All the fields of one (large) record, a page at a time."""
        ...

    async def reseal(self, record: SealedRecord, changes: Mapping[str, tuple[str, str]]) -> bool:
        """Sets each field to its new value if all still hold the value read (field: (read, new)).

        True when written; False when the record is gone or changed.
        """
        ...

    async def checkpoint(self) -> ReindexCheckpoint | None:
        """The last reindex's checkpoint, if any."""
        ...

    async def save_checkpoint(self, checkpoint: ReindexCheckpoint) -> None:
        """Records the checkpoint."""
        ...


@dataclass
class KeyUsage:
    """What each key version still protects in one tenant."""

    identities: Counter[str] = field(default_factory=Counter)
    peppers: Counter[str] = field(default_factory=Counter)
    verifications: Counter[str] = field(default_factory=Counter)
    forwarding: Counter[str] = field(default_factory=Counter)
    accounts: Counter[str] = field(default_factory=Counter)
    # Account ids sealed for events (idverify/events/accounts.py), one per account.
    event_accounts: Counter[str] = field(default_factory=Counter)
    # Webhook subscriptions' secrets (idverify/webhooks/subscriptions.py), one per subscription.
    webhook_secrets: Counter[str] = field(default_factory=Counter)

    def wrapping_total(self, version: str) -> int:
        """Records of any kind sealed under a wrapping-key version."""
        return (
            self.identities[version]
            + self.verifications[version]
            + self.forwarding[version]
            + self.accounts[version]
            + self.event_accounts[version]
            + self.webhook_secrets[version]
        )


async def count_key_usage(store: SealedRecords) -> dict[str, KeyUsage]:
    """Per tenant, how many records each wrapping-key and pepper version still protects.

    Raises:
        StoreUnavailable: Redis is down.
    """
    usage: dict[str, KeyUsage] = {}
    async for _, page in store.records(RecordKind.IDENTITY):
        rows = await store.read_fields(page, ["pepper", "moved_to"])
        for record, (pepper, moved_to) in zip(page, rows, strict=True):
            counts = usage.setdefault(record.tenant, KeyUsage())
            version = text_version(record.name)
            if moved_to is not None:
                counts.forwarding[version] += 1
                continue
            counts.identities[version] += 1
            with contextlib.suppress(ValueError):
                counts.peppers[parse_index_params(pepper or "")[1]] += 1
    await _count_sealed(
        store, RecordKind.VERIFICATION, list(VERIFICATION_FIELDS), usage, lambda u: u.verifications
    )
    await _count_sealed(store, RecordKind.ACCOUNT, list(ACCOUNT_FIELDS), usage, lambda u: u.accounts)
    await _count_sealed(store, RecordKind.WEBHOOK, ["secret"], usage, lambda u: u.webhook_secrets)
    async for _, page in store.records(RecordKind.EVENT_ACCOUNTS):
        for record in page:
            counter = usage.setdefault(record.tenant, KeyUsage()).event_accounts
            async for values in store.hash_pages(record):
                counter.update(text_version(value) for value in values.values())
    return usage


async def _count_sealed(
    store: SealedRecords,
    kind: RecordKind,
    fields: list[str],
    usage: dict[str, KeyUsage],
    counter_of: Callable[[KeyUsage], Counter[str]],
) -> None:
    """Counts each record of ``kind`` once per wrapping-key version its ``fields`` use."""
    async for _, page in store.records(kind):
        rows = await store.read_fields(page, fields)
        for record, row in zip(page, rows, strict=True):
            counter = counter_of(usage.setdefault(record.tenant, KeyUsage()))
            for version in {text_version(value) for value in row if value} - {""}:
                counter[version] += 1


@dataclass(frozen=True, slots=True)
class ReindexReport:
    """How a reindex run ended."""

    target: str
    resealed: int
    unreadable: int
    finished: bool


class Reindexer:
    """Re-seals every identity, verification and account under the current wrapping key, resumably.

    The position (phase and SCAN cursor) is saved in Redis after every page, so a run that is
    stopped (``--limit``, Ctrl-C, a crash) continues where it was; records already under the
    current key are skipped, so repeating a page is harmless. Servers keep serving throughout:
    they look identities up under every readable version and move the ones they meet.
    """

    def __init__(
        self, store: SealedRecords, keyring: Keyring, mover: IdentityMover, *, page_size: int = 200
    ) -> None:
        """Re-seals under ``keyring``'s current wrapping key; ``mover`` moves identities (under it too)."""
        self._store = store
        self._mover = mover
        self._target = keyring.wrapping_current
        self._page_size = page_size

    async def run(self, *, limit: int = 0, progress: Callable[[int], None] | None = None) -> ReindexReport:
        """Re-seals until done, or until about ``limit`` records (at a page boundary) when > 0.

        Raises:
            StoreUnavailable: Redis is down (the checkpoint keeps the progress made).
        """
        saved = await self._store.checkpoint()
        phases = {
            "id": RecordKind.IDENTITY,
            "vf": RecordKind.VERIFICATION,
            "acct": RecordKind.ACCOUNT,
            "events": RecordKind.EVENT_ACCOUNTS,
            "webhooks": RecordKind.WEBHOOK,
        }
        workers = {
            "id": self._identity,
            "vf": self._verification,
            "acct": self._account,
            "events": self._event_accounts,
            "webhooks": self._webhook_secret,
        }
        resume = saved is not None and saved.target == self._target and saved.phase in phases
        phase = saved.phase if saved is not None and resume else "id"
        cursor = saved.cursor if saved is not None and resume else 0
        resealed = unreadable = 0
        for name, kind in list(phases.items())[list(phases).index(phase) :]:
            async for next_cursor, page in self._store.records(kind, cursor=cursor, count=self._page_size):
                for record in page:
                    done = await workers[name](record)
                    resealed += done is True
                    unreadable += done is None
                    if progress is not None and done is True:
                        progress(1)
                await self._store.save_checkpoint(ReindexCheckpoint(self._target, name, next_cursor))
                if limit and resealed >= limit and next_cursor != 0:
                    return ReindexReport(self._target, resealed, unreadable, finished=False)
            cursor = 0
        await self._store.save_checkpoint(ReindexCheckpoint(self._target, "done", 0))
        return ReindexReport(self._target, resealed, unreadable, finished=True)

    async def _identity(self, record: SealedRecord) -> bool | None:
        """True when moved, False when nothing to do, None when unreadable."""
        tenant, ref = record.tenant, record.name
        if text_version(ref) == self._target:
            return False
        try:
            new_ref = self._mover.current_ref(tenant, ref)
            outcome = await self._mover.move(tenant, ref, new_ref)
        except SealError:
            return None
        return outcome == "OK"

    async def _verification(self, record: SealedRecord) -> bool | None:
        names = list(VERIFICATION_FIELDS)
        [row] = await self._store.read_fields([record], [*names, "acct", "acct_audit"])
        account_ps, audit_ps = row[-2] or "", row[-1] or ""
        contexts = {
            "": (),
            "verification": (record.name,),
            "account": (account_ps,),
            "audit": (audit_ps,),
        }
        fields = {
            name: (purpose, contexts[context]) for name, (purpose, context) in VERIFICATION_FIELDS.items()
        }
        return await self._reseal_fields(record, fields, row)

    async def _account(self, record: SealedRecord) -> bool | None:
        [row] = await self._store.read_fields([record], [*ACCOUNT_FIELDS, "audit"])
        contexts = {"account": (record.name,), "audit": (row[-1] or "",)}
        fields = {name: (purpose, contexts[context]) for name, (purpose, context) in ACCOUNT_FIELDS.items()}
        return await self._reseal_fields(record, fields, row)

    async def _event_accounts(self, record: SealedRecord) -> bool | None:
        """Re-seals a tenant's account ids kept for events, a page of fields per step."""
        fields = {}
        async for page in self._store.hash_pages(record):
            fields = {ps: (EVENT_ACCOUNT, (ps,)) for ps in page}
            done = await self._reseal_fields(record, fields, list(page.values()))
            if done is None:
                return None
        return bool(fields)

    async def _webhook_secret(self, record: SealedRecord) -> bool | None:
        """Re-seals a webhook subscription's secret (bound to its tenant and id)."""
        [row] = await self._store.read_fields([record], ["secret"])
        return await self._reseal_fields(record, {"secret": (WEBHOOK_SECRET, (record.name,))}, row)

    async def _reseal_fields(
        self,
        record: SealedRecord,
        fields: Mapping[str, tuple[str, tuple[str, ...]]],
        row: Sequence[str | None],
    ) -> bool | None:
        """Re-seals the fields of one record as read (``row``, in ``fields`` order), compare-and-set."""
        changes: dict[str, tuple[str, str]] = {}
        for (name, (purpose, context)), value in zip(fields.items(), row, strict=False):
            old = value or ""
            if not old or text_version(old) == self._target:
                continue
            try:
                new = self._mover.resealed(record.tenant, old, purpose, *context)
            except SealError:
                return None
            changes[name] = (old, new)
        if not changes:
            return False
        return await self._store.reseal(record, changes)

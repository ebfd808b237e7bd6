"""Who read which accounts: each read recorded per principal, per minute and per hour.

Every RPC that returns verified data records, in the tenant's slot and in the step that read or
right after it (``store/lua/_prelude.lua``'s ``record_reads``):

- per hour, client and data category, HyperLogLogs of the account pseudonyms read and of the
  identity refs bound to them, and the hour's set of readers, kept for the retention period:
  what the incident report counts from (``store.read_keys.ReadKeys`` names them);
- per minute and client, the accounts read and the calls and reads per RPC, which
  :meth:`ReadLedger.close_minutes` turns into one ``reads.summarized`` audit entry with a
  SHA-256 digest of the minute's sorted account pseudonyms (:func:`accounts_digest`).

Nothing here is personal data: the elements are the pseudonyms and refs that already name
``acct:`` and ``id:`` keys, and a HyperLogLog keeps only register maxima of their hashes. The
minute's records live in Redis, not in a worker, so a worker's crash loses none of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from idverify.domain.errors import StoreUnavailable
from idverify.domain.normalize import normalize_identifier
from idverify.privacy.keyring import Keyring
from idverify.security.principals import Principal

__all__ = [
    "ALL_CATEGORIES",
    "HLL_STANDARD_ERROR",
    "HOUR_MS",
    "MINUTE_MS",
    "Category",
    "MinuteClose",
    "ReadLedger",
    "ReadRecords",
    "Reader",
    "accounts_digest",
    "close_minutes_forever",
    "hour_of",
    "read_spec",
]

HOUR_MS = 3_600_000
"""An hour of the store clock: the HyperLogLogs' bucket."""

MINUTE_MS = 60_000
"""A minute of the store clock: one summary entry per principal and minute."""

SUMMARY_DELAY_SECONDS = 60.0
"""How long after its end a minute is closed by default: a whole minute (``[reads]``)."""

HLL_STANDARD_ERROR = 0.0081
"""Redis's HyperLogLog standard error (1.04 / sqrt(16384)); a count is within 3 of them ~99.7 %."""


class Category(StrEnum):
    """The kind of data a read returned (the ``<category>`` of a ``reads`` key)."""

    VERIFICATION = "verification"  # GetAccount, GetVerification, CheckIdentity
    IP_LOCATION = "ip_location"  # GetIpLocations
    CONSENT = "consent"  # ListConsents
    AUDIT = "audit"  # audit queries: the accounts whose entries were returned
    # ExportAccountData reads every category: it is counted in each of them.


ALL_CATEGORIES: tuple[Category, ...] = tuple(Category)


def hour_of(store_ms: int) -> int:
    """The hour bucket of a store-clock time (epoch ms)."""
    return store_ms // HOUR_MS


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads, and through which RPC (a read's summary is per principal and minute)."""

    client_id: str
    principal: str
    rpc: str

    @classmethod
    def of(cls, principal: Principal, rpc: str) -> Reader:
        """The reader of an authenticated call."""
        return cls(principal.client_id, principal.label, rpc)


def read_spec(reader: Reader | None, categories: Sequence[Category], retention_days: int) -> list[str]:
    """The arguments a script records a read with (the prelude's ``read_spec``).

    No reader (a read the service makes for itself, such as an export's own reads) records
    nothing.
    """
    ttl = str(retention_days * 86_400)
    if reader is None:
        return ["", "", "", "", ttl]
    return [reader.client_id, reader.principal, reader.rpc, ",".join(categories), ttl]


def accounts_digest(pseudonyms: Iterable[str | bytes]) -> str:
    """SHA-256 (hex) over the sorted account pseudonyms, each followed by a newline.

    A summary entry's ``digest``: whoever holds the list of accounts a principal was suspected
    to have read in a minute can check it against the entry, without the entry naming them.
    """
    digest = hashlib.sha256()
    for pseudonym in sorted(p.decode() if isinstance(p, bytes) else p for p in pseudonyms):
        digest.update(pseudonym.encode() + b"\n")
    return digest.hexdigest()


class MinuteClose(StrEnum):
    """What closing a minute of reads did."""

    CLOSED = "CLOSED"  # its summary entry was written
    GONE = "GONE"  # another closer was first, or its records expired
    OPEN = "OPEN"  # too recent: reads may still arrive
    CHANGED = "CHANGED"  # its accounts are not those digested


class ReadRecords(Protocol):
    """What the ledger records and closes; every method may raise StoreUnavailable."""

    async def now_ms(self) -> int:
        """The store's clock, in ms of the epoch."""
        ...

    async def record(
        self,
        tenant: str,
        reader: Reader,
        categories: Sequence[Category],
        retention_days: int,
        account_pseudonyms: Sequence[str],
        *,
        only_existing: bool,
    ) -> int:
        """Records a read of the accounts (none: a call); the number of accounts counted.

        ``only_existing`` counts only accounts with a record; a store refusing writes answers
        the count unrecorded.
        """
        ...

    async def open_minutes(self, tenant: str, through_minute: int) -> list[str]:
        """The open minutes (``<minute>:<client id>``) up to ``through_minute``, oldest first."""
        ...

    async def minute_accounts(self, tenant: str, minute: str) -> frozenset[str]:
        """The account pseudonyms read in an open minute."""
        ...

    async def close_minute(
        self, tenant: str, minute: str, accounts: int, digest: str, delay_ms: int
    ) -> MinuteClose:
        """Writes the minute's summary entry, if it is still open, ``delay_ms`` past its end.

        A minute whose accounts are no longer the ``accounts`` that ``digest`` covers is CHANGED.
        """
        ...


class ReadLedger:
    """Records reads (for the scripts that cannot do it themselves) and closes their minutes."""

    def __init__(
        self,
        store: ReadRecords,
        keyring: Keyring,
        retention_days: int,
        *,
        summary_delay_seconds: float = SUMMARY_DELAY_SECONDS,
    ) -> None:
        """Builds the ledger.

        Args:
            store: the read records (``store.read_records.RedisReadRecords`` over Redis).
            keyring: account pseudonyms of the account ids a call named.
            retention_days: how long the records are kept (``[reads] retention_days``).
            summary_delay_seconds: how long after its end a minute may be closed
                (``[reads] summary_delay_seconds``).
        """
        self._store = store
        self._keyring = keyring
        self._retention_days = retention_days
        self._summary_delay_ms = round(summary_delay_seconds * 1000)

    def pseudonym(self, tenant: str, account_id: str) -> str:
        """The account pseudonym of an account id (the ``acct:`` key's).

        Raises:
            InvalidArgument: on a malformed account id.
        """
        return self._keyring.pseudonym(
            tenant, "account", normalize_identifier(account_id, field="account_id")
        )

    async def record(
        self,
        tenant: str,
        reader: Reader,
        categories: Sequence[Category],
        account_ids: Sequence[str] = (),
        *,
        only_existing: bool = True,
    ) -> int:
        """Records a read of ``account_ids`` (none: a read that returned no account's data).

        Args:
            tenant: the reader's tenant.
            reader: who read, through which RPC.
            categories: the kinds of data the read returned.
            account_ids: the accounts whose data it returned.
            only_existing: count only accounts that have a record (an unknown one returned
                nothing of anyone); False when the caller knows data was returned.

        Returns:
            The number of accounts counted.

        Raises:
            InvalidArgument: on a malformed account id.
            StoreUnavailable: when Redis cannot be reached.
        """
        pseudonyms = [self.pseudonym(tenant, account_id) for account_id in account_ids]
        return await self._store.record(
            tenant, reader, categories, self._retention_days, pseudonyms, only_existing=only_existing
        )

    async def record_call(self, tenant: str, reader: Reader, categories: Sequence[Category]) -> None:
        """Records a read that returned no account's data (an audit proof, a tree head): a call.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        await self._store.record(tenant, reader, categories, self._retention_days, (), only_existing=True)

    async def close_minutes(self, tenant: str) -> int:
        """Writes the summary entry of every minute of reads of ``tenant`` that may be closed.

        Any number of workers may run this at once: each minute is closed by the first.

        Returns:
            The number of summaries this call wrote.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        # The last minute whose end is at least the delay past.
        last = (await self._store.now_ms() - self._summary_delay_ms) // MINUTE_MS - 1
        closed = 0
        for minute in await self._store.open_minutes(tenant, last):
            accounts = await self._store.minute_accounts(tenant, minute)
            answer = await self._store.close_minute(
                tenant, minute, len(accounts), accounts_digest(accounts), self._summary_delay_ms
            )
            closed += answer is MinuteClose.CLOSED
        return closed


log = logging.getLogger("idverify.reads")

CLOSE_INTERVAL_SECONDS = 15.0
"""How often each worker closes minutes by default: with the default delay, a summary is written
1-2.25 minutes after its minute."""


async def close_minutes_forever(
    ledger: ReadLedger,
    tenants: Callable[[], Awaitable[Collection[str]]],
    *,
    interval_seconds: float = CLOSE_INTERVAL_SECONDS,
) -> None:
    """Closes every tenant's minutes of reads now and then, in every worker; the first closes each."""
    while True:
        try:
            for tenant in sorted(await tenants()):
                await ledger.close_minutes(tenant)
        except StoreUnavailable:
            pass
        except Exception as error:  # noqa: BLE001 - the loop must outlive any one bad round
            log.warning("closing minutes of reads failed: %s", type(error).__name__)
        # Jitter keeps the workers from arriving together.
        await asyncio.sleep(interval_seconds * random.uniform(0.8, 1.2))  # noqa: S311 - not a secret

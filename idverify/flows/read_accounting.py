"""Who read which accounts: the per-hour distinct-count estimates, their keys and their readers.

Every RPC that returns verified data adds the account pseudonyms it read, and the identity refs
bound to them, to HyperLogLogs kept per tenant, hour, client and data category, with the
retention period as their TTL. The incident report counts from them; nothing in them is
personal data (the elements are the pseudonyms and refs that already name ``acct:`` and ``id:``
keys, and a HyperLogLog keeps only register maxima of their hashes).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from idverify.store.keys import TenantKeys

__all__ = [
    "HLL_STANDARD_ERROR",
    "HOUR_MS",
    "Category",
    "ReadKeys",
    "hour_of",
]

HOUR_MS = 3_600_000
"""An hour of the store clock: the HyperLogLogs' bucket."""

HLL_STANDARD_ERROR = 0.0081
"""Redis's HyperLogLog standard error (1.04 / sqrt(16384)); a count is within 3 of them ~99.7 %."""


class Category(StrEnum):
    """The kind of data a read returned (the ``<category>`` of a ``reads`` key)."""

    VERIFICATION = "verification"  # GetAccount, GetVerification, CheckIdentity
    IP_LOCATION = "ip_location"  # GetIpLocations
    CONSENT = "consent"  # ListConsents
    AUDIT = "audit"  # audit queries: the accounts whose entries were returned
    # ExportAccountData reads every category: it is counted in each of them.


def hour_of(store_ms: int) -> int:
    """The hour bucket of a store-clock time (epoch ms)."""
    return store_ms // HOUR_MS


class ReadKeys:
    """The ``reads`` keys of one tenant (``idverify/store/keys.py`` documents the schema)."""

    __slots__ = ("_keys",)

    def __init__(self, tenant: str) -> None:
        self._keys = TenantKeys(tenant)

    def accounts(self, hour: int, client_id: str, category: Category | str) -> str:
        """HyperLogLog of the account pseudonyms ``client_id`` read in ``hour``."""
        return self._keys.reads_accounts(hour, client_id, str(category))

    def identities(self, hour: int, client_id: str, category: Category | str) -> str:
        """HyperLogLog of the identity refs bound to the accounts ``client_id`` read in ``hour``."""
        return self._keys.reads_identities(hour, client_id, str(category))

    def who(self, hour: int) -> str:
        """The set of client ids that read in ``hour``."""
        return self._keys.reads_who(hour)

    def accounts_over(
        self, hours: Iterable[int], client_ids: Iterable[str], category: Category | str
    ) -> list[str]:
        """:meth:`accounts` of every hour and client given (PFCOUNT of them all is their union)."""
        clients = list(client_ids)
        return [self.accounts(hour, client, category) for hour in hours for client in clients]

    def identities_over(
        self, hours: Iterable[int], client_ids: Iterable[str], category: Category | str
    ) -> list[str]:
        """:meth:`identities` of every hour and client given."""
        clients = list(client_ids)
        return [self.identities(hour, client, category) for hour in hours for client in clients]

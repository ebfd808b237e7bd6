"""The read accounting's hourly keys of one tenant: what the ledger's scripts write, incidents count.

``flows.read_accounting`` describes what is recorded; ``idverify/store/keys.py`` documents the
schema. ``store.incident_reads`` counts from these keys.
"""

from __future__ import annotations

from collections.abc import Iterable

from idverify.flows.read_accounting import Category
from idverify.store.keys import TenantKeys

__all__ = ["ReadKeys"]


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

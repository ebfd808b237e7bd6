"""An in-memory ``DisplayNameStore``: the index of organization names without Redis.

It keeps what the scripts keep: per tenant, who holds each name hash (claim tags) and each
organization's own names with their kind (``v`` verified, ``a`` approved), the accounts' facts
as a verification stored them, each caller's calls in its window, and the ``names.approved``
entries. ``tests/unit/usecases/test_display_names_store.py`` holds it to the Redis one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from idverify.flows.display_names import (
    Approval,
    ChecksLimited,
    NameHit,
    NameLookup,
    NameQuery,
    NamesApproval,
)
from idverify.testing.unreachable import refuse_if_down

__all__ = ["ApprovalEntry", "MemoryDisplayNames", "StoredAccount"]

_RANK = {"low": 1, "substantial": 2, "high": 3}


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """The account fields the scripts read."""

    bound: bool
    kind: str
    assurance: str
    name_tag: str
    audit: str = ""  # the account's audit pseudonym, which its entries name


_UNBOUND = StoredAccount(bound=False, kind="", assurance="", name_tag="")


@dataclass(frozen=True, slots=True)
class ApprovalEntry:
    """One ``names.approved`` audit entry."""

    tenant: str
    outcome: str  # approved or refused
    reason: str
    approved_count: str
    fields: Mapping[str, str]


@dataclass
class MemoryDisplayNames:
    """The index and accounts (``put``, ``verify``); counters and entries kept as the scripts keep them."""

    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    down: bool = False
    accounts: dict[tuple[str, str], StoredAccount] = field(default_factory=dict)
    index: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (tenant, hash) -> tags
    own: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # (tenant, tag) -> kinds
    entries: list[ApprovalEntry] = field(default_factory=list)
    _calls: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # -> (count, ends)

    def put(self, tenant: str, account: str, stored: StoredAccount) -> None:
        """Stores an account's facts as a verification would."""
        self.accounts[(tenant, account)] = stored

    def verify(self, tenant: str, tag: str, hashes: list[str]) -> None:
        """Indexes an organization's verified names, as a verification establishing it does."""
        for name in hashes:
            self._add(tenant, tag, name, "v")

    def _add(self, tenant: str, tag: str, name: str, kind: str) -> None:
        holders = self.index.setdefault((tenant, name), [])
        if tag not in holders:
            holders.append(tag)
        self.own.setdefault((tenant, tag), {})[name] = kind

    def _remove(self, tenant: str, tag: str, name: str) -> None:
        holders = [owner for owner in self.index.get((tenant, name), []) if owner != tag]
        if holders:
            self.index[(tenant, name)] = holders
        else:
            self.index.pop((tenant, name), None)
        self.own.get((tenant, tag), {}).pop(name, None)

    def _reach(self) -> None:
        refuse_if_down(self.down)

    async def look_up(self, query: NameQuery) -> NameLookup | ChecksLimited:
        """As ``display_name.lua``: the call counted (refused ones too), then the reads."""
        self._reach()
        now = self.clock_ms()
        count, ends = self._calls.get((query.tenant, query.caller), (0, 0))
        if ends <= now:
            count, ends = 0, now + query.window_ms
        self._calls[(query.tenant, query.caller)] = (count + 1, ends)
        if count + 1 > query.limit:
            return ChecksLimited(retry_after_ms=ends - now)
        account = self.accounts.get((query.tenant, query.account), _UNBOUND)
        own = self.own.get((query.tenant, account.name_tag), {}) if account.name_tag else {}
        indexed = bool(own)
        hits = []
        for position, name in enumerate(query.hashes):
            holders = self.index.get((query.tenant, name))
            if holders:
                mine = own.get(name, "") if indexed and account.name_tag in holders else ""
                hits.append(NameHit(position, frozenset(holders), mine))
        return NameLookup(
            account.bound, account.kind, account.assurance, account.name_tag, indexed, tuple(hits)
        )

    async def approve(self, approval: NamesApproval) -> tuple[Approval, int]:
        """As ``approved_names.lua``: refusals first, then the approved names replaced."""
        self._reach()
        tenant = approval.tenant
        account = self.accounts.get((tenant, approval.account))
        if account is None or not account.bound:
            return Approval.NOT_BOUND, 0
        if account.kind != "organization":
            return Approval.NOT_ORGANIZATION, 0
        tag = account.name_tag
        own = self.own.get((tenant, tag), {})
        if (
            _RANK.get(account.assurance, 0) < _RANK.get(approval.claim_assurance.value, 99)
            or not tag
            or "v" not in own.values()  # its verified names, which its last account's cancellation drops
        ):
            return Approval.NOT_ESTABLISHED, 0
        fields = {**approval.audit, "account": account.audit}
        for name in (*approval.names, *approval.parts):
            holders = self.index.get((tenant, name))
            if holders and tag not in holders:
                self.entries.append(ApprovalEntry(tenant, "refused", "NAME_TAKEN", "", fields))
                return Approval.NAME_TAKEN, 0
        wanted = set(approval.names)
        for name, kind in list(own.items()):
            if kind == "a" and name not in wanted:
                self._remove(tenant, tag, name)
        approved = 0
        for name in wanted:
            if self.own.get((tenant, tag), {}).get(name) != "v":
                self._add(tenant, tag, name, "a")
                approved += 1
        self.entries.append(ApprovalEntry(tenant, "approved", "", str(approved), fields))
        return Approval.APPROVED, approved

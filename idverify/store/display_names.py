"""The index of organization names in Redis, as CheckDisplayName and SetApprovedNames see it.

``flows.display_names`` folds and hashes names and judges; this adapter runs
``display_name.lua`` (the caller's call counter, the account's facts, the hashes the index holds)
and ``approved_names.lua`` (an organization's approved names replaced, with the audit entry) and
turns their replies into typed records.
"""

from __future__ import annotations

import json

from idverify.flows.display_names import (
    Approval,
    ChecksLimited,
    NameHit,
    NameLookup,
    NameQuery,
    NamesApproval,
)
from idverify.store.connection import as_text
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["RedisDisplayNames"]


class RedisDisplayNames:
    """``flows.display_names.DisplayNameStore`` over one Redis client's scripts."""

    def __init__(self, scripts: Scripts) -> None:
        self._scripts = scripts

    async def look_up(self, query: NameQuery) -> NameLookup | ChecksLimited:
        """One run of ``display_name.lua``."""
        keys = TenantKeys(query.tenant)
        reply = await self._scripts.run(
            "display_name",
            [
                keys.account(query.account),
                keys.organization_names(),
                keys.rate_limit("display_checks", query.caller),
            ],
            [query.limit, query.window_ms, *query.hashes],
        )
        if as_text(reply[0]) == "LIMIT":
            return ChecksLimited(retry_after_ms=int(reply[1]))
        bound, kind, assurance, tag, indexed = (as_text(value) for value in reply[1:6])
        # Each hit is three values: its position among the hashes (from 1), owners, own kind.
        hits = tuple(
            NameHit(int(reply[at]) - 1, frozenset(as_text(reply[at + 1]).split()), as_text(reply[at + 2]))
            for at in range(6, len(reply), 3)
        )
        return NameLookup(bound == "1", kind, assurance, tag, indexed == "1", hits)

    async def approve(self, approval: NamesApproval) -> tuple[Approval, int]:
        """One run of ``approved_names.lua``."""
        keys = TenantKeys(approval.tenant)
        reply = await self._scripts.run(
            "approved_names",
            [keys.account(approval.account), keys.organization_names(), keys.audit_log()],
            [
                json.dumps(dict(approval.audit)),
                approval.claim_assurance.value,
                len(approval.names),
                *approval.names,
                *approval.parts,
            ],
        )
        outcome = Approval(as_text(reply[0]))
        return outcome, int(reply[1]) if outcome is Approval.APPROVED else 0

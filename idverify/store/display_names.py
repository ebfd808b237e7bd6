"""The index of organization names in Redis, as CheckDisplayName and SetApprovedNames see it.

``flows.display_names`` folds and hashes names and judges; this adapter runs the lookup (the
caller's call counter, the account's facts, the hashes the index holds) and the approval (an
organization's approved names replaced, with the audit entry) and turns their replies into typed
records. Each reads the account (its bucket) and then writes in the tenant's slot, given what it
read (docs/ARCHITECTURE.md, "3.5 The reads followed by one write"): on one node in one script
(``display_name.lua``, ``approved_names.lua``), step by step (a Cluster) as ``account_facts.lua``
and then ``display_name_index.lua`` or ``approved_names_index.lua``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Final

from idverify.flows.display_names import (
    Approval,
    ChecksLimited,
    NameHit,
    NameLookup,
    NameQuery,
    NamesApproval,
)
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import as_text
from idverify.store.keys import TenantKeys
from idverify.store.scripts import ChainStep, Scripts

__all__ = ["RedisDisplayNames"]

# The account's fields each tenant-wide step is given, last of its arguments and in this order:
# whether it is bound (its identity), its subject kind, its assurance and claim tag; an
# approval's entry names the account by its audit pseudonym.
_LOOKUP_FIELDS: Final = ("identity", "kind", "assurance", "name_tag")
_APPROVAL_FIELDS: Final = (*_LOOKUP_FIELDS, "audit")


class RedisDisplayNames:
    """``flows.display_names.DisplayNameStore`` over one Redis client's scripts.

    Args:
        steps: runs a call's read and its tenant-wide step; its ``step_by_step`` (the tests')
            runs them one by one on one node too, as on a Cluster.
        keys: names a tenant's keys; ``TenantKeys`` (every key in ``{t:T}``) unless a test of
            the bucket plan gives it a bucketed tenant's namer (``TenantKeys(T, layout)``).
    """

    def __init__(
        self,
        scripts: Scripts,
        *,
        steps: StepRunner | None = None,
        keys: Callable[[str], TenantKeys] = TenantKeys,
    ) -> None:
        self._scripts = scripts
        self._runner = steps or StepRunner(scripts)
        self._keys = keys

    async def look_up(self, query: NameQuery) -> NameLookup | ChecksLimited:
        """``display_name.lua`` on one node; step by step the account read, then ``display_name_index``."""
        keys = self._keys(query.tenant)
        counter = keys.rate_limit("display_checks", query.caller)
        args = [query.limit, query.window_ms]
        if self._runner.chained:
            account = keys.account(query.account)
            reply = await self._scripts.run(
                "display_name", [account, keys.organization_names(), counter], [*args, *query.hashes]
            )
        else:
            facts = await self._account_facts("display_name", keys, query.account, _LOOKUP_FIELDS)
            step = ChainStep(
                "display_name_index",
                [keys.organization_names(), counter, keys.organization_own_names(facts[3])],
                [*args, *query.hashes, *facts],
            )
            reply = await self._runner.run_one("display_name", step, 2)
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
        """``approved_names.lua`` on one node; step by step the account read, then ``approved_names_index``.

        Step by step, the approval is judged on the account as read: docs/ARCHITECTURE.md, §3.5,
        argues each change that can come between the read and the write.
        """
        keys = self._keys(approval.tenant)
        request = [json.dumps(dict(approval.audit)), approval.claim_assurance.value]
        names: list[str | int | bytes] = [len(approval.names), *approval.names, *approval.parts]
        if self._runner.chained:
            account = keys.account(approval.account)
            reply = await self._scripts.run(
                "approved_names",
                [account, keys.organization_names(), keys.audit_log()],
                [*request, *names],
            )
        else:
            facts = await self._account_facts("approved_names", keys, approval.account, _APPROVAL_FIELDS)
            step = ChainStep(
                "approved_names_index",
                [keys.organization_names(), keys.organization_own_names(facts[3]), keys.audit_log()],
                [*request, *names, *facts],
            )
            reply = await self._runner.run_one("approved_names", step, 2)
        outcome = Approval(as_text(reply[0]))
        return outcome, int(reply[1]) if outcome is Approval.APPROVED else 0

    async def _account_facts(
        self, sequence: str, keys: TenantKeys, account: str, fields: Sequence[str]
    ) -> list[str]:
        """The account's ``fields`` as its tenant-wide step takes them: bound ``1``, absent ``''``."""
        read: list[Any] = await self._runner.run_one(
            sequence, ChainStep("account_facts", [keys.account(account)], list(fields)), 1
        )
        identity, *rest = read[1:]
        return [
            "1" if identity is not None else "",
            *(as_text(value) if value is not None else "" for value in rest),
        ]

"""In-memory ``flows.account_export`` ports: the export's store, the audit log it proves, the views.

``MemoryAuditLog`` keeps each tenant's entries in a list and answers signed heads and RFC 6962
inclusion proofs computed from its leaves (``audit.merkle``), so a bundle built on it verifies
as one built over Redis does; its leaves are canonical JSON of the entry's fields, not the
stored entry format. ``MemoryAccountExports`` appends the export's own entry to that log, as the
``account_export`` script appends it to the tenant's log in Redis.
``tests/unit/usecases/test_account_export_contract.py`` checks the store against
``store.account_exports.RedisAccountExports``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import merkle
from idverify.audit.checkpoint import SignedHead, TreeHead, TreeHeadSigner
from idverify.audit.events import AuditEvent, EventType
from idverify.audit.query import EventFilter, QueryResult
from idverify.domain.consent import ConsentState
from idverify.domain.errors import InvalidArgument
from idverify.flows.account_export import AccountRecord, HeldRecords
from idverify.flows.accounts import AccountView
from idverify.flows.audit import InclusionProof, origin_of

__all__ = ["MemoryAccountExports", "MemoryAccountViews", "MemoryAuditLog", "MemoryConsentLists"]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class MemoryAuditLog:
    """Each tenant's audit entries, signed heads over them and their inclusion proofs."""

    def __init__(self, signing_key: Ed25519PrivateKey, now_ms: int | None = None) -> None:
        self._signer = TreeHeadSigner(signing_key)
        self.now = now_ms
        self.logs: dict[str, list[tuple[AuditEvent, bytes]]] = {}

    def _now(self) -> int:
        return self.now if self.now is not None else _wall_ms()

    def append(
        self,
        tenant: str,
        event_type: str,
        *,
        account: str = "",
        outcome: str = "",
        principal: str = "",
        request_id: str = "",
        trace_id: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> AuditEvent:
        """Appends an entry of ``event_type`` to the tenant's log, at the log's clock."""
        log = self.logs.setdefault(tenant, [])
        event = AuditEvent(
            index=len(log),
            time_ms=self._now(),
            type=event_type,
            account=account,
            outcome=outcome,
            principal=principal,
            request_id=request_id,
            trace_id=trace_id,
            attributes=MappingProxyType(dict(sorted((attributes or {}).items()))),
        )
        leaf = json.dumps(
            [event.index, event.time_ms, event.type, account, outcome, principal, dict(event.attributes)],
            sort_keys=True,
        ).encode()
        log.append((event, leaf))
        return event

    async def signed_head(self, tenant: str) -> SignedHead:
        """A signed head of every entry appended so far."""
        leaves = [merkle.leaf_hash(leaf) for _, leaf in self.logs.get(tenant, [])]
        head = TreeHead(origin_of(tenant), len(leaves), merkle.root(leaves), self._now())
        return self._signer.sign(head)

    async def entries(self, tenant: str, query: EventFilter) -> AsyncIterator[QueryResult]:
        """The entries matching ``query`` from its start index, in index order, up to its limit."""
        found = 0
        for event, leaf in self.logs.get(tenant, [])[query.start_index :]:
            if query.matches(event):
                yield QueryResult(event, leaf, merkle.leaf_hash(leaf))
                found += 1
                if found == query.limit:
                    return

    async def inclusion_proof(self, tenant: str, index: int, tree_size: int) -> InclusionProof:
        """The audit path of entry ``index`` in the tree of ``tree_size`` entries."""
        if index >= tree_size:
            raise InvalidArgument(
                f"index {index} is not in a tree of {tree_size} entries",
                reason="INDEX_NOT_IN_TREE",
                field="index",
            )
        leaves = [merkle.leaf_hash(leaf) for _, leaf in self.logs.get(tenant, [])][:tree_size]
        return InclusionProof(merkle.inclusion_proof(index, tree_size, leaves), leaves[index])


class MemoryAccountExports:
    """An ``AccountExportStore``: account records, identity records and verification expiries.

    ``verifications`` holds each account's verification expiries (ms), listed past their records'
    lifetime as Redis lists them; ``now`` is the store's clock (the wall clock when None).
    """

    def __init__(self, log: MemoryAuditLog, now_ms: int | None = None) -> None:
        self.log = log
        self.now = now_ms
        self.accounts: dict[tuple[str, str], AccountRecord] = {}
        self.identities: set[tuple[str, str]] = set()
        self.verifications: dict[tuple[str, str], list[int]] = {}

    async def account(self, tenant: str, account_ps: str) -> AccountRecord | None:
        """The account record of pseudonym ``account_ps``, or None when there is none."""
        return self.accounts.get((tenant, account_ps))

    async def append_export(
        self, tenant: str, request_fields: str, audit_pseudonym: str, start_index: int
    ) -> None:
        """Appends the ``account.exported`` entry to the tenant's log."""
        request = json.loads(request_fields)
        self.log.append(
            tenant,
            EventType.ACCOUNT_EXPORTED.value,
            account=audit_pseudonym,
            outcome="exported",
            principal=request.get("principal", ""),
            request_id=request.get("request_id", ""),
            trace_id=request.get("trace_id", ""),
            attributes={"start_index": str(start_index)},
        )

    async def held_records(self, tenant: str, account_ps: str, identity_ref: str) -> HeldRecords:
        """Whether identity ``identity_ref`` (none when "") and a live verification of the account exist."""
        now = self.now if self.now is not None else _wall_ms()
        return HeldRecords(
            identity=bool(identity_ref) and (tenant, identity_ref) in self.identities,
            verifications=any(due >= now for due in self.verifications.get((tenant, account_ps), [])),
        )


class MemoryAccountViews:
    """``AccountViews``: the views set in ``views``, an unknown account unverified."""

    def __init__(self) -> None:
        self.views: dict[tuple[str, str], AccountView] = {}

    async def get_account(self, tenant: str, account_id: str) -> AccountView:
        """The account's view."""
        unknown = AccountView(
            account_id=account_id,
            verified=False,
            verified_ms=0,
            method_id="",
            assurance="",
            subject_kind="",
            age_band="",
            location=None,
        )
        return self.views.get((tenant, account_id), unknown)


class MemoryConsentLists:
    """``ConsentLists``: the consents set in ``consents``, none by default."""

    def __init__(self) -> None:
        self.consents: dict[tuple[str, str], list[ConsentState]] = {}

    async def list(self, tenant: str, account_id: str) -> list[ConsentState]:
        """The account's consents."""
        return list(self.consents.get((tenant, account_id), []))

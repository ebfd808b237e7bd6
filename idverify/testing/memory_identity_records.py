"""An in-memory ``flows.identity_mover.IdentityRecords``: identity records as plain values.

A record is its fields (``name_binding``, ``pepper``; ``moved_to`` and ``binding_was`` for a
forwarding record) and its bound accounts; each account's ``identity`` reference, the pending
erasures and the verifications' fields sit beside them, as the move's steps
(``store.identity_move_steps``) and ``reseal_verification.lua`` see them. A forwarding record
does not expire here. ``tests/unit/usecases/test_identity_records_contract.py`` holds it and
``store.identity_records.RedisIdentityRecords`` to the same assertions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from idverify.flows.identity_mover import HeldIdentity, IdentityLocation, IdentityMove
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryIdentityRecords"]


class MemoryIdentityRecords:
    """Identity records of every tenant, by ``(tenant, ref)``.

    ``identities``, ``accounts`` (bound accounts by record), ``account_identity`` (an account's
    ``identity`` field), ``erasures_due`` (``(tenant, "i:" + ref)`` to its due time) and
    ``verifications`` (fields by ``(tenant, id)``) are open for a test to arrange and inspect;
    ``calls`` counts the calls made (each a round trip or more over Redis); ``down`` makes every call raise
    StoreUnavailable, as an unreachable Redis would.
    """

    def __init__(self) -> None:
        self.identities: dict[tuple[str, str], dict[str, str]] = {}
        self.accounts: dict[tuple[str, str], set[str]] = {}
        self.account_identity: dict[tuple[str, str], str] = {}
        self.erasures_due: dict[tuple[str, str], int] = {}
        self.verifications: dict[tuple[str, str], dict[str, str]] = {}
        self.calls = 0
        self.down = False

    def _reach(self) -> None:
        refuse_if_down(self.down)
        self.calls += 1

    def keys(self, tenant: str, refs: Sequence[str]) -> tuple[str, ...]:
        """Names of the test's own making: ``<tenant>/<ref>``."""
        return tuple(f"{tenant}/{ref}" for ref in refs)

    async def bindings(self, tenant: str, refs: Sequence[str]) -> list[str | None]:
        """Each record's ``name_binding``."""
        self._reach()
        return [self.identities.get((tenant, ref), {}).get("name_binding") for ref in refs]

    async def held(self, tenant: str, ref: str) -> HeldIdentity | None:
        """The record's binding and accounts."""
        self._reach()
        binding = self.identities.get((tenant, ref), {}).get("name_binding")
        if binding is None:
            return None
        return HeldIdentity(binding, tuple(sorted(self.accounts.get((tenant, ref), set()))))

    def _refusal(self, tenant: str, move: IdentityMove) -> str | None:
        """Why the move's first step (``move_out.lua``) would not move: GONE, SAME, RETRY; None: it would."""
        record = self.identities.get((tenant, move.old_ref))
        if record is None or "moved_to" in record:
            return "GONE"
        if move.old_ref == move.new_ref:
            return "SAME"
        members = self.accounts.get((tenant, move.old_ref), set())
        if record.get("name_binding", "") != move.read.binding or members != set(move.read.accounts):
            return "RETRY"
        return None

    async def move(self, tenant: str, move: IdentityMove) -> str:
        """Moves as the move's steps do, all of them."""
        self._reach()
        refusal = self._refusal(tenant, move)
        if refusal is not None:
            return refusal
        old, new = (tenant, move.old_ref), (tenant, move.new_ref)
        record = self.identities.pop(old)
        members = self.accounts.pop(old, set())
        if "moved_to" in self.identities.get(new, {}):
            del self.identities[new]
        if new not in self.identities:
            self.identities[new] = dict(record, name_binding=move.binding)
            if move.pepper_phc:
                self.identities[new]["pepper"] = move.pepper_phc
        if members:
            self.accounts.setdefault(new, set()).update(members)
        for member in members:
            if self.account_identity.get((tenant, member)) == move.old_ref:
                self.account_identity[(tenant, member)] = move.new_ref
        due = self.erasures_due.pop((tenant, f"i:{move.old_ref}"), None)
        if due is not None:
            self.erasures_due[(tenant, f"i:{move.new_ref}")] = due
        if move.forward_ms > 0:
            self.identities[old] = {"moved_to": move.new_ref, "binding_was": record.get("name_binding", "")}
        return "OK"

    async def location(self, tenant: str, ref: str) -> IdentityLocation:
        """What is stored under ``ref``."""
        self._reach()
        record = self.identities.get((tenant, ref), {})
        return IdentityLocation(
            record.get("moved_to"), record.get("binding_was", ""), bound="name_binding" in record
        )

    async def reseal_verification(
        self, tenant: str, verification_id: str, changes: Mapping[str, tuple[str, str]]
    ) -> bool:
        """Replaces fields as ``reseal_verification.lua`` does."""
        self._reach()
        record = self.verifications.get((tenant, verification_id))
        if record is None or any(record.get(name, "") != old for name, (old, _) in changes.items()):
            return False
        record.update({name: new for name, (_, new) in changes.items()})
        return True

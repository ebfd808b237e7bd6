"""Moving an identity record to another key ref, with everything that points at it.

Identity records are named by their sealed index, so re-sealing one renames it: the record, its
account set, every bound account's reference and a pending erasure move together in one script
(``reseal_identity.lua``). The same move serves three callers: ``idverify keys reindex`` (every
record, resumable: flows/reindex.py), a verification that meets an identity under an older key
(it moves it on the spot), and the lazy pepper migration of a presented identity (both
flows/identity_lookup.py).

The records are read and written through :class:`IdentityRecords`, the port declared here, in
typed values; ``store.identity_records.RedisIdentityRecords`` implements it (the keys, the reads,
``reseal_identity.lua`` and ``reseal_verification.lua`` and their replies).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from idverify.domain.errors import StoreUnavailable
from idverify.privacy.sealing import Sealer, SealError, associated_data, sealed_from_text, sealed_to_text

__all__ = [
    "IDENTITY_INDEX",
    "NAME_BINDING",
    "HeldIdentity",
    "IdentityLocation",
    "IdentityMove",
    "IdentityMover",
    "IdentityRecords",
]

IDENTITY_INDEX: Final = "identity-index"
NAME_BINDING: Final = "name-binding"
_ATTEMPTS: Final = 5
# Forwarding records chain at most once per rotation; more hops than this means a loop.
_MAX_HOPS: Final = 6


@dataclass(frozen=True, slots=True)
class HeldIdentity:
    """An identity record as a move reads it: its sealed name binding and its bound accounts."""

    binding: str
    accounts: tuple[str, ...]  # account pseudonyms, sorted


@dataclass(frozen=True, slots=True)
class IdentityMove:
    """One record moved from ``old_ref`` to ``new_ref``, if it still holds what was read."""

    old_ref: str
    new_ref: str
    binding: str  # the sealed name binding it gets
    pepper_phc: str  # its new index parameters; empty keeps them
    forward_ms: int  # how long a forwarding record stays at ``old_ref`` (0: none)
    read: HeldIdentity  # the record as read before the move


@dataclass(frozen=True, slots=True)
class IdentityLocation:
    """What is stored under a ref: a forwarding record's destination, or whether a record is there."""

    moved_to: str | None  # where a pepper move took the record (a forwarding record)
    binding_was: str  # a forwarding record's binding before the move (sealed; may be empty)
    bound: bool  # a record with a name binding is there


class IdentityRecords(Protocol):
    """Identity records by tenant and key ref, and the verifications pointing at them.

    Every method but :meth:`keys` may raise StoreUnavailable.
    """

    def keys(self, tenant: str, refs: Sequence[str]) -> tuple[str, ...]:
        """The names the records are stored under, for a caller that reads them in a step of its own."""
        ...

    async def bindings(self, tenant: str, refs: Sequence[str]) -> list[str | None]:
        """Each ref's sealed name binding (None: no record), read together in one round trip."""
        ...

    async def held(self, tenant: str, ref: str) -> HeldIdentity | None:
        """The record's name binding and bound accounts; None when no record is there."""
        ...

    async def move(self, tenant: str, move: IdentityMove) -> str:
        """Moves the record with its accounts, their references and a pending erasure.

        'OK'; 'SAME' (the same ref); 'GONE' (no record, or a forwarding one); 'RETRY' (it
        changed since it was read).
        """
        ...

    async def location(self, tenant: str, ref: str) -> IdentityLocation:
        """What is stored under ``ref``."""
        ...

    async def reseal_verification(
        self, tenant: str, verification_id: str, changes: Mapping[str, tuple[str, str]]
    ) -> bool:
        """Sets each field to its new value if all still hold the value read (field: (read, new)).

        True when written; False when the verification is gone or changed.
        """
        ...


class IdentityMover:
    """Moves identity records between key refs, with everything that points at them."""

    def __init__(self, records: IdentityRecords, sealer: Sealer) -> None:
        self._records = records
        self._sealer = sealer

    @property
    def records(self) -> IdentityRecords:
        """The identity records it moves (which a lookup reads too)."""
        return self._records

    @property
    def write_version(self) -> str:
        """The wrapping-key version records move to."""
        return self._sealer.current_version

    def resealed(self, tenant: str, text: str, purpose: str, *context: str) -> str:
        """``text`` (a sealed value) under the current wrapping key; unchanged when it is, or empty.

        Raises:
            SealError: the value cannot be opened (unknown or retired version, tampered).
        """
        if not text:
            return text
        sealed = sealed_from_text(text)
        return sealed_to_text(
            self._sealer.reseal(sealed, associated=associated_data(tenant, purpose, *context))
        )

    def current_ref(self, tenant: str, ref: str) -> str:
        """The key ref of the same identity index under the current wrapping key.

        Raises:
            SealError: the ref cannot be opened.
        """
        return self.resealed(tenant, ref, IDENTITY_INDEX)

    def open_binding(self, tenant: str, text: str) -> bytes | None:
        """A stored name binding, opened; None when empty or unreadable."""
        if not text:
            return None
        try:
            return self._sealer.unseal(
                sealed_from_text(text), associated=associated_data(tenant, NAME_BINDING)
            )
        except SealError:
            return None

    async def move(
        self,
        tenant: str,
        old_ref: str,
        new_ref: str,
        *,
        binding: bytes | None = None,
        pepper_phc: str = "",
        forward_ms: int = 0,
    ) -> str:
        """Moves the identity at ``old_ref`` to ``new_ref``: 'OK', 'SAME', or 'GONE' (nothing there).

        Args:
            tenant: the identity's tenant.
            old_ref: where it is.
            new_ref: where it goes.
            binding: its new name binding (a pepper migration); None re-seals the stored one.
            pepper_phc: its new index parameters (a pepper migration); empty keeps them.
            forward_ms: how long a forwarding record stays at ``old_ref`` (0: none).

        Raises:
            SealError: the stored name binding cannot be opened to re-seal it.
            StoreUnavailable: Redis is down, or the record kept changing under us.
        """
        for _ in range(_ATTEMPTS):
            held = await self._records.held(tenant, old_ref)
            if held is None:
                return "GONE"
            if binding is None:
                new_binding = self.resealed(tenant, held.binding, NAME_BINDING)
            else:
                new_binding = sealed_to_text(
                    self._sealer.seal(binding, associated=associated_data(tenant, NAME_BINDING))
                )
            outcome = await self._records.move(
                tenant, IdentityMove(old_ref, new_ref, new_binding, pepper_phc, forward_ms, held)
            )
            if outcome != "RETRY":
                return outcome
        raise StoreUnavailable("an identity record kept changing while it moved; retry", reason="CONTENDED")

    async def follow(self, tenant: str, ref: str) -> tuple[str, list[bytes]]:
        """Where the identity looked up as ``ref`` lives now, moving it to the current key on the way.

        Returns the current ref and the (opened) name bindings it had before each pepper move,
        which a verification that matched the old binding may carry over.

        Raises:
            StoreUnavailable: Redis is down.
        """
        before: list[bytes] = []
        for _ in range(_MAX_HOPS):
            location = await self._records.location(tenant, ref)
            if location.moved_to is not None:
                opened = self.open_binding(tenant, location.binding_was)
                if opened is not None:
                    before.append(opened)
                ref = location.moved_to
                continue
            try:
                current = self.current_ref(tenant, ref)
            except SealError:
                return ref, before
            if current == ref:
                return ref, before
            if location.bound:
                with contextlib.suppress(SealError):
                    await self.move(tenant, ref, current)
            ref = current
        return ref, before

    async def refresh_verification(
        self, tenant: str, verification_id: str, record: Mapping[str, str]
    ) -> bool:
        """Points a verification at where its identity lives now and re-seals its bindings.

        A name the verification saw match the identity's binding before a pepper move still
        counts as seen. True when something changed (and was written).

        Raises:
            StoreUnavailable: Redis is down.
        """
        old_ref = record.get("identity", "")
        if not old_ref:
            return False
        ref, before = await self.follow(tenant, old_ref)
        [stored] = await self._records.bindings(tenant, [ref])
        ours, seen = record.get("name_binding", ""), record.get("name_binding_seen", "")
        new_seen = ""
        if stored is not None and seen:
            opened = {self.open_binding(tenant, ours), self.open_binding(tenant, seen)} - {None}
            new_seen = stored if opened & set(before) else self._quiet_reseal(tenant, seen)
        changes = {
            name: (old, new)
            for name, old, new in (
                ("identity", old_ref, ref),
                ("name_binding", ours, self._quiet_reseal(tenant, ours)),
                ("name_binding_seen", seen, new_seen),
            )
            if old != new
        }
        if not changes:
            return False
        return await self._records.reseal_verification(tenant, verification_id, changes)

    def _quiet_reseal(self, tenant: str, text: str) -> str:
        try:
            return self.resealed(tenant, text, NAME_BINDING)
        except SealError:
            return text

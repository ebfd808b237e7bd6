"""Moving an identity record to another key ref, with everything that points at it.

Identity records are named by their sealed index, so re-sealing one renames it: the record, its
account set, every bound account's reference and a pending erasure move together (one script on
one node; on a Cluster, steps that a repairer finishes: ``store.identity_move_steps``). The same
move serves three callers: ``idverify keys reindex`` (every record, resumable: flows/reindex.py),
a verification that meets an identity under an older key (it moves it on the spot), and the lazy
pepper migration of a presented identity (both flows/identity_lookup.py). While a move is in
flight, another move of the identity answers MOVING and a binding of it RETRY: both wait
(:func:`wait_for_move`) within the call's deadline.

The records are read and written through :class:`IdentityRecords`, the port declared here, in
typed values; ``store.identity_records.RedisIdentityRecords`` implements it (the keys, the reads,
the move's steps and ``reseal_verification.lua`` and their replies).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from idverify.domain.errors import StoreUnavailable
from idverify.flows.context import seconds_left
from idverify.privacy.sealing import Sealer, SealError, associated_data, sealed_from_text, sealed_to_text

__all__ = [
    "IDENTITY_INDEX",
    "MOVE_PAUSE_SECONDS",
    "MOVE_WAIT_SECONDS",
    "NAME_BINDING",
    "HeldIdentity",
    "IdentityLocation",
    "IdentityMove",
    "IdentityMover",
    "IdentityRecords",
    "move_wait_deadline",
    "wait_for_move",
]

IDENTITY_INDEX: Final = "identity-index"
NAME_BINDING: Final = "name-binding"
_ATTEMPTS: Final = 5
# Forwarding records chain at most once per rotation; more hops than this means a loop.
_MAX_HOPS: Final = 6
MOVE_PAUSE_SECONDS: Final = 0.01
"""How long a write waits before trying again an identity whose move is in flight (a few round trips)."""
MOVE_WAIT_SECONDS: Final = 5.0
"""How long, outside a call (its deadline otherwise), a move in flight is waited for before UNAVAILABLE.

A move left half done by a dead worker is finished by the repairer, past its own deadline."""


def move_wait_deadline() -> float:
    """The event loop's time after which a write stops waiting for a move in flight."""
    return asyncio.get_running_loop().time() + seconds_left(MOVE_WAIT_SECONDS)


async def wait_for_move(deadline: float) -> None:
    """Pauses before a write tries an identity again whose move is in flight.

    Raises:
        StoreUnavailable: the deadline passed (the move is stuck until the repairer finishes it).
    """
    if asyncio.get_running_loop().time() >= deadline:
        raise StoreUnavailable("an identity is being moved; retry", reason="CONTENDED")
    await asyncio.sleep(MOVE_PAUSE_SECONDS)


@dataclass(frozen=True, slots=True)
class HeldIdentity:
    """An identity record as a move reads it: its sealed name binding and its bound accounts.

    ``stored``: the whole record as the store read it, in the store's own form, which its move
    holds the record to (empty where the store needs none).
    """

    binding: str
    accounts: tuple[str, ...]  # account pseudonyms, sorted
    stored: str = field(default="", compare=False, repr=False)


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
        changed since it was read); 'MOVING' (another move of it is in flight).
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
            StoreUnavailable: Redis is down, the record kept changing under us, or another move of
                it stayed in flight past the deadline.
        """
        deadline = move_wait_deadline()
        attempts = 0
        while attempts < _ATTEMPTS:
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
            if outcome == "MOVING":
                await wait_for_move(deadline)
                continue
            if outcome != "RETRY":
                return outcome
            attempts += 1
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
        changes = await self.repointing(tenant, record)
        if not changes:
            return False
        return await self._records.reseal_verification(tenant, verification_id, changes)

    async def repointing(self, tenant: str, record: Mapping[str, str]) -> dict[str, tuple[str, str]]:
        """What :meth:`refresh_verification` would write: each changed field as (read, new).

        For a writer that must change more in the same script (a binding in flight points its
        intent along: ``store.binding_steps``). Empty when nothing changed.

        Raises:
            StoreUnavailable: Redis is down.
        """
        old_ref = record.get("identity", "")
        if not old_ref:
            return {}
        ref, before = await self.follow(tenant, old_ref)
        [stored] = await self._records.bindings(tenant, [ref])
        ours, seen = record.get("name_binding", ""), record.get("name_binding_seen", "")
        new_seen = ""
        if stored is not None and seen:
            opened = {self.open_binding(tenant, ours), self.open_binding(tenant, seen)} - {None}
            new_seen = stored if opened & set(before) else self._quiet_reseal(tenant, seen)
        return {
            name: (old, new)
            for name, old, new in (
                ("identity", old_ref, ref),
                ("name_binding", ours, self._quiet_reseal(tenant, ours)),
                ("name_binding_seen", seen, new_seen),
            )
            if old != new
        }

    def _quiet_reseal(self, tenant: str, text: str) -> str:
        try:
            return self.resealed(tenant, text, NAME_BINDING)
        except SealError:
            return text

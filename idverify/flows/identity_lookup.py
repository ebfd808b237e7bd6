"""Finding a presented identity's record under any readable pepper and wrapping key.

A verification looks its identity up here (flows/verification/commit.py) and, when the record is
under an older pepper or wrapping key and the presented name matches, moves it to the current
ones on the spot (through flows/identity_mover.py). The records' name bindings are read through
the mover's port (``flows.identity_mover.IdentityRecords``), in one round trip.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from idverify.domain.documents import Document
from idverify.domain.errors import StoreUnavailable
from idverify.flows.identity_mover import IDENTITY_INDEX, NAME_BINDING, IdentityMover
from idverify.observability import telemetry
from idverify.privacy.identity_index import IdentityIndexer, IndexValue
from idverify.privacy.keyring import Keyring
from idverify.privacy.name_binding import name_binding
from idverify.privacy.sealing import Sealer, SealError, associated_data, sealed_to_text

__all__ = ["IdentityLookup", "IdentityProbe", "ResolvedIdentity"]

_ATTEMPTS: Final = 5
# A forwarding record outlives the verifications started before its move by this much.
_FORWARD_MARGIN_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class ResolvedIdentity:
    """Where a presented identity's record is, and the name-binding facts a verification stores.

    Attributes:
        ref: the record's key ref (under the current wrapping key and pepper unless ``mismatch``).
        binding: the presented name's binding, sealed.
        seen: the stored binding when the presented name matched it; empty otherwise.
        phc: the index parameters the record is (or will be) under.
        exists: whether a record exists.
        mismatch: a record exists and the presented name does not match its binding.
        indexes: the index under every pepper version, current first (to look up again for free).
    """

    ref: str
    binding: str
    seen: str
    phc: str
    exists: bool
    mismatch: bool
    indexes: tuple[IndexValue, ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class IdentityProbe:
    """The keys an identity's record may be under, one per readable pepper and wrapping key.

    Attributes:
        candidates: (index, ref) of each key, in the order of ``keys``.
        target: the ref under the current pepper and wrapping key.
        keys: the names the records are stored under (``IdentityRecords.keys``), for a caller
            that reads their name bindings in a step of its own (a start's chain).
        indexes: the index under every pepper version, current first.
    """

    candidates: tuple[tuple[IndexValue, str], ...]
    target: str
    keys: tuple[str, ...]
    indexes: tuple[IndexValue, ...] = field(repr=False)


class IdentityLookup:
    """Finds a presented identity's record under any readable pepper and wrapping key.

    A record found under an older pepper or wrapping key moves to the current ones on the spot
    when the presented name matches its binding: this is the only moment the index can be
    recomputed under a new pepper (the document is never stored). While several peppers are
    readable, a lookup costs one argon2id per pepper: keep that window short.
    """

    def __init__(
        self, keyring: Keyring, sealer: Sealer, indexer: IdentityIndexer, mover: IdentityMover
    ) -> None:
        self._keyring = keyring
        self._sealer = sealer
        self._indexer = indexer
        self._mover = mover

    def forward_ms(self, session_ttl_seconds: int) -> int:
        """How long a forwarding record outlives a pepper move: the verifications started before it."""
        return session_ttl_seconds * 1000 + _FORWARD_MARGIN_MS

    async def indexes(self, tenant: str, document: Document) -> tuple[IndexValue, ...]:
        """The document's index under every readable pepper, current first (traced and timed)."""
        with telemetry.leaf_span("argon2id.index"), telemetry.timed(telemetry.instruments.argon2_duration):
            found = await self._indexer.candidates_async(tenant, document.document_type, document.number)
        return tuple(found)

    async def resolve(
        self,
        tenant: str,
        document: Document,
        name: str,
        *,
        forward_ms: int,
        indexes: tuple[IndexValue, ...] = (),
    ) -> ResolvedIdentity:
        """Looks the identity up, moving its record to the current pepper and key if the name matches.

        Raises:
            StoreUnavailable: Redis is down.
        """
        indexes = indexes or await self.indexes(tenant, document)
        for _ in range(_ATTEMPTS):
            probe = self.probe(tenant, indexes)
            stored_bindings = await self._mover.records.bindings(tenant, [ref for _, ref in probe.candidates])
            found = self.settle(tenant, probe, name, stored_bindings)
            if found is not None:
                return found
            await self.move(tenant, probe, name, stored_bindings, forward_ms=forward_ms)
        raise StoreUnavailable(
            "an identity record kept moving while it was looked up; retry", reason="CONTENDED"
        )

    def probe(self, tenant: str, indexes: tuple[IndexValue, ...]) -> IdentityProbe:
        """Where the identity's record may be: read each key's ``name_binding``, then :meth:`settle`."""
        identity_ad = associated_data(tenant, IDENTITY_INDEX)
        candidates = tuple(
            (index, sealed_to_text(sealed))
            for index in indexes
            for sealed in self._sealer.seal_candidates(index.digest, associated=identity_ad)
        )
        target = sealed_to_text(self._sealer.seal(indexes[0].digest, associated=identity_ad))
        keys = self._mover.records.keys(tenant, [ref for _, ref in candidates])
        return IdentityProbe(candidates, target, keys, indexes)

    def settle(
        self, tenant: str, probe: IdentityProbe, name: str, stored_bindings: Sequence[bytes | str | None]
    ) -> ResolvedIdentity | None:
        """The identity from the probe's reads; None when its record must move first (:meth:`move`)."""
        indexes, current = probe.indexes, probe.indexes[0]
        found = next(
            (
                (index, ref, stored.decode() if isinstance(stored, bytes) else stored)
                for (index, ref), stored in zip(probe.candidates, stored_bindings, strict=True)
                if stored is not None
            ),
            None,
        )
        if found is None:
            binding = self._binding(tenant, current, name)
            return ResolvedIdentity(
                probe.target,
                self._sealed(tenant, binding),
                "",
                current.phc,
                exists=False,
                mismatch=False,
                indexes=indexes,
            )
        index, ref, stored = found
        binding = self._binding(tenant, index, name)
        if not hmac.compare_digest(self._mover.open_binding(tenant, stored) or b"", binding):
            return ResolvedIdentity(
                ref,
                self._sealed(tenant, binding),
                "",
                index.phc,
                exists=True,
                mismatch=True,
                indexes=indexes,
            )
        if ref == probe.target:
            return ResolvedIdentity(
                ref,
                self._sealed(tenant, binding),
                stored,
                index.phc,
                exists=True,
                mismatch=False,
                indexes=indexes,
            )
        return None

    async def move(
        self,
        tenant: str,
        probe: IdentityProbe,
        name: str,
        stored_bindings: Sequence[bytes | str | None],
        *,
        forward_ms: int,
    ) -> None:
        """Moves the record the probe found under an older pepper or key to the current ones."""
        current = probe.indexes[0]
        index, ref = next(
            candidate
            for candidate, stored in zip(probe.candidates, stored_bindings, strict=True)
            if stored is not None
        )
        new_pepper = index.pepper_version != current.pepper_version
        new_binding = self._binding(tenant, current, name) if new_pepper else None
        with contextlib.suppress(SealError):
            await self._mover.move(
                tenant,
                ref,
                probe.target,
                binding=new_binding,
                pepper_phc=current.phc if new_pepper else "",
                forward_ms=forward_ms if new_pepper else 0,
            )

    def _binding(self, tenant: str, index: IndexValue, name: str) -> bytes:
        return name_binding(self._keyring, tenant, index.digest, name, pepper_version=index.pepper_version)

    def _sealed(self, tenant: str, binding: bytes) -> str:
        return sealed_to_text(self._sealer.seal(binding, associated=associated_data(tenant, NAME_BINDING)))

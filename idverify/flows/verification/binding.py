"""Points a stored verification at where its identity lives now, before a write that may bind it."""

from __future__ import annotations

from dataclasses import dataclass

from idverify.flows.verification.identities import Identities
from idverify.flows.verification.port import Point
from idverify.flows.verification.views import VerificationReader
from idverify.privacy.sealing import Sealer, text_version


@dataclass(frozen=True, slots=True)
class BindingPoints:
    """The :data:`Point` a write to a stored verification is given (``submit``, ``guardian``)."""

    identities: Identities
    sealer: Sealer
    reader: VerificationReader

    def point(self, tenant: str, verification_id: str, record: dict[str, str]) -> Point:
        """Points ``record`` at where its identity lives now, before each attempt of the write.

        Identities move when keys rotate or a new pepper is adopted. A reference under an older
        wrapping key is moved on before the write; a move that races it makes the store try again
        after this pointed the record anew.
        """

        async def point(moved: bool) -> None:
            if moved:
                await self._refresh(tenant, verification_id, record)
            identity = record.get("identity", "")
            if identity and text_version(identity) != self.sealer.current_version:
                await self._refresh(tenant, verification_id, record)

        return point

    async def _refresh(self, tenant: str, verification_id: str, record: dict[str, str]) -> None:
        """Moves the verification's identity reference on, and reads the record as it is now."""
        if await self.identities.refresh_verification(tenant, verification_id, record):
            fresh = await self.reader.record(tenant, verification_id)
            record.clear()
            record.update(fresh)

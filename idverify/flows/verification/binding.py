"""Points a stored verification at where its identity lives now, before a write that may bind it."""

from __future__ import annotations

from dataclasses import dataclass

from idverify.flows.verification.identities import Identities
from idverify.flows.verification.port import Point
from idverify.flows.verification.record import VerificationRecord
from idverify.flows.verification.views import VerificationReader
from idverify.privacy.sealing import Sealer, text_version


@dataclass(frozen=True, slots=True)
class BindingPoints:
    """The :data:`Point` a write to a stored verification is given (``submit``, ``guardian``)."""

    identities: Identities
    sealer: Sealer
    reader: VerificationReader

    def point(self, tenant: str, verification_id: str, record: VerificationRecord) -> Point:
        """Answers ``record`` pointed at where its identity lives now, before each attempt of the write.

        Identities move when keys rotate or a new pepper is adopted. A reference under an older
        wrapping key is moved on before the write; a move that races it makes the store try again
        with the record this read anew.
        """
        current = record

        async def point(moved: bool) -> VerificationRecord:
            nonlocal current
            if moved:
                current = await self._refreshed(tenant, verification_id, current)
            if not self.in_place(current):
                current = await self._refreshed(tenant, verification_id, current)
            return current

        return point

    def in_place(self, record: VerificationRecord) -> bool:
        """True when ``record``'s identity reference is under the current wrapping key.

        The point's first answer is then ``record`` itself, with nothing read or moved.
        """
        return not record.identity or text_version(record.identity) == self.sealer.current_version

    async def _refreshed(
        self, tenant: str, verification_id: str, record: VerificationRecord
    ) -> VerificationRecord:
        """Moves the verification's identity reference on, and reads the record as it is now.

        A verification gone meanwhile keeps the record as it was: the write finds it gone.
        """
        if await self.identities.refresh_verification(tenant, verification_id, record):
            fresh = await self.reader.record(tenant, verification_id)
            if fresh is not None:
                return fresh
        return record

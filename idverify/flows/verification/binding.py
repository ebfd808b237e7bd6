"""Runs a script that may bind a verification's identity, with the retry a moved identity needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from idverify.domain.errors import StoreUnavailable
from idverify.flows.consent import ConsentFlow
from idverify.flows.context import FlowDeps
from idverify.flows.identity_mover import IdentityMover
from idverify.flows.verification.views import VerificationReader
from idverify.privacy.sealing import text_version
from idverify.store.scripts import decode_flat


@dataclass(frozen=True, slots=True)
class BindingScripts:
    """Points a verification at where its identity lives now, then runs the binding script."""

    deps: FlowDeps
    consent: ConsentFlow
    mover: IdentityMover
    reader: VerificationReader

    async def run(
        self,
        name: str,
        tenant: str,
        verification_id: str,
        record: dict[str, str],
        *,
        keys_for: Callable[[Mapping[str, str]], list[str]],
        args: Sequence[str | int | bytes],
        first: Callable[[list[str], Sequence[str | int | bytes]], Awaitable[Any]] | None = None,
    ) -> Any:
        """Runs a script that may bind the verification's identity, pointed at where it lives now.

        Identities move when keys rotate or a new pepper is adopted. A reference under an older
        wrapping key is moved on before the script runs; a move that races the script makes it
        answer MOVED instead of binding a stale reference, and the verification is pointed anew.

        ``first`` runs the first attempt in place of the script alone, given its keys and
        arguments (the answer's count joins it, ``AnswerFlow.submit``); it may refuse.
        """
        for _ in range(MOVE_ATTEMPTS):
            identity = record.get("identity", "")
            if identity and text_version(identity) != self.deps.sealer.current_version:
                await self._refresh(tenant, verification_id, record)
            if first is not None:
                result = await first(keys_for(record), args)
                first = None
            else:
                result = await self.deps.scripts.run(name, keys_for(record), args)
            # The submit script makes the consents lasting itself, in the same step.
            if name != "submit" and result[0] == b"OK" and decode_flat(result[1]).get("status") == "VERIFIED":
                await self.consent.keep(tenant, record["acct"])
            if result[0] != b"MOVED":
                return result
            await self._refresh(tenant, verification_id, record)
        raise StoreUnavailable("the identity kept moving; retry", reason="CONTENDED")

    async def _refresh(self, tenant: str, verification_id: str, record: dict[str, str]) -> None:
        """Moves the verification's identity reference on, and reads the record as it is now."""
        if await self.mover.refresh_verification(tenant, verification_id, record):
            fresh = await self.reader.record(tenant, verification_id)
            record.clear()
            record.update(fresh)


# A verification whose identity keeps moving (key rotation racing it) gives up after this many.
MOVE_ATTEMPTS = 3

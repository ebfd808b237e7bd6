"""Identity records in Redis, for ``flows.identity_mover`` and ``flows.identity_lookup``.

A record is the hash ``{t}:id:<ref>`` (its sealed ``name_binding``, ``pepper``, and for a
forwarding record ``moved_to`` and ``binding_was``, and each bound account's claim tag as
``m:<account pseudonym>``) with its set of bound accounts ``{t}:idacc:<ref>``;
``reseal_identity.lua`` moves it with its accounts, their tags, their references and a pending
erasure, and ``reseal_verification.lua`` points a verification at it again. The
flows decide what moves where; this adapter names the keys, reads, runs the scripts and decodes
their replies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from idverify.flows.identity_mover import HeldIdentity, IdentityLocation, IdentityMove
from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripted_store import ScriptedStore

__all__ = ["RedisIdentityRecords"]


class RedisIdentityRecords(ScriptedStore):
    """``flows.identity_mover.IdentityRecords`` over one Redis client and its scripts.

    Every method but :meth:`keys` may raise StoreUnavailable when Redis cannot be reached.
    """

    def keys(self, tenant: str, refs: Sequence[str]) -> tuple[str, ...]:
        """The records' hashes."""
        keys = TenantKeys(tenant)
        return tuple(keys.identity(ref) for ref in refs)

    async def bindings(self, tenant: str, refs: Sequence[str]) -> list[str | None]:
        """An HGET of ``name_binding`` per record, pipelined: one round trip."""
        keys = TenantKeys(tenant)
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.hget(keys.identity(ref), "name_binding")
            replies = await pipe.execute()
        return [None if reply is None else as_text(reply) for reply in replies]

    async def held(self, tenant: str, ref: str) -> HeldIdentity | None:
        """The record's ``name_binding`` (HGET), then its accounts (SMEMBERS)."""
        keys = TenantKeys(tenant)
        async with translate_errors():
            stored = await self._redis.hget(keys.identity(ref), "name_binding")
            members = sorted(as_text(m) for m in await self._redis.smembers(keys.identity_accounts(ref)))
        if stored is None:
            return None
        return HeldIdentity(as_text(stored), tuple(members))

    async def move(self, tenant: str, move: IdentityMove) -> str:
        """Runs ``reseal_identity.lua``; its reply's first word."""
        keys = TenantKeys(tenant)
        members = list(move.read.accounts)
        result = await self._scripts.run(
            "reseal_identity",
            [
                keys.identity(move.old_ref),
                keys.identity_accounts(move.old_ref),
                keys.identity(move.new_ref),
                keys.identity_accounts(move.new_ref),
                keys.erasure_due(),
                *(keys.account(member) for member in members),
            ],
            [
                move.old_ref,
                move.new_ref,
                move.binding,
                move.pepper_phc,
                move.forward_ms,
                json.dumps(members),
                move.read.binding,
            ],
        )
        return as_text(result[0])

    async def location(self, tenant: str, ref: str) -> IdentityLocation:
        """One HMGET of ``moved_to``, ``binding_was`` and ``name_binding``."""
        async with translate_errors():
            moved_to, binding_was, binding = await self._redis.hmget(
                TenantKeys(tenant).identity(ref), ["moved_to", "binding_was", "name_binding"]
            )
        return IdentityLocation(
            None if moved_to is None else as_text(moved_to),
            as_text(binding_was or b""),
            bound=binding is not None,
        )

    async def reseal_verification(
        self, tenant: str, verification_id: str, changes: Mapping[str, tuple[str, str]]
    ) -> bool:
        """Runs ``reseal_verification.lua`` on the verification: True when it answered OK."""
        result = await self._scripts.run(
            "reseal_verification",
            [TenantKeys(tenant).verification(verification_id)],
            [json.dumps({name: [old, new] for name, (old, new) in changes.items()})],
        )
        return as_text(result[0]) == "OK"

"""Identity records in Redis, for ``flows.identity_mover`` and ``flows.identity_lookup``.

A record is the hash ``{t}:id:<ref>`` (its sealed ``name_binding``, ``pepper``, and for a
forwarding record ``moved_to`` and ``binding_was``, and each bound account's claim tag as
``m:<account pseudonym>``) with its set of bound accounts ``{t}:idacc:<ref>``;
``store.identity_move_steps`` moves it with its accounts, their tags, their references and a
pending erasure (one EVAL on one node, steps with a durable intent on a Cluster), and
``reseal_verification.lua`` points a verification at it again. The flows decide what moves where;
this adapter names the keys, reads, runs the scripts and decodes their replies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from idverify.flows.identity_mover import HeldIdentity, IdentityLocation, IdentityMove
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.identity_move_steps import IdentityMoveSteps, MoveRecord
from idverify.store.keys import TenantKeys
from idverify.store.scripted_store import ScriptedStore
from idverify.store.scripts import Scripts, hash_fields
from idverify.store.visited_tenants import VisitedTenants

__all__ = ["RedisIdentityRecords"]


class RedisIdentityRecords(ScriptedStore):
    """``flows.identity_mover.IdentityRecords`` over one Redis client and its scripts.

    Every method but :meth:`keys` may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, redis: RedisClient, scripts: Scripts, *, steps: StepRunner | None = None) -> None:
        super().__init__(redis, scripts)
        self._moves = IdentityMoveSteps(steps or StepRunner(scripts))
        self._tenants = VisitedTenants(scripts)

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
        """The record (HGETALL), its accounts (SMEMBERS) and its due erasure (ZSCORE), pipelined.

        The whole of it is kept (``HeldIdentity.stored``): the move's first step goes on only if
        the record still holds exactly that, which its later steps carry to the new ref.
        """
        keys = TenantKeys(tenant)
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.identity(ref))
            pipe.smembers(keys.identity_accounts(ref))
            pipe.zscore(keys.erasure_due(), f"i:{ref}")
            raw, raw_members, due = await pipe.execute()
        fields = hash_fields(raw)
        if "name_binding" not in fields:
            return None
        members = sorted(as_text(m) for m in raw_members)
        stored = {"fields": fields, "members": members, "due": "" if due is None else _score(due)}
        return HeldIdentity(fields["name_binding"], tuple(members), stored=json.dumps(stored))

    async def move(self, tenant: str, move: IdentityMove) -> str:
        """Runs the move's steps (``store.identity_move_steps``); the first step's reply."""
        if not move.read.stored:
            return "RETRY"  # not read by :meth:`held`: nothing to hold the record to
        if not self._moves.chained:
            # The repairers visit the noted tenants: a move left half done must be among them.
            await self._tenants.note(tenant)
        steps = {"binding": move.binding, "pepper": move.pepper_phc, "forward_ms": move.forward_ms}
        return await self._moves.move(
            tenant, MoveRecord(move.old_ref, move.new_ref, move.read.stored, json.dumps(steps))
        )

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


def _score(score: float) -> str:
    """A sorted set's score as Redis writes it back: an integer without its ``.0``."""
    return str(int(score)) if float(score).is_integer() else repr(float(score))

"""Moving an identity record to another key ref, with everything that points at it.

Identity records are named by their sealed index, so re-sealing one renames it: the record, its
account set, every bound account's reference and a pending erasure move together in one script
(``reseal_identity.lua``). The same move serves three callers: ``idverify keys reindex`` (every
record, resumable: flows/reindex.py), a verification that meets an identity under an older key
(it moves it on the spot), and the lazy pepper migration of a presented identity (both
flows/identity_lookup.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Final

from idverify.domain.errors import StoreUnavailable
from idverify.privacy.sealing import Sealer, SealError, associated_data, sealed_from_text, sealed_to_text
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["IDENTITY_INDEX", "NAME_BINDING", "IdentityMover"]

IDENTITY_INDEX: Final = "identity-index"
NAME_BINDING: Final = "name-binding"
_ATTEMPTS: Final = 5
# Forwarding records chain at most once per rotation; more hops than this means a loop.
_MAX_HOPS: Final = 6


class IdentityMover:
    """Moves identity records between key refs, with everything that points at them."""

    def __init__(self, redis: RedisClient, scripts: Scripts, sealer: Sealer) -> None:
        self._redis = redis
        self._scripts = scripts
        self._sealer = sealer

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
        keys = TenantKeys(tenant)
        for _ in range(_ATTEMPTS):
            async with translate_errors():
                stored = await self._redis.hget(keys.identity(old_ref), "name_binding")
                members = sorted(
                    as_text(m) for m in await self._redis.smembers(keys.identity_accounts(old_ref))
                )
            if stored is None:
                return "GONE"
            stored_text = as_text(stored)
            if binding is None:
                new_binding = self.resealed(tenant, stored_text, NAME_BINDING)
            else:
                new_binding = sealed_to_text(
                    self._sealer.seal(binding, associated=associated_data(tenant, NAME_BINDING))
                )
            result = await self._scripts.run(
                "reseal_identity",
                [
                    keys.identity(old_ref),
                    keys.identity_accounts(old_ref),
                    keys.identity(new_ref),
                    keys.identity_accounts(new_ref),
                    keys.erasure_due(),
                    *(keys.account(member) for member in members),
                ],
                [old_ref, new_ref, new_binding, pepper_phc, forward_ms, json.dumps(members), stored_text],
            )
            outcome = as_text(result[0])
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
        keys = TenantKeys(tenant)
        before: list[bytes] = []
        for _ in range(_MAX_HOPS):
            async with translate_errors():
                moved_to, binding_was, binding = await self._redis.hmget(
                    keys.identity(ref), ["moved_to", "binding_was", "name_binding"]
                )
            if moved_to is not None:
                opened = self.open_binding(tenant, as_text(binding_was or b""))
                if opened is not None:
                    before.append(opened)
                ref = as_text(moved_to)
                continue
            try:
                current = self.current_ref(tenant, ref)
            except SealError:
                return ref, before
            if current == ref:
                return ref, before
            if binding is not None:
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
        keys = TenantKeys(tenant)
        old_ref = record.get("identity", "")
        if not old_ref:
            return False
        ref, before = await self.follow(tenant, old_ref)
        async with translate_errors():
            stored = await self._redis.hget(keys.identity(ref), "name_binding")
        ours, seen = record.get("name_binding", ""), record.get("name_binding_seen", "")
        new_seen = ""
        if stored is not None and seen:
            opened = {self.open_binding(tenant, ours), self.open_binding(tenant, seen)} - {None}
            new_seen = as_text(stored) if opened & set(before) else self._quiet_reseal(tenant, seen)
        changes = {
            name: [old, new]
            for name, old, new in (
                ("identity", old_ref, ref),
                ("name_binding", ours, self._quiet_reseal(tenant, ours)),
                ("name_binding_seen", seen, new_seen),
            )
            if old != new
        }
        if not changes:
            return False
        result = await self._scripts.run(
            "reseal_verification", [keys.verification(verification_id)], [json.dumps(changes)]
        )
        return as_text(result[0]) == "OK"

    def _quiet_reseal(self, tenant: str, text: str) -> str:
        try:
            return self.resealed(tenant, text, NAME_BINDING)
        except SealError:
            return text

"""Key rotation: moving records to the current wrapping key and pepper, and what the tools need.

Identity records are named by their sealed index, so re-sealing one renames it: the record, its
account set, every bound account's reference and a pending erasure move together in one script
(``reseal_identity.lua``). The same move serves three callers: ``idverify keys reindex`` (every
record, resumable), a verification that meets an identity under an older key (it moves it on the
spot), and the lazy pepper migration of a presented identity. Verifications and accounts (an
account's birth date) keep other sealed values, re-sealed in place by the reindex. A running
server picks up a new keyring file on its own and reports the versions it holds, so that a
reindex starts only once every server can read what it writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from idverify.config import Settings
from idverify.domain.documents import Document
from idverify.domain.errors import ConfigError, StoreUnavailable
from idverify.events.accounts import EVENT_ACCOUNT
from idverify.flows.account_age import BIRTH_DATE
from idverify.observability import telemetry
from idverify.privacy.identity_index import IdentityIndexer, IndexValue, parse_index_params
from idverify.privacy.keyring import KEYRING_ENV_VAR, Keyring, LiveKeyring, load_keyring
from idverify.privacy.name_binding import name_binding
from idverify.privacy.sealing import (
    Sealer,
    SealError,
    associated_data,
    sealed_from_text,
    sealed_to_text,
    text_version,
)
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import PREFIX, GlobalKeys, TenantKeys
from idverify.store.scan import scan_pages
from idverify.store.scripts import Scripts
from idverify.webhooks.subscriptions import WEBHOOK_SECRET

log = logging.getLogger("idverify.keys")

IDENTITY_INDEX: Final = "identity-index"
NAME_BINDING: Final = "name-binding"
# The sealed fields of a verification: associated-data purpose, and what else its context holds:
# nothing, the verification id, the account pseudonym (a birth date, sealed for the account it
# is copied to) or the account's audit pseudonym (its id, for its events).
VERIFICATION_FIELDS: Final[Mapping[str, tuple[str, str]]] = {
    "identity": (IDENTITY_INDEX, ""),
    "name_binding": (NAME_BINDING, ""),
    "name_binding_seen": (NAME_BINDING, ""),
    "acct_sealed": ("account-id", "verification"),
    "challenge_sealed": ("vendor-challenge", "verification"),
    "phone_ps_sealed": ("phone-pseudonym", "verification"),
    "birth_sealed": (BIRTH_DATE, "account"),
    "event_account": (EVENT_ACCOUNT, "audit"),
}
# The sealed fields of an account, each sealed with the account pseudonym as its context.
ACCOUNT_FIELDS: Final[Mapping[str, str]] = {"birth_sealed": BIRTH_DATE}
_ATTEMPTS: Final = 5
# Forwarding records chain at most once per rotation; more hops than this means a loop.
_MAX_HOPS: Final = 6
# A forwarding record outlives the verifications started before its move by this much.
_FORWARD_MARGIN_MS: Final = 60_000
_EVENT_ACCOUNTS_PAGE: Final = 500
_IDENTITY_PATTERN: Final = f"{PREFIX}:{{t:*}}:id:*"
_VERIFICATION_PATTERN: Final = f"{PREFIX}:{{t:*}}:vf:*"
_ACCOUNT_PATTERN: Final = f"{PREFIX}:{{t:*}}:acct:*"
_WEBHOOK_PATTERN: Final = f"{PREFIX}:{{t:*}}:webhook:*"
# Each tenant's one hash of account ids sealed for events (field: the audit pseudonym).
_EVENT_ACCOUNTS_PATTERN: Final = f"{PREFIX}:{{t:*}}:events:acct"


def keyring_path(settings: Settings, environ: Mapping[str, str] | None = None) -> Path | None:
    """The keyring file a server with these settings reads; None when it comes from the environment."""
    env = os.environ if environ is None else environ
    if env.get(KEYRING_ENV_VAR):
        return None
    return Path(settings.keyring_file) if settings.keyring_file else settings.data_dir / "keyring.json"


def split_key(key: bytes | str) -> tuple[str, str, str]:
    """``iv1:{t:<tenant>}:<kind>:<rest>`` -> (tenant, kind, rest).

    Raises:
        ValueError: the key is not a tenant key.
    """
    text = as_text(key)
    head, sep, tail = text.partition("}:")
    if not sep or not head.startswith(f"{PREFIX}:{{t:"):
        raise ValueError("not a tenant key")
    kind, _, rest = tail.partition(":")
    return head[len(PREFIX) + 4 :], kind, rest


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
        keys: the records' keys, whose ``name_binding`` the lookup reads.
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
        redis: RedisClient,
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
            async with translate_errors(), redis.pipeline(transaction=False) as pipe:
                for key in probe.keys:
                    pipe.hget(key, "name_binding")
                stored_bindings = await pipe.execute()
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
        keys = TenantKeys(tenant)
        candidates = tuple(
            (index, sealed_to_text(sealed))
            for index in indexes
            for sealed in self._sealer.seal_candidates(index.digest, associated=identity_ad)
        )
        target = sealed_to_text(self._sealer.seal(indexes[0].digest, associated=identity_ad))
        return IdentityProbe(candidates, target, tuple(keys.identity(ref) for _, ref in candidates), indexes)

    def settle(
        self, tenant: str, probe: IdentityProbe, name: str, stored_bindings: Sequence[bytes | str | None]
    ) -> ResolvedIdentity | None:
        """The identity from the probe's reads; None when its record must move first (:meth:`move`)."""
        indexes, current = probe.indexes, probe.indexes[0]
        found = next(
            (
                (index, ref, as_text(stored))
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


@dataclass
class KeyUsage:
    """What each key version still protects in one tenant."""

    identities: Counter[str] = field(default_factory=Counter)
    peppers: Counter[str] = field(default_factory=Counter)
    verifications: Counter[str] = field(default_factory=Counter)
    forwarding: Counter[str] = field(default_factory=Counter)
    accounts: Counter[str] = field(default_factory=Counter)
    # Account ids sealed for events (idverify/events/accounts.py), one per account.
    event_accounts: Counter[str] = field(default_factory=Counter)
    # Webhook subscriptions' secrets (idverify/webhooks/subscriptions.py), one per subscription.
    webhook_secrets: Counter[str] = field(default_factory=Counter)

    def wrapping_total(self, version: str) -> int:
        """Records of any kind sealed under a wrapping-key version."""
        return (
            self.identities[version]
            + self.verifications[version]
            + self.forwarding[version]
            + self.accounts[version]
            + self.event_accounts[version]
            + self.webhook_secrets[version]
        )


async def count_key_usage(redis: RedisClient) -> dict[str, KeyUsage]:
    """Per tenant, how many records each wrapping-key and pepper version still protects.

    Raises:
        StoreUnavailable: Redis is down.
    """
    usage: dict[str, KeyUsage] = {}
    async for _, page in scan_pages(redis, _IDENTITY_PATTERN):
        async with translate_errors(), redis.pipeline(transaction=False) as pipe:
            for key in page:
                pipe.hmget(key, ["pepper", "moved_to"])
            rows = await pipe.execute()
        for key, (pepper, moved_to) in zip(page, rows, strict=True):
            tenant, _, ref = split_key(key)
            counts = usage.setdefault(tenant, KeyUsage())
            version = text_version(ref)
            if moved_to is not None:
                counts.forwarding[version] += 1
                continue
            counts.identities[version] += 1
            with contextlib.suppress(ValueError):
                counts.peppers[parse_index_params(as_text(pepper or b""))[1]] += 1
    await _count_sealed(
        redis, _VERIFICATION_PATTERN, list(VERIFICATION_FIELDS), usage, lambda u: u.verifications
    )
    await _count_sealed(redis, _ACCOUNT_PATTERN, list(ACCOUNT_FIELDS), usage, lambda u: u.accounts)
    await _count_sealed(redis, _WEBHOOK_PATTERN, ["secret"], usage, lambda u: u.webhook_secrets)
    async for _, page in scan_pages(redis, _EVENT_ACCOUNTS_PATTERN):
        for key in page:
            tenant, _, _ = split_key(key)
            counter = usage.setdefault(tenant, KeyUsage()).event_accounts
            async for _, values in _hash_pages(redis, key):
                counter.update(text_version(as_text(value)) for value in values.values())
    return usage


async def _hash_pages(redis: RedisClient, key: bytes | str) -> AsyncIterator[tuple[int, dict[bytes, bytes]]]:
    """HSCAN of one hash, a page at a time: (next cursor, fields)."""
    cursor = 0
    while True:
        async with translate_errors():
            cursor, values = await redis.hscan(key, cursor, count=_EVENT_ACCOUNTS_PAGE)
        assert isinstance(values, dict)  # noqa: S101 - HSCAN answers a mapping
        yield int(cursor), {_as_bytes(k): _as_bytes(v) for k, v in values.items()}
        if int(cursor) == 0:
            return


async def _count_sealed(
    redis: RedisClient,
    pattern: str,
    fields: list[str],
    usage: dict[str, KeyUsage],
    counter_of: Callable[[KeyUsage], Counter[str]],
) -> None:
    """Counts each record matching ``pattern`` once per wrapping-key version its ``fields`` use."""
    async for _, page in scan_pages(redis, pattern):
        async with translate_errors(), redis.pipeline(transaction=False) as pipe:
            for key in page:
                pipe.hmget(key, fields)
            rows = await pipe.execute()
        for key, row in zip(page, rows, strict=True):
            tenant, _, _ = split_key(key)
            counter = counter_of(usage.setdefault(tenant, KeyUsage()))
            for version in {text_version(as_text(value)) for value in row if value} - {""}:
                counter[version] += 1


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


@dataclass(frozen=True, slots=True)
class ReindexReport:
    """How a reindex run ended."""

    target: str
    resealed: int
    unreadable: int
    finished: bool


class Reindexer:
    """Re-seals every identity, verification and account under the current wrapping key, resumably.

    The position (phase and SCAN cursor) is saved in Redis after every page, so a run that is
    stopped (``--limit``, Ctrl-C, a crash) continues where it was; records already under the
    current key are skipped, so repeating a page is harmless. Servers keep serving throughout:
    they look identities up under every readable version and move the ones they meet.
    """

    def __init__(
        self, redis: RedisClient, scripts: Scripts, keyring: Keyring, *, page_size: int = 200
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._mover = IdentityMover(redis, scripts, Sealer(keyring))
        self._target = keyring.wrapping_current
        self._page_size = page_size

    async def run(self, *, limit: int = 0, progress: Callable[[int], None] | None = None) -> ReindexReport:
        """Re-seals until done, or until about ``limit`` records (at a page boundary) when > 0.

        Raises:
            StoreUnavailable: Redis is down (the checkpoint keeps the progress made).
        """
        checkpoint_key = GlobalKeys.reindex_checkpoint()
        async with translate_errors():
            saved = {as_text(k): as_text(v) for k, v in (await self._redis.hgetall(checkpoint_key)).items()}
        phases = {
            "id": _IDENTITY_PATTERN,
            "vf": _VERIFICATION_PATTERN,
            "acct": _ACCOUNT_PATTERN,
            "events": _EVENT_ACCOUNTS_PATTERN,
            "webhooks": _WEBHOOK_PATTERN,
        }
        workers = {
            "id": self._identity,
            "vf": self._verification,
            "acct": self._account,
            "events": self._event_accounts,
            "webhooks": self._webhook_secret,
        }
        resume = saved.get("target") == self._target and saved.get("phase") in phases
        phase = saved["phase"] if resume else "id"
        cursor = int(saved.get("cursor", "0")) if resume else 0
        resealed = unreadable = 0
        for name, pattern in list(phases.items())[list(phases).index(phase) :]:
            async for next_cursor, page in scan_pages(
                self._redis, pattern, cursor=cursor, count=self._page_size
            ):
                for key in page:
                    done = await workers[name](key)
                    resealed += done is True
                    unreadable += done is None
                    if progress is not None and done is True:
                        progress(1)
                async with translate_errors():
                    await self._redis.hset(
                        checkpoint_key,
                        mapping={"target": self._target, "phase": name, "cursor": next_cursor},
                    )
                if limit and resealed >= limit and next_cursor != 0:
                    return ReindexReport(self._target, resealed, unreadable, finished=False)
            cursor = 0
        async with translate_errors():
            await self._redis.hset(
                checkpoint_key, mapping={"target": self._target, "phase": "done", "cursor": 0}
            )
        return ReindexReport(self._target, resealed, unreadable, finished=True)

    async def _identity(self, key: bytes) -> bool | None:
        """True when moved, False when nothing to do, None when unreadable."""
        tenant, _, ref = split_key(key)
        if text_version(ref) == self._target:
            return False
        try:
            new_ref = self._mover.current_ref(tenant, ref)
            outcome = await self._mover.move(tenant, ref, new_ref)
        except SealError:
            return None
        return outcome == "OK"

    async def _verification(self, key: bytes) -> bool | None:
        tenant, _, verification_id = split_key(key)
        names = list(VERIFICATION_FIELDS)
        async with translate_errors():
            row = await self._redis.hmget(key, [*names, "acct", "acct_audit"])
        account_ps, audit_ps = as_text(row[-2] or b""), as_text(row[-1] or b"")
        contexts = {
            "": (),
            "verification": (verification_id,),
            "account": (account_ps,),
            "audit": (audit_ps,),
        }
        fields = {
            name: (purpose, contexts[context]) for name, (purpose, context) in VERIFICATION_FIELDS.items()
        }
        return await self._reseal_fields(tenant, key, fields, row)

    async def _account(self, key: bytes) -> bool | None:
        tenant, _, account_ps = split_key(key)
        names = list(ACCOUNT_FIELDS)
        async with translate_errors():
            row = await self._redis.hmget(key, names)
        fields = {name: (purpose, (account_ps,)) for name, purpose in ACCOUNT_FIELDS.items()}
        return await self._reseal_fields(tenant, key, fields, row)

    async def _event_accounts(self, key: bytes) -> bool | None:
        """Re-seals a tenant's account ids kept for events, a page of fields per step."""
        tenant, _, _ = split_key(key)
        fields = {}
        async for _, values in _hash_pages(self._redis, key):
            page = {as_text(ps): value for ps, value in values.items()}
            fields = {ps: (EVENT_ACCOUNT, (ps,)) for ps in page}
            done = await self._reseal_fields(tenant, key, fields, list(page.values()))
            if done is None:
                return None
        return bool(fields)

    async def _webhook_secret(self, key: bytes) -> bool | None:
        """Re-seals a webhook subscription's secret (bound to its tenant and id)."""
        tenant, _, webhook_id = split_key(key)
        async with translate_errors():
            row = await self._redis.hmget(key, ["secret"])
        return await self._reseal_fields(tenant, key, {"secret": (WEBHOOK_SECRET, (webhook_id,))}, row)

    async def _reseal_fields(
        self,
        tenant: str,
        key: bytes,
        fields: Mapping[str, tuple[str, tuple[str, ...]]],
        row: Sequence[bytes | str | None],
    ) -> bool | None:
        """Re-seals the fields of one record as read (``row``, in ``fields`` order), compare-and-set."""
        changes: dict[str, list[str]] = {}
        for (name, (purpose, context)), value in zip(fields.items(), row, strict=False):
            old = as_text(value or b"")
            if not old or text_version(old) == self._target:
                continue
            try:
                new = self._mover.resealed(tenant, old, purpose, *context)
            except SealError:
                return None
            changes[name] = [old, new]
        if not changes:
            return False
        result = await self._scripts.run("reseal_verification", [as_text(key)], [json.dumps(changes)])
        return as_text(result[0]) == "OK"


REPORTED_SCHEMA = "schema"
"""The report's field naming the data layout its server's release writes (absent: 0.1.0)."""
UNREPORTED_SCHEMA = 1
"""What a report without :data:`REPORTED_SCHEMA` means: 0.1.0 wrote it (the field came in 0.2.0)."""


@dataclass(frozen=True, slots=True)
class ServerKeyring:
    """The keyring versions one running server reported, and its release's schema version.

    The schema version lets tools and later releases see which releases serve a Redis during a
    rolling upgrade: 0.1.0 reads no schema version and cannot refuse anything, but it does
    report its keyring, without this field, so it is never invisible.
    """

    instance: str
    wrapping_current: str
    wrapping: tuple[str, ...]
    pepper_current: str
    schema: int = UNREPORTED_SCHEMA


async def running_servers(redis: RedisClient) -> list[ServerKeyring]:
    """The keyring versions of every server that reported in the last few seconds.

    Raises:
        StoreUnavailable: Redis is down.
    """
    found: list[ServerKeyring] = []
    async for _, page in scan_pages(redis, GlobalKeys.keyring_instance("*")):
        for key in page:
            async with translate_errors():
                raw = await redis.get(key)
            if raw is None:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                report = json.loads(raw)
                found.append(
                    ServerKeyring(
                        instance=as_text(key).rsplit(":", 1)[-1],
                        wrapping_current=str(report["wrapping_current"]),
                        wrapping=tuple(report["wrapping"]),
                        pepper_current=str(report["pepper_current"]),
                        schema=int(report.get(REPORTED_SCHEMA, UNREPORTED_SCHEMA)),
                    )
                )
    return found


class KeyringWatcher:
    """Keeps a server's live keyring in step with its keyring file, and reports its versions.

    The file is polled (its size, inode and modification time), which works the same for an
    edited file and a remounted Kubernetes Secret; a keyring that would change the secret of a
    version the server holds is refused with an error in the log, and the old one stays.
    """

    def __init__(
        self,
        live: LiveKeyring,
        path: Path | None,
        redis: RedisClient,
        interval_seconds: float,
        *,
        record: Callable[[Keyring], Awaitable[None]] | None = None,
    ) -> None:
        """Watches ``path`` for ``live``.

        Args:
            live: the keyring the server uses.
            path: the keyring file; None when the keyring came from the environment.
            redis: where the report goes.
            interval_seconds: how often the file is looked at.
            record: checks a new keyring against the store's key-check values and records its
                new versions before it is taken (raises ConfigError to refuse it); without it
                a new keyring is taken unchecked.
        """
        self._live = live
        self._path = path
        self._redis = redis
        self._interval = interval_seconds
        self._record = record
        self._instance = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            info = self._path.stat()
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    async def reload_if_changed(self) -> bool:
        """Reads the keyring file again if it changed; True when new versions were taken.

        A new version's key-check value is recorded before the server writes under it, so that a
        later start with a keyring that lacks it is refused, not silently started over; a keyring
        the store cannot check yet (Redis down) is read again at the next look.
        """
        stamp = self._stamp()
        if self._path is None or stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        try:
            candidate = load_keyring(path=self._path)
            if self._record is not None:
                await self._record(candidate)
            changed = self._live.replace(candidate)
        except ConfigError as exc:
            log.error("keyring file not taken: %s", exc)  # noqa: TRY400 - the message says it all, without key material
            return False
        except StoreUnavailable:
            log.warning("keyring file not taken yet: Redis cannot be reached to check it; trying again")
            self._seen = None
            return False
        if changed:
            log.info(
                "keyring reloaded: wrapping keys %s (write %s), peppers %s (write %s)",
                ",".join(self._live.wrapping_versions),
                self._live.wrapping_current,
                ",".join(self._live.pepper_versions),
                self._live.pepper_current,
            )
        return changed

    async def report(self) -> None:
        """Tells the tools which versions this server holds (expires unless repeated)."""
        # Imported here: schema_version imports this module (through key_check).
        from idverify.flows.schema_version import SCHEMA_VERSION  # noqa: PLC0415

        report = {
            "wrapping_current": self._live.wrapping_current,
            "wrapping": list(self._live.wrapping_versions),
            "pepper_current": self._live.pepper_current,
            REPORTED_SCHEMA: SCHEMA_VERSION,
        }
        async with translate_errors():
            await self._redis.set(
                GlobalKeys.keyring_instance(self._instance),
                json.dumps(report),
                px=int(max(self._interval * 3, 5.0) * 1000),
            )

    async def run(self) -> None:
        """Polls and reports until cancelled."""
        while True:
            await self.reload_if_changed()
            with contextlib.suppress(StoreUnavailable):
                await self.report()
            await asyncio.sleep(self._interval)

    async def withdraw(self) -> None:
        """Removes this server's report (on shutdown)."""
        with contextlib.suppress(StoreUnavailable):
            async with translate_errors():
                await self._redis.delete(GlobalKeys.keyring_instance(self._instance))


__all__ = [
    "REPORTED_SCHEMA",
    "UNREPORTED_SCHEMA",
    "IdentityLookup",
    "IdentityMover",
    "KeyUsage",
    "KeyringWatcher",
    "ReindexReport",
    "Reindexer",
    "ResolvedIdentity",
    "ServerKeyring",
    "count_key_usage",
    "keyring_path",
    "running_servers",
    "split_key",
]

"""Key rotation's tools: what each key version still protects, and the reindex that re-seals it.

``idverify keys status`` and ``keys retire`` count the records each wrapping-key and pepper
version still protects (:func:`count_key_usage`); ``idverify keys reindex`` re-seals every
identity (moved, flows/identity_mover.py), verification, account, tenant's event account ids and
webhook secret under the current wrapping key, resumably (:class:`Reindexer`).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from idverify.events.accounts import EVENT_ACCOUNT
from idverify.flows.account_age import BIRTH_DATE
from idverify.flows.identity_mover import IDENTITY_INDEX, NAME_BINDING, IdentityMover
from idverify.privacy.identity_index import parse_index_params
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer, SealError, text_version
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.identity_records import RedisIdentityRecords
from idverify.store.keys import PREFIX, GlobalKeys
from idverify.store.scan import scan_pages
from idverify.store.scripts import Scripts
from idverify.webhooks.subscriptions import WEBHOOK_SECRET

__all__ = [
    "ACCOUNT_FIELDS",
    "VERIFICATION_FIELDS",
    "KeyUsage",
    "ReindexReport",
    "Reindexer",
    "count_key_usage",
    "split_key",
]

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
_EVENT_ACCOUNTS_PAGE: Final = 500
_IDENTITY_PATTERN: Final = f"{PREFIX}:{{t:*}}:id:*"
_VERIFICATION_PATTERN: Final = f"{PREFIX}:{{t:*}}:vf:*"
_ACCOUNT_PATTERN: Final = f"{PREFIX}:{{t:*}}:acct:*"
_WEBHOOK_PATTERN: Final = f"{PREFIX}:{{t:*}}:webhook:*"
# Each tenant's one hash of account ids sealed for events (field: the audit pseudonym).
_EVENT_ACCOUNTS_PATTERN: Final = f"{PREFIX}:{{t:*}}:events:acct"


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
        self._mover = IdentityMover(RedisIdentityRecords(redis, scripts), Sealer(keyring))
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

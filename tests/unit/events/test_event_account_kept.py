"""Where an account's sealed id for its events is kept: in its own hash, on a real Redis.

A binding keeps the id in the account (``event_account``); the steps that do not know it (a
binding superseded by a claim established elsewhere, the erasure) read it there; the erasure
deletes it with the account. Accounts an older server bound have it only in the tenant's
``events:acct`` map: it is read from there and moved into the account by any step that touches
the account, and the map goes with its last field. Driven through the service's own stores
(``start.lua``, ``cancel_account.lua``, ``erase.lua``), read through the outbox as a subscriber does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass

import pytest

from idverify.domain.birth_dates import AgeSource
from idverify.domain.subjects import AgeBand, AssuranceLevel, SubjectKind
from idverify.events.accounts import event_account_fields, open_event_account
from idverify.events.outbox import Event, Outbox
from idverify.flows.context import RequestInfo
from idverify.flows.erasure import Cancellation, EraseOutcome, ErasureItem, ErasureKind
from idverify.flows.identity_mover import IdentityMover
from idverify.flows.reindex import Reindexer
from idverify.flows.verification.port import NewVerification
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer, text_version
from idverify.store.code_sends import CodeSendChains
from idverify.store.connection import RedisClient, as_text
from idverify.store.erasures import RedisErasureStore
from idverify.store.identity_records import RedisIdentityRecords
from idverify.store.keys import TenantKeys
from idverify.store.outbox import RedisOutbox
from idverify.store.scripts import Scripts
from idverify.store.sealed_records import RedisSealedRecords
from idverify.store.verifications import RedisVerificationStore
from idverify.testing.memory_code_sends import send_limits

KEYRING = Keyring.generate()
SEALER = Sealer(KEYRING)
REQUEST_JSON = json.dumps(RequestInfo(principal="registrar01").audit_fields())
_tenants = itertools.count()
_ids = itertools.count()


@dataclass(frozen=True)
class Account:
    """A platform account: its id, its pseudonyms and its id sealed for its events."""

    tenant: str
    id: str

    @property
    def ps(self) -> str:
        return KEYRING.pseudonym(self.tenant, "account", self.id)

    @property
    def audit_ps(self) -> str:
        return KEYRING.pseudonym(self.tenant, "audit", self.id)

    @property
    def key(self) -> str:
        return TenantKeys(self.tenant).account(self.ps)


class Tenant:
    """One tenant's accounts, bound, superseded, cancelled and erased by the service's scripts."""

    def __init__(self, redis: RedisClient) -> None:
        self.name = f"evacct{next(_tenants)}"
        self.keys = TenantKeys(self.name)
        self._redis = redis
        scripts = Scripts(redis)
        limits = send_limits(per_phone_per_hour=2, phone_failure_limit=2, failure_window_ms=60_000)
        self._verifications = RedisVerificationStore(redis, scripts, CodeSendChains(scripts, limits))
        self._erasures = RedisErasureStore(redis, scripts)
        self.outbox = RedisOutbox(redis, scripts)

    def account(self, account_id: str) -> Account:
        return Account(self.name, account_id)

    async def bind(self, account: Account, *, name_tag: str, establishes: bool = False) -> Status:
        """A verification that binds ``account`` to the identity ``id-1`` under ``name_tag`` at its start."""
        sealed = event_account_fields(KEYRING, SEALER, self.name, account.id)["event_account"]
        record = VerificationRecord(
            method="authority" if establishes else "sms",
            assurance=AssuranceLevel.SUBSTANTIAL if establishes else AssuranceLevel.LOW,
            kind=SubjectKind.PERSON,
            acct=account.ps,
            acct_audit=account.audit_ps,
            event_account=sealed,
            name_tag=name_tag,
            establishes=establishes,
            identity="id-1",
            name_binding=f"binding-{name_tag}",
            pepper="pepper-1",
            age_band=AgeBand.ADULT,
            age_source=AgeSource.DOCUMENT,
        )
        vid = f"v{next(_ids)}"
        # Admission lists the verification under its account (consent_start.lua), so that the
        # account's erasure takes it too.
        expires = await self._erasures.now_ms() + 60_000
        await self._redis.zadd(self.keys.account_verifications(account.ps), {vid: expires})
        new = NewVerification(
            self.name, f"req-{vid}", vid, account.ps, record, 60_000, 5, REQUEST_JSON, "bind"
        )

        async def unmoved(moved: bool) -> VerificationRecord:
            raise AssertionError(f"no identity moves here ({moved=})")

        written = await self._verifications.commit(new, unmoved)
        return written.record.status

    async def bound_by_an_older_server(self, account: Account) -> None:
        """What a server before this change leaves of a binding: the id in the map alone."""
        sealed = await self._redis.hget(account.key, "event_account")
        assert sealed is not None
        await self._redis.hdel(account.key, "event_account")
        await self._redis.hset(self.keys.events_accounts(), account.audit_ps, sealed)

    async def cancel(self, account: Account) -> None:
        """CancelAccount's step (its request names the account), its erasure due at once."""
        request = json.loads(REQUEST_JSON)
        request.update(event_account_fields(KEYRING, SEALER, self.name, account.id))
        past = await self._erasures.now_ms() - 1
        cancel = Cancellation(account.ps, account.audit_ps, past, json.dumps(request))
        assert await self._erasures.cancel(self.name, cancel) == past

    async def cancel_and_erase(self, account: Account) -> None:
        await self.cancel(account)
        item = ErasureItem(ErasureKind.ACCOUNT, account.ps)
        assert await self._erasures.erase(self.name, item, REQUEST_JSON) is EraseOutcome.ERASED

    async def events(self, account: Account) -> list[Event]:
        """The tenant's events about ``account`` (by its audit entries), as a subscriber reads them."""
        events, _ = await Outbox(self.outbox, SEALER).read(self.name, "", 1000)
        entries = await self._redis.hgetall(self.keys.audit_log())
        mine = {
            int(index): json.loads(entry)
            for index, entry in entries.items()
            if json.loads(entry)["account"] == account.audit_ps
        }
        return [e for e in events if e.audit_index in mine]

    async def trim_outbox(self) -> None:
        """Every outbox record trimmed (their sealed ids last as long as the outbox keeps events)."""
        await asyncio.sleep(0.01)  # the cut is by millisecond: the records must be older than now
        await self.outbox.trim(self.name, retention_ms=0)

    async def kept(self, account: Account) -> tuple[str, str]:
        """The sealed id in the account's hash and in the legacy map ('' where absent)."""
        in_account = await self._redis.hget(account.key, "event_account")
        in_map = await self._redis.hget(self.keys.events_accounts(), account.audit_ps)
        return as_text(in_account or b""), as_text(in_map or b"")


@pytest.fixture
def tenant(redis: RedisClient) -> Tenant:
    return Tenant(redis)


def ids_of(events: list[Event], event_type: str) -> list[str]:
    return [e.account_id for e in events if e.type == event_type]


async def _values(redis: RedisClient, key: bytes) -> list[bytes]:
    """A key's values (a hash's and a stream's field names too), whatever its type."""
    kind = as_text(await redis.type(key))
    if kind == "none":  # expired since the scan named it (a rate limit's window): nothing held
        return []
    if kind == "string":
        return [await redis.get(key) or b""]
    if kind == "hash":
        return [b for pair in (await redis.hgetall(key)).items() for b in pair]
    if kind == "stream":
        return [b for _, fields in await redis.xrange(key) for pair in fields.items() for b in pair]
    members = {
        "set": lambda: redis.smembers(key),
        "zset": lambda: redis.zrange(key, 0, -1),
        "list": lambda: redis.lrange(key, 0, -1),
    }
    return list(await members[kind]())  # type: ignore[operator]


async def everything_stored(redis: RedisClient) -> bytes:
    """Every key and value in the server: what a thief with a dump holds."""
    chunks: list[bytes] = []
    async for key in redis.scan_iter(match="*", count=1000):
        chunks += [key, *await _values(redis, key)]
    return b"\n".join(chunks)


async def test_a_binding_keeps_the_id_sealed_in_the_account_and_not_in_the_map(
    redis: RedisClient, tenant: Tenant
) -> None:
    account = tenant.account("user-kept-1")
    assert await tenant.bind(account, name_tag="tag-1") is Status.VERIFIED
    in_account, in_map = await tenant.kept(account)
    assert in_account != ""
    assert in_map == ""
    assert not await redis.exists(tenant.keys.events_accounts())
    # A thief with the account's hash holds no account id: the field is sealed, bound to the
    # account's audit pseudonym, and nothing else in the hash names the account in the clear.
    raw = b"".join(k + v for k, v in (await redis.hgetall(account.key)).items())
    assert account.id.encode() not in raw
    assert account.id.encode() not in (await redis.dump(account.key) or b"")
    assert ids_of(await tenant.events(account), "account.bound") == [account.id]


async def test_a_superseded_binding_and_an_erasure_name_their_account(
    redis: RedisClient, tenant: Tenant
) -> None:
    squatter, owner = tenant.account("user-squatter"), tenant.account("user-owner")
    assert await tenant.bind(squatter, name_tag="tag-false") is Status.VERIFIED
    assert await tenant.bind(owner, name_tag="tag-1", establishes=True) is Status.VERIFIED
    # The owner's step knows only the owner's id: the squatter's event takes the squatter's own,
    # from the squatter's account, never the one of the step that superseded it.
    assert ids_of(await tenant.events(squatter), "binding.superseded") == [squatter.id]
    assert ids_of(await tenant.events(owner), "binding.superseded") == []
    sealed, _ = await tenant.kept(squatter)
    assert sealed != ""
    await tenant.cancel_and_erase(squatter)
    assert ids_of(await tenant.events(squatter), "account.erased") == [squatter.id]
    # Once the outbox's records are trimmed, the sealed id is nowhere in the server.
    await tenant.trim_outbox()
    assert sealed.encode() not in await everything_stored(redis)
    assert await tenant.kept(owner) != ("", "")


async def test_an_older_servers_account_is_named_and_moved_on_its_supersession(tenant: Tenant) -> None:
    squatter, other, owner = (tenant.account(f"user-old-{n}") for n in range(3))
    assert await tenant.bind(squatter, name_tag="tag-false") is Status.VERIFIED
    assert await tenant.bind(other, name_tag="tag-1") is Status.VERIFIED
    await tenant.bound_by_an_older_server(squatter)
    await tenant.bound_by_an_older_server(other)
    sealed, _ = await tenant.kept(squatter)
    assert sealed == ""
    assert await tenant.bind(owner, name_tag="tag-1", establishes=True) is Status.VERIFIED
    assert ids_of(await tenant.events(squatter), "binding.superseded") == [squatter.id]
    # Touched, its id moved into its account; the account not touched keeps its id in the map.
    moved, left = await tenant.kept(squatter)
    assert moved != ""
    assert left == ""
    assert (await tenant.kept(other))[1] != ""


async def test_an_account_an_older_server_bound_is_named_on_its_erasure_and_leaves_nothing(
    redis: RedisClient, tenant: Tenant
) -> None:
    account = tenant.account("user-old-erased")
    assert await tenant.bind(account, name_tag="tag-1") is Status.VERIFIED
    await tenant.bound_by_an_older_server(account)
    _, sealed = await tenant.kept(account)
    assert sealed != ""
    await tenant.cancel_and_erase(account)
    assert ids_of(await tenant.events(account), "account.erased") == [account.id]
    # The map lost its last field, so Redis deleted it; nothing else keeps a copy.
    assert not await redis.exists(tenant.keys.events_accounts())
    await tenant.trim_outbox()
    assert sealed.encode() not in await everything_stored(redis)


async def test_a_step_that_touches_an_older_servers_account_moves_its_id_and_empties_the_map(
    redis: RedisClient, tenant: Tenant
) -> None:
    account = tenant.account("user-old-touched")
    assert await tenant.bind(account, name_tag="tag-1") is Status.VERIFIED
    await tenant.bound_by_an_older_server(account)
    _, sealed = await tenant.kept(account)
    # Its cancellation (cancel_account.lua, the account's key at hand) keeps the account until the erasure.
    await tenant.cancel(account)
    assert await tenant.kept(account) == (sealed, "")
    assert not await redis.exists(tenant.keys.events_accounts())


async def test_keys_reindex_rewraps_the_id_in_accounts_and_in_the_map(own_client: RedisClient) -> None:
    # The module's own server: the reindex scans every tenant and keeps a global checkpoint.
    tenant = Tenant(own_client)
    current, older = tenant.account("user-rewrapped"), tenant.account("user-rewrapped-old")
    for account in (current, older):
        assert await tenant.bind(account, name_tag="tag-1") is Status.VERIFIED
    await tenant.bound_by_an_older_server(older)
    rotated = KEYRING.with_new_wrapping_key(make_current=True)
    scripts = Scripts(own_client)
    mover = IdentityMover(RedisIdentityRecords(own_client, scripts), Sealer(rotated))
    assert (await Reindexer(RedisSealedRecords(own_client, scripts), rotated, mover).run()).finished
    only_new = Sealer(rotated.without(KEYRING.wrapping_current))
    for account, place in ((current, 0), (older, 1)):
        sealed = (await tenant.kept(account))[place]
        assert text_version(sealed) == rotated.wrapping_current
        assert open_event_account(only_new, tenant.name, account.audit_ps, sealed) == account.id

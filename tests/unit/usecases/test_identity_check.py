"""IdentityCheckFlow over the in-memory IdentityCheckStore: CheckIdentity decided without Redis or gRPC.

Each test shows one decision of the use case: a claim against the account's name tag or its
identity's name binding, an unbound account answered like a wrong claim, the limits per account
and per caller (refused before the hash, the right claim too, until the window ends), the audit
entry of every answer, and no answer when the check cannot be counted.
``test_identity_check_store.py`` holds the in-memory store to the Redis one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import pytest

from idverify.config import RateLimitSettings
from idverify.domain.errors import InvalidArgument, RateLimited, StoreUnavailable
from idverify.domain.subjects import DocumentType, Subject, SubjectKind
from idverify.flows.context import RequestInfo
from idverify.flows.identity_check import CHECK_WINDOW_MS, BoundIdentity, IdentityCheckFlow
from idverify.privacy.identity_index import TEST_ONLY_FAST, IdentityIndexer, IndexValue
from idverify.privacy.keyring import Keyring
from idverify.privacy.name_binding import claim_tag, name_binding
from idverify.privacy.sealing import Sealer, associated_data, sealed_to_text
from idverify.testing.memory_identity_checks import MemoryIdentityChecks

TENANT = "acme"
PER_ACCOUNT = 2
PER_PRINCIPAL = 3
START_MS = 1_800_000_000_000
CALLER = RequestInfo(principal="registrar1", request_id="r1")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_sequence = itertools.count(1)


def ric(sequence: int) -> str:
    """A mainland resident ID number with a correct check character."""
    body = f"440106{date(1990, 5, 17):%Y%m%d}{sequence:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _WEIGHTS, strict=True)) % 11]


def claim(name: str, number: str) -> Subject:
    return Subject(
        kind=SubjectKind.PERSON, name=name, document_type=DocumentType.CN_RIC, document_number=number
    )


class CountingIndexer(IdentityIndexer):
    """The real indexer (at a tiny cost), counting the argon2id runs a check pays for."""

    def __init__(self, keyring: Keyring) -> None:
        super().__init__(keyring, TEST_ONLY_FAST, max_workers=1)
        self.runs = 0

    async def compute_async(self, *args: Any, **kwargs: Any) -> IndexValue:
        self.runs += 1
        return await super().compute_async(*args, **kwargs)


@dataclass
class World:
    flow: IdentityCheckFlow
    store: MemoryIdentityChecks
    keyring: Keyring
    sealer: Sealer
    indexer: CountingIndexer
    now: list[int]

    def account_ps(self, account_id: str) -> str:
        return self.keyring.pseudonym(TENANT, "account", account_id)

    def bind(self, account_id: str, name: str, number: str, *, tagged: bool = True) -> BoundIdentity:
        """Binds the account as a verification would: sealed index, sealed binding, maybe a name tag."""
        index = self.indexer.compute(TENANT, DocumentType.CN_RIC, number)
        binding = name_binding(self.keyring, TENANT, index.digest, name, pepper_version=index.pepper_version)
        bound = BoundIdentity(
            identity_ref=sealed_to_text(
                self.sealer.seal(index.digest, associated=associated_data(TENANT, "identity-index"))
            ),
            name_tag=claim_tag(self.keyring, TENANT, "cn_ric", number, name) if tagged else None,
            name_binding=sealed_to_text(
                self.sealer.seal(binding, associated=associated_data(TENANT, "name-binding"))
            ),
            index_params=index.phc,
        )
        self.store.bind(TENANT, self.account_ps(account_id), bound)
        return bound

    async def check(self, account_id: str, name: str, number: str, info: RequestInfo = CALLER) -> bool:
        return await self.flow.check_identity(TENANT, account_id, claim(name, number), info)

    def outcomes(self) -> list[tuple[str, str]]:
        return [(entry.outcome, entry.reason) for entry in self.store.entries]


@pytest.fixture
def world() -> Iterator[World]:
    keyring = Keyring.generate()
    now = [START_MS]
    store = MemoryIdentityChecks(clock_ms=lambda: now[0])
    sealer = Sealer(keyring)
    limits = RateLimitSettings(
        check_identity_mismatches_per_account_per_day=PER_ACCOUNT,
        check_identity_mismatches_per_principal_per_day=PER_PRINCIPAL,
    )
    with CountingIndexer(keyring) as indexer:
        flow = IdentityCheckFlow(store, keyring=keyring, sealer=sealer, indexer=indexer, limits=limits)
        yield World(flow, store, keyring, sealer, indexer, now)


@pytest.mark.parametrize("tagged", [True, False], ids=["name tag", "name binding"])
async def test_a_claim_matches_only_with_the_bound_name_and_number(world: World, tagged: bool) -> None:
    number = ric(next(_sequence))
    world.bind("u1", "张三", number, tagged=tagged)
    assert await world.check("u1", "张三", number)
    assert await world.check("u1", " 张三 ", number)  # the name is normalized first
    assert not await world.check("u1", "李四", number)
    world.now[0] += CHECK_WINDOW_MS  # a new window: the account's first mismatch is spent
    assert not await world.check("u1", "张三", ric(next(_sequence)))
    assert world.outcomes() == [("match", ""), ("match", ""), ("mismatch", ""), ("mismatch", "")]


async def test_an_unbound_account_answers_as_a_wrong_claim_at_the_same_cost(world: World) -> None:
    assert not await world.check("nobody", "张三", ric(next(_sequence)))
    assert world.indexer.runs == 1  # one argon2id, as for a bound account
    assert world.outcomes() == [("mismatch", "")]
    assert world.store.mismatches(TENANT, "acct", world.account_ps("nobody")) == 1


async def test_every_entry_names_the_caller_and_the_account_by_pseudonym_only(world: World) -> None:
    number = ric(next(_sequence))
    world.bind("u1", "张三", number)
    await world.check("u1", "张三", number)
    (entry,) = world.store.entries
    assert entry.fields["principal"] == "registrar1"
    assert entry.fields["request_id"] == "r1"
    assert entry.fields["account"] == world.keyring.pseudonym(TENANT, "audit", "u1")
    assert not {"张三", number, "u1"} & set(entry.fields.values())


async def test_the_account_limit_refuses_even_the_right_claim_before_the_hash(world: World) -> None:
    number = ric(next(_sequence))
    world.bind("u1", "张三", number)
    for _ in range(PER_ACCOUNT):
        assert not await world.check("u1", "张三", ric(next(_sequence)))
    runs = world.indexer.runs
    world.now[0] += 1000
    with pytest.raises(RateLimited) as refused:
        await world.check("u1", "张三", number)
    assert refused.value.reason == "CHECK_LIMIT_REACHED"
    assert refused.value.retry_after == (CHECK_WINDOW_MS - 1000) / 1000
    assert world.indexer.runs == runs  # a refused check costs no argon2id
    assert world.outcomes()[-1] == ("refused", "CHECK_LIMIT_REACHED")
    # Refusals count nothing: the window still ends a day after the first mismatch.
    assert world.store.mismatches(TENANT, "acct", world.account_ps("u1")) == PER_ACCOUNT
    world.now[0] = START_MS + CHECK_WINDOW_MS
    assert await world.check("u1", "张三", number)


async def test_other_accounts_are_not_refused_for_one_accounts_mismatches(world: World) -> None:
    number = ric(next(_sequence))
    world.bind("u2", "王五", number)
    for _ in range(PER_ACCOUNT):
        await world.check("u1", "张三", ric(next(_sequence)))
    assert await world.check("u2", "王五", number, RequestInfo(principal="registrar2"))


async def test_the_caller_limit_spans_accounts_and_spares_other_callers(world: World) -> None:
    number = ric(next(_sequence))
    world.bind("target", "张三", number)
    for n in range(PER_PRINCIPAL):
        assert not await world.check(f"a{n}", "张三", ric(next(_sequence)))
    with pytest.raises(RateLimited) as refused:
        await world.check("target", "张三", number)
    assert refused.value.reason == "PRINCIPAL_CHECK_LIMIT_REACHED"
    assert await world.check("target", "张三", number, RequestInfo(principal="registrar2"))


async def test_both_limits_reached_name_the_account_and_wait_for_the_later_window(world: World) -> None:
    for n in range(PER_PRINCIPAL - PER_ACCOUNT):
        await world.check(f"a{n}", "张三", ric(next(_sequence)))
    world.now[0] += 5000  # the account's window starts later than the caller's
    for _ in range(PER_ACCOUNT):
        await world.check("u1", "张三", ric(next(_sequence)))
    with pytest.raises(RateLimited) as refused:
        await world.check("u1", "张三", ric(next(_sequence)))
    assert refused.value.reason == "CHECK_LIMIT_REACHED"
    assert refused.value.retry_after == CHECK_WINDOW_MS / 1000


async def test_the_answer_is_refused_when_the_limit_is_reached_while_it_was_judged(world: World) -> None:
    number = ric(next(_sequence))
    world.bind("u1", "张三", number)
    await world.check("u1", "张三", ric(next(_sequence)))
    # Another check's mismatch lands between this one's admission and its answer.
    original = world.indexer.compute_async

    async def racing(*args: Any, **kwargs: Any) -> IndexValue:
        world.indexer.compute_async = original  # type: ignore[method-assign]
        await world.flow.check_identity(TENANT, "u1", claim("张三", ric(next(_sequence))), CALLER)
        return await original(*args, **kwargs)

    world.indexer.compute_async = racing  # type: ignore[method-assign]
    with pytest.raises(RateLimited, match="too many wrong identity claims"):
        await world.check("u1", "张三", number)
    assert world.outcomes()[-2:] == [("mismatch", ""), ("refused", "CHECK_LIMIT_REACHED")]


@pytest.mark.parametrize(
    ("account_id", "subject", "field"),
    [
        ("", claim("张三", ric(1)), "account_id"),
        ("u1", claim("", ric(1)), "subject.name"),
        (
            "u1",
            Subject(kind=SubjectKind.PERSON, name="张三", document_type=None, document_number=ric(1)),
            "subject.document_type",
        ),
        ("u1", claim("张三", "44010619900517001"), "subject.document_number"),
    ],
)
async def test_malformed_input_is_refused_and_nothing_is_counted(
    world: World, account_id: str, subject: Subject, field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await world.flow.check_identity(TENANT, account_id, subject, CALLER)
    assert refused.value.field == field
    assert world.store.entries == []
    assert world.indexer.runs == 0


async def test_no_answer_without_the_store(world: World) -> None:
    number = ric(next(_sequence))
    world.bind("u1", "张三", number)
    world.store.down = True
    with pytest.raises(StoreUnavailable):
        await world.check("u1", "张三", number)
    assert world.store.entries == []


async def test_a_ref_sealed_for_another_purpose_or_tenant_never_matches(world: World) -> None:
    number = ric(next(_sequence))
    bound = world.bind("u1", "张三", number)
    index = world.indexer.compute(TENANT, DocumentType.CN_RIC, number)
    for associated in (associated_data("other", "identity-index"), associated_data(TENANT, "name-binding")):
        forged = sealed_to_text(world.sealer.seal(index.digest, associated=associated))
        world.store.bind(TENANT, world.account_ps("u1"), replace(bound, identity_ref=forged))
        world.now[0] += CHECK_WINDOW_MS
        assert not await world.check("u1", "张三", number)


async def test_an_identity_without_its_record_never_matches(world: World) -> None:
    number = ric(next(_sequence))
    bound = world.bind("u1", "张三", number)
    world.store.bind(TENANT, world.account_ps("u1"), replace(bound, name_binding=None, index_params=""))
    assert not await world.check("u1", "张三", number)


@pytest.mark.parametrize("params", ["", "not a phc", "$argon2id$v=19$m=8,t=1,p=1$retired"])
async def test_unreadable_or_unknown_index_params_hash_under_the_current_pepper(
    world: World, params: str
) -> None:
    number = ric(next(_sequence))
    bound = world.bind("u1", "张三", number)
    world.store.bind(TENANT, world.account_ps("u1"), replace(bound, index_params=params))
    assert await world.check("u1", "张三", number)
    assert world.indexer.runs == 1  # the check still pays one argon2id

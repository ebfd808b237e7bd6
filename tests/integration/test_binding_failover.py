"""A Redis primary killed -9 at every boundary of a binding, on a Cluster with a replica a primary.

One process answers right codes (``tests/bind_hold.py``) with ``wait_replicas=1``, the steps run
one by one as on any Cluster, each answer held after its own step k: for every k of a plain
binding, of one that establishes a claim over a squatter (its supersession), of one the binding
limit refuses (its count) and of an organization's (its names), every answer in its own tenant on
one primary. The primary's replica is then cut off and each answer runs step k+1: an acknowledged
step is written on the primary and held there unanswered (its WAIT), the confirm (not
acknowledged) answers. The process is killed, the primary killed with SIGKILL before its replica
runs again, the replica takes over: it holds exactly the steps each answer was told of, which the
intents it holds show. The repairer runs over the tenants the workers visit, as in a server, and
an answer whose first step was lost is answered again, as its caller, never told, does. For every
k: the account bound once (or refused once, counted once), the identity's members within the
limit, the verification finished with one terminal entry, the squatter superseded once, the names
indexed exactly when an organization is bound, no intent left.

A binding names its tenant among those the repairers visit (``iv1:{global}:erasure:tenants``)
before its first step. In the first round the killed primary also serves that list, and one more
answer, in a tenant on another primary, is released from before its first step: its naming must
be acknowledged before the step, or the failover loses the tenant's name while its intent, on
the other primary, survives, and no repairer ever finds it.

CI runs one round; ``IDVERIFY_CRASH_LOOPS=N`` runs N, a primary drawn at random each
(docs/RELIABILITY.md).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import cast

import pytest
import redis
from redis.crc import key_slot

from idverify.flows.bucket_repair import BucketRepairer
from idverify.store.connection import RedisClient, as_text, connect
from idverify.store.erasures import RedisErasureStore
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.local_topologies import LocalCluster, wait_until
from idverify.store.scripts import Scripts
from idverify.store.topology import ReplicaAck
from idverify.testing import RedisProcess
from tests.bind_crash import (
    ESTABLISHED,
    ESTABLISHING,
    ORG_NAMES,
    OWNER,
    PLAIN,
    SQUATTER,
    answer,
    assert_bound_once,
    assert_refused_once,
    assert_superseded_once,
    bind,
    challenge,
    names_indexed,
    store_of,
)
from tests.bind_hold import HeldAnswer, blocked_waits, held_answers
from tests.cancel_crash import LaterRepairs, pseudonym
from tests.cluster_failover import (
    FAILOVER_SECONDS,
    failover_cluster,
    promoted,
    rejoin,
    replica_cut_off,
    replicated,
    serving,
)
from tests.sequencer_crash import drawn_seed, loop_rounds, replay_hint
from tests.unit.store.test_identity_accounts import REF

# Killing and promoting nodes on a shared 2-core machine: alone, as the other failover tests.
pytestmark = [pytest.mark.slow, pytest.mark.serial]
CI_ROUNDS = 1
ROUNDS = loop_rounds(CI_ROUNDS)
# Long enough that no held step gives up while the test looks; the replica is cut off for less.
WAIT_TIMEOUT_MS = 30_000
WAITED = ReplicaAck(replicas=1, timeout_ms=2000)
TAG = OWNER["name_tag"]


@dataclass(frozen=True)
class Scenario:
    """A right answer's binding: its steps in order, its limit, how to start it and what it leaves."""

    name: str
    steps: tuple[str, ...]
    limit: int
    prepare: Callable[[RedisClient, str, str], Awaitable[str]]  # (client, tenant, account): its vf id
    finished: Callable[[RedisClient, str, str, str], Awaitable[None]]  # (client, tenant, account, vf id)
    organization: bool = False

    def intents_after(self, steps: int, vid: str) -> set[str]:
        """The intents an answer leaves once ``steps`` of its steps ran (and none after)."""
        if steps == 0:
            return set()
        if steps == 1:
            return {f"bind:{vid}"}
        if steps < self.steps.index("commit") + 1:
            return {f"bind:{vid}", f"place:{vid}"}
        return {f"place:{vid}"}


async def _plain(client: RedisClient, tenant: str, account: str) -> str:
    return await challenge(client, tenant, account, OWNER)


async def _plain_done(client: RedisClient, tenant: str, account: str, vid: str) -> None:
    await assert_bound_once(client, tenant, vid, account, TAG, types=PLAIN)


def _squatter(tenant: str) -> str:
    return pseudonym(f"{tenant}-squatter")


async def _over_a_squatter(client: RedisClient, tenant: str, account: str) -> str:
    await bind(client, tenant, _squatter(tenant), SQUATTER)
    return await challenge(client, tenant, account, OWNER, establishes=True)


async def _over_a_squatter_done(client: RedisClient, tenant: str, account: str, vid: str) -> None:
    await assert_bound_once(client, tenant, vid, account, TAG, types=ESTABLISHING)
    await assert_superseded_once(client, tenant, _squatter(tenant), vid)


async def _past_the_limit(client: RedisClient, tenant: str, account: str) -> str:
    await bind(client, tenant, pseudonym(f"{tenant}-owner"), OWNER, limit=1)
    return await challenge(client, tenant, account, OWNER)


async def _past_the_limit_done(client: RedisClient, tenant: str, account: str, vid: str) -> None:
    del account
    await assert_refused_once(client, tenant, vid, TAG)


async def _organization(client: RedisClient, tenant: str, account: str) -> str:
    return await challenge(client, tenant, account, OWNER, establishes=True, org_names=",".join(ORG_NAMES))


async def _organization_done(client: RedisClient, tenant: str, account: str, vid: str) -> None:
    await assert_bound_once(client, tenant, vid, account, TAG, types=ESTABLISHED)


SCENARIOS = (
    Scenario("plain", ("judge", "place", "commit", "confirm"), 3, _plain, _plain_done),
    Scenario(
        "over-a-squatter",
        ("judge", "place", "supersede", "commit", "confirm"),
        3,
        _over_a_squatter,
        _over_a_squatter_done,
    ),
    Scenario(
        "past-the-limit",
        ("judge", "place", "count", "commit", "confirm"),
        1,
        _past_the_limit,
        _past_the_limit_done,
    ),
    Scenario(
        "organization",
        ("judge", "place", "commit", "names", "confirm"),
        3,
        _organization,
        _organization_done,
        organization=True,
    ),
)


@dataclass(frozen=True)
class Case:
    """One held answer: its scenario, the steps it ran before the kill's boundary, where it lives."""

    scenario: Scenario
    boundary: int
    tenant: str
    account: str
    vid: str = ""

    @property
    def held(self) -> HeldAnswer:
        return HeldAnswer(self.tenant, self.vid, self.scenario.limit, self.boundary)

    @property
    def answered_next(self) -> bool:
        """Whether its next step answers with the replica cut off: the confirm, not acknowledged."""
        return self.scenario.steps[self.boundary] == "confirm"

    def __str__(self) -> str:
        return f"{self.scenario.name} after {self.boundary} step(s) ({self.tenant})"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with failover_cluster(tmp_path_factory.mktemp("binding-failover")) as setup:
        yield setup


def _slots(primary: RedisProcess) -> list[tuple[int, int]]:
    with redis.Redis(port=primary.port, socket_timeout=2) as direct:
        nodes = direct.execute_command("CLUSTER NODES")
    mine = next(info for info in nodes.values() if "myself" in str(info["flags"]))
    return [(int(r[0]), int(r[-1])) for r in mine["slots"]]


def _tenant_on(ranges: list[tuple[int, int]], label: str, *, inside: bool) -> str:
    """A tenant named after ``label`` whose slot is in ``ranges`` (or, not ``inside``, is not)."""
    for n in range(10_000):
        tenant = f"{label}-{n}"
        slot = key_slot(TenantKeys(tenant).intents().encode())
        if any(first <= slot <= last for first, last in ranges) is inside:
            return tenant
    raise AssertionError(label)  # pragma: no cover - a third of the slots are anyone's


async def _prepared(client: RedisClient, case: Case) -> Case:
    vid = await case.scenario.prepare(client, case.tenant, case.account)
    return Case(case.scenario, case.boundary, case.tenant, case.account, vid)


async def _intents(client: RedisClient, tenant: str) -> set[str]:
    members = await client.zrange(TenantKeys(tenant).intents(), 0, -1)
    return {as_text(cast("bytes", m)) for m in members}


async def _assert_as_told(client: RedisClient, case: Case) -> None:
    """The promoted replica holds the steps the answer was told of, and none after."""
    assert await _intents(client, case.tenant) == case.scenario.intents_after(case.boundary, case.vid), case
    record = {
        as_text(k): as_text(v)
        for k, v in (await client.hgetall(TenantKeys(case.tenant).verification(case.vid))).items()
    }
    if case.boundary == 0:
        assert (record["status"], record.get("binding")) == ("CHALLENGE_SENT", None), (case, record)


async def _assert_within_the_rules(client: RedisClient, case: Case) -> None:
    """What every binding leaves, whatever the scenario: members within the limit, names iff bound."""
    keys = TenantKeys(case.tenant)
    fields = [as_text(k) for k in await client.hkeys(keys.identity(REF))]
    assert 0 < len([f for f in fields if f.startswith("m:")]) <= case.scenario.limit, (case, fields)
    bound = await client.hget(keys.account(case.account), "identity") == REF.encode()
    expected = dict.fromkeys(ORG_NAMES, TAG) if case.scenario.organization and bound else {}
    assert await names_indexed(client, case.tenant, TAG) == expected, case


async def _one_round(cluster: LocalCluster, round_: int, primary: RedisProcess) -> None:
    ranges = _slots(primary)
    lists_tenants = serving(cluster, GlobalKeys.ERASURE_TENANTS) is primary
    cases = [
        Case(scenario, k, tenant, pseudonym(f"{tenant}-a"))
        for scenario in SCENARIOS
        for k in range(len(scenario.steps))
        for tenant in [_tenant_on(ranges, f"bindfo-{round_}-{scenario.name}-{k}", inside=True)]
    ]
    if lists_tenants:
        # Its first step on another primary: only the tenant's name is on the one killed.
        tenant = _tenant_on(ranges, f"bindfo-{round_}-named", inside=False)
        cases.append(Case(SCENARIOS[0], 0, tenant, pseudonym(f"{tenant}-a")))
    client = connect(cluster.url)
    try:
        cases = [await _prepared(client, case) for case in cases]
    finally:
        await client.aclose()
    replicated(cluster)

    url = f"{cluster.url}?wait_replicas=1&wait_timeout_ms={WAIT_TIMEOUT_MS}"
    with held_answers(url, [case.held for case in cases]) as held, replica_cut_off(cluster, primary):
        held.release()
        # Every answer ran its next step: held unanswered on the primary, or answered.
        wait_until(
            lambda: len(held.stopped()) + blocked_waits(primary.port) == len(cases),
            "each answer's next step",
            30,
        )
        told = {n for n, case in enumerate(cases) if case.answered_next}
        named = {len(cases) - 1} if lists_tenants else set()
        assert held.stopped() - named == told, held.said
        held.kill()
        primary.stop(hard=True)  # before its replica runs again: what it alone holds is lost
    on_primary = TenantKeys(cases[0].tenant).intents()
    wait_until(lambda: promoted(cluster, on_primary, primary), "the replica", FAILOVER_SECONDS)
    rejoin(cluster, primary)

    client = connect(cluster.url)
    try:
        scripts = Scripts(client, ack=WAITED)
        listed = set(await RedisErasureStore(client, scripts).tenants())
        for case in cases:
            # An intent no repairer will find is one never finished.
            assert not await _intents(client, case.tenant) or case.tenant in listed, case
        for case in cases:
            await _assert_as_told(client, case)
        repairer = BucketRepairer(LaterRepairs(client, scripts))
        for case in cases:
            if case.boundary == 0:
                # Its caller was never answered: it answers again, as a caller retries.
                store = store_of(client, scripts)
                await answer(store, case.tenant, case.vid, limit=case.scenario.limit)
            else:
                assert await repairer.repair(case.tenant) >= 1, case
            await case.scenario.finished(client, case.tenant, case.account, case.vid)
            await _assert_within_the_rules(client, case)
            assert await repairer.repair(case.tenant) == 0, case  # finished once
    finally:
        await client.aclose()


@pytest.mark.timeout(120 + 90 * ROUNDS)
async def test_a_primary_killed_at_every_boundary_of_a_binding_loses_only_what_was_not_told(
    cluster: LocalCluster,
) -> None:
    seed = drawn_seed()
    draw = random.Random(seed)  # noqa: S311 - a test's draw
    for round_ in range(ROUNDS):
        # The first round kills the primary of the tenants' list too; later ones any primary.
        doomed = GlobalKeys.ERASURE_TENANTS if round_ == 0 else f"bindfo-doomed-{draw.randrange(10**9)}"
        primary = serving(cluster, doomed)
        try:
            await _one_round(cluster, round_, primary)
        except Exception as error:
            msg = f"round {round_} of {ROUNDS} (the primary on port {primary.port}): "
            raise AssertionError(msg + replay_hint(seed, ROUNDS)) from error

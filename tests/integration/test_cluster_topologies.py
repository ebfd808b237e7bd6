"""The end-to-end signup and binding tests again: standalone Redis, Cluster and Sentinel.

They run on a standalone Redis, a 3-primary Redis
Cluster and a Sentinel-managed primary with a replica.

The test bodies are the e2e suite's own (subclassed here); only the servers differ: each is
``idverify serve`` with its default workers and ``--redis-url`` of the current topology. To add
another e2e class (the audit log's, erasure's), subclass it below and map its server fixtures
to ``topology_servers.start(...)`` as these do.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from idverify.client import Client
from idverify.testing import ServerProcess
from tests.e2e import test_binding as e2e_binding
from tests.e2e import test_signup as e2e_signup
from tests.e2e.conftest import IDENTITIES, everything_stored, needles_of

from .conftest import TopologyServers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(topology_servers: TopologyServers) -> ServerProcess:
    """The default configuration on the current topology."""
    return topology_servers.start("default")


@pytest.fixture(scope="module")
def registrar(server: ServerProcess) -> Iterator[Client]:
    """A registrar of the default tenant."""
    with server.client("registrar") as client:
        yield client


@pytest.fixture(scope="module")
def limit_two(topology_servers: TopologyServers, server: ServerProcess) -> ServerProcess:
    """Two accounts per identity, sms establishing names (after ``server``, whose keyring it shares)."""
    del server
    return topology_servers.start("limit2", e2e_binding.LIMIT_TWO)


@pytest.fixture(scope="module")
def limit_one(topology_servers: TopologyServers, server: ServerProcess) -> ServerProcess:
    """One account per identity, rate limits out of the way."""
    del server
    return topology_servers.start("limit1", "[verification]\nbinding_limit = 1\n" + e2e_binding.LOOSE_LIMITS)


class TestSignupOnTopology(e2e_signup.TestHappyPath):
    """Start, challenge, verify, check, organizations and idempotency."""


class TestMinorsOnTopology(e2e_signup.TestMinors):
    """Guardian consent: a step over the child's and the guardian's records in one slot."""


class TestLimitsOnTopology(e2e_binding.TestLimits):
    """Per-identity account limits and name binding."""


class TestRaceOnTopology(e2e_binding.TestRace):
    """100 concurrent signups of one identity bind exactly one account."""


class TestPrivacyOnTopology:
    """Runs last in this module: a thief with a dump of every node finds no one.

    On a Cluster a binding, a cancellation, a re-indexing and the counters run step by step,
    writing durable intents and pending members that one node never writes; this scans them too.
    """

    def test_nothing_personal_reaches_any_node_or_log(self, topology_servers: TopologyServers) -> None:
        assert len(IDENTITIES) >= 10
        assert topology_servers.topology.ports
        needles = set().union(*(needles_of(identity) for identity in IDENTITIES))
        haystack = [server.log_text().encode() for server in topology_servers.running]
        for port in topology_servers.topology.ports:
            with redis.Redis(port=port) as node:
                haystack.extend(everything_stored(node))
        blob = b"\n".join(haystack)
        assert len(blob) > 10_000
        assert [needle for needle in needles if needle in blob] == []

"""The ServerReports port's contract, on the in-memory store and on Redis alike.

``testing.memory_server_reports.MemoryServerReports`` (what ``test_keyring_watcher_usecase.py``
runs the watcher on) and ``store.server_reports.RedisServerReports`` over a real redis-server
answer every assertion here the same way. What only Redis can hold (0.1.0's report without a
schema, a report that does not decode) is tested on Redis alone at the end.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from idverify.flows.keyring_watcher import UNREPORTED_SCHEMA, ServerKeyring, ServerReports
from idverify.store.connection import RedisClient
from idverify.store.keys import GlobalKeys
from idverify.store.server_reports import RedisServerReports
from idverify.testing.memory_server_reports import MemoryServerReports

ONE = ServerKeyring("111-aa", "w2", ("w1", "w2"), "p1", schema=2)
TWO = ServerKeyring("222-bb", "w1", ("w1",), "p1", schema=2)


@pytest.fixture
def client(own_client: RedisClient) -> RedisClient:
    return own_client


@pytest.fixture(params=["memory", "redis"])
def reports(request: pytest.FixtureRequest, own_client: RedisClient) -> ServerReports:
    if request.param == "memory":
        return MemoryServerReports()
    return RedisServerReports(own_client)


def by_instance(found: list[ServerKeyring]) -> dict[str, ServerKeyring]:
    return {report.instance: report for report in found}


async def test_contract_no_reports(reports: ServerReports) -> None:
    assert await reports.running() == []
    await reports.withdraw("nobody")  # nothing to withdraw
    assert await reports.running() == []


async def test_contract_published_reports_are_listed_as_published(reports: ServerReports) -> None:
    await reports.publish(ONE, 60_000)
    await reports.publish(TWO, 60_000)
    assert by_instance(await reports.running()) == {ONE.instance: ONE, TWO.instance: TWO}


async def test_contract_a_new_report_replaces_its_instances_last(reports: ServerReports) -> None:
    await reports.publish(ONE, 60_000)
    newer = ServerKeyring(ONE.instance, "w3", ("w2", "w3"), "p2", schema=2)
    await reports.publish(newer, 60_000)
    assert await reports.running() == [newer]


async def test_contract_a_withdrawn_report_is_gone(reports: ServerReports) -> None:
    await reports.publish(ONE, 60_000)
    await reports.publish(TWO, 60_000)
    await reports.withdraw(ONE.instance)
    assert await reports.running() == [TWO]


async def test_contract_a_report_not_repeated_expires(reports: ServerReports) -> None:
    await reports.publish(ONE, 60_000)
    await reports.publish(TWO, 50)
    await asyncio.sleep(0.15)
    assert await reports.running() == [ONE]


async def test_redis_reads_0_1_0s_report_without_a_schema_and_skips_what_does_not_decode(
    client: RedisClient,
) -> None:
    legacy = json.dumps({"wrapping_current": "w1", "wrapping": ["w1"], "pepper_current": "p1"})
    await client.set(GlobalKeys.keyring_instance("old"), legacy, px=60_000)
    await client.set(GlobalKeys.keyring_instance("broken"), "{not json", px=60_000)
    await client.set(GlobalKeys.keyring_instance("partial"), json.dumps({"wrapping": []}), px=60_000)
    assert await RedisServerReports(client).running() == [
        ServerKeyring("old", "w1", ("w1",), "p1", schema=UNREPORTED_SCHEMA)
    ]


async def test_redis_stores_the_report_as_0_2_0_wrote_it(client: RedisClient) -> None:
    await RedisServerReports(client).publish(ONE, 60_000)
    key = GlobalKeys.keyring_instance(ONE.instance)
    assert json.loads(await client.get(key) or b"") == {
        "wrapping_current": "w2",
        "wrapping": ["w1", "w2"],
        "pepper_current": "p1",
        "schema": 2,
    }
    assert 0 < await client.pttl(key) <= 60_000

"""The schema check of a start and of a command, over in-memory ports: decided without Redis.

Each test shows one decision: an empty store and 0.1.0's data without a record, a newer schema
refused before anything is raised, a newer server that raised it meanwhile, servers of an older
release refused or logged while raising (and not looked for once raised), the born-walked mark
recorded only by a start that raised the store (or found it empty) with no older server beside
it, Redis down left to the next start, and a command that refuses a newer schema and writes
nothing.
``tests/unit/flows/test_server_reports.py`` and ``tests/e2e/test_rolling_upgrade.py`` run it on Redis.
"""

from __future__ import annotations

import logging
import re

import pytest

from idverify.domain.errors import ConfigError, StoreUnavailable
from idverify.flows.keyring_watcher import ServerKeyring
from idverify.flows.schema_version import FIRST_VERSION, SCHEMA_VERSION, ensure_schema, refuse_newer_schema
from idverify.testing.memory_key_checks import MemoryKeyChecks
from idverify.testing.memory_schema_versions import MemorySchemaStore
from idverify.testing.memory_server_reports import MemoryServerReports

OLD = ServerKeyring("old-0.1.0", "w1", ("w1",), "p1", schema=FIRST_VERSION)


def stores(
    version: int | None = None, *, data: bool = False
) -> tuple[MemorySchemaStore, MemoryKeyChecks, MemoryServerReports]:
    checks = MemoryKeyChecks()
    checks.tenant_keys = data
    return MemorySchemaStore(version), checks, MemoryServerReports()


async def test_an_empty_store_held_nothing_and_records_this_release() -> None:
    schema, checks, reports = stores()
    assert await ensure_schema(schema, checks, reports) == 0
    assert schema.version == SCHEMA_VERSION


async def test_data_without_a_record_is_0_1_0s() -> None:
    schema, checks, reports = stores(data=True)
    assert await ensure_schema(schema, checks, reports) == FIRST_VERSION
    assert schema.version == SCHEMA_VERSION


async def test_a_newer_schema_is_refused_and_left_as_it_is() -> None:
    schema, checks, reports = stores(SCHEMA_VERSION + 1)
    with pytest.raises(ConfigError, match=f"schema version {SCHEMA_VERSION + 1}"):
        await ensure_schema(schema, checks, reports)
    assert schema.version == SCHEMA_VERSION + 1


async def test_a_newer_server_that_raised_it_meanwhile_is_refused() -> None:
    schema, checks, reports = stores(SCHEMA_VERSION)
    schema.newer_meanwhile = SCHEMA_VERSION + 1
    with pytest.raises(ConfigError):
        await ensure_schema(schema, checks, reports)


async def test_an_older_server_stops_a_release_that_cannot_serve_beside_it() -> None:
    schema, checks, reports = stores(FIRST_VERSION)
    await reports.publish(OLD, 60_000)
    with pytest.raises(ConfigError, match=re.escape("old-0.1.0 (schema 1)")):
        await ensure_schema(schema, checks, reports, oldest_beside=SCHEMA_VERSION)
    assert schema.version == FIRST_VERSION
    await reports.withdraw(OLD.instance)
    assert await ensure_schema(schema, checks, reports, oldest_beside=SCHEMA_VERSION) == FIRST_VERSION


async def test_an_older_server_beside_this_release_is_logged_only_while_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schema, checks, reports = stores(FIRST_VERSION)
    await reports.publish(OLD, 60_000)
    with caplog.at_level(logging.WARNING, logger="idverify.schema"):
        assert await ensure_schema(schema, checks, reports) == FIRST_VERSION
    assert "old-0.1.0 (schema 1)" in caplog.text
    caplog.clear()
    reports.down = True  # not looked at again once raised
    with caplog.at_level(logging.WARNING, logger="idverify.schema"):
        assert await ensure_schema(schema, checks, reports) == SCHEMA_VERSION
    assert not caplog.records


@pytest.mark.parametrize("data", [False, True], ids=["empty store", "0.1.0's data"])
async def test_a_start_raising_with_no_older_server_beside_it_marks_new_logs_born_walked(data: bool) -> None:
    schema, checks, reports = stores(data=data)
    await ensure_schema(schema, checks, reports)
    assert schema.born_walked


@pytest.mark.parametrize("data", [False, True], ids=["empty store", "0.1.0's data"])
async def test_a_start_beside_an_older_server_leaves_new_logs_to_the_walk_for_good(data: bool) -> None:
    """Once raised, later starts neither scan for reports nor mark: only the walk records the mark."""
    schema, checks, reports = stores(data=data)
    await reports.publish(OLD, 60_000)
    await ensure_schema(schema, checks, reports)
    assert not schema.born_walked
    await reports.withdraw(OLD.instance)
    reports.down = True  # a later start does not scan the keyspace for reports
    assert await ensure_schema(schema, checks, reports) == SCHEMA_VERSION
    assert not schema.born_walked


async def test_a_start_on_a_store_raised_before_the_mark_does_not_mark_it() -> None:
    schema, checks, reports = stores(SCHEMA_VERSION, data=True)
    assert await ensure_schema(schema, checks, reports) == SCHEMA_VERSION
    assert not schema.born_walked


async def test_redis_down_leaves_the_check_to_the_next_start() -> None:
    schema, checks, reports = stores()
    schema.down = True
    assert await ensure_schema(schema, checks, reports) == -1


async def test_a_command_refuses_a_newer_schema_and_writes_nothing() -> None:
    await refuse_newer_schema(MemorySchemaStore())
    await refuse_newer_schema(MemorySchemaStore(SCHEMA_VERSION))
    newer = MemorySchemaStore(SCHEMA_VERSION + 1)
    with pytest.raises(ConfigError):
        await refuse_newer_schema(newer)
    assert newer.version == SCHEMA_VERSION + 1
    newer.down = True
    with pytest.raises(StoreUnavailable):
        await refuse_newer_schema(newer)

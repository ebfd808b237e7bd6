"""The SchemaStore port's contract, on the in-memory store and on Redis alike.

``testing.memory_schema_versions.MemorySchemaStore`` (what ``test_schema_version_usecase.py`` runs
the start's check on) and ``store.schema_versions.RedisSchemaStore`` over a real redis-server (the
global schema key and ``schema.lua``) answer every assertion here the same way.
"""

from __future__ import annotations

import pytest

from idverify.flows.schema_version import SchemaStore
from idverify.store.connection import RedisClient
from idverify.store.schema_versions import RedisSchemaStore
from idverify.testing.memory_schema_versions import MemorySchemaStore


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, own_client: RedisClient) -> SchemaStore:
    return MemorySchemaStore() if request.param == "memory" else RedisSchemaStore(own_client)


async def test_contract_nothing_is_recorded_at_first(store: SchemaStore) -> None:
    assert await store.recorded() is None


async def test_contract_a_version_is_raised_and_answers_what_was_held(store: SchemaStore) -> None:
    assert await store.raise_to(2) == 0
    assert await store.recorded() == 2
    assert await store.raise_to(2) == 2
    assert await store.raise_to(5) == 2
    assert await store.recorded() == 5


async def test_contract_a_version_is_never_lowered(store: SchemaStore) -> None:
    await store.raise_to(7)
    assert await store.raise_to(3) == 7
    assert await store.recorded() == 7


async def test_contract_the_born_walked_mark_is_absent_then_recorded_for_good(store: SchemaStore) -> None:
    assert not await store.logs_born_walked()
    await store.mark_logs_born_walked()
    await store.mark_logs_born_walked()
    assert await store.logs_born_walked()

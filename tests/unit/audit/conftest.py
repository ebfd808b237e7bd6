"""Fixtures of the audit unit tests: the scripts and the stage streams over the suite's redis-server."""

from __future__ import annotations

import pytest

from idverify.store.audit_stages import RedisAuditStages
from idverify.store.connection import RedisClient
from idverify.store.scripts import Scripts


@pytest.fixture
def scripts(redis: RedisClient) -> Scripts:
    return Scripts(redis)


@pytest.fixture
def stages(redis: RedisClient, scripts: Scripts) -> RedisAuditStages:
    return RedisAuditStages(redis, scripts)

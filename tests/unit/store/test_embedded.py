"""The embedded redis-server starts from a relative data directory, as ./scripts/serve uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from idverify.store.embedded import RedisProcess


def test_a_relative_directory_starts_and_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with RedisProcess(Path("idverify-data") / "redis") as store:
        client = redis.Redis.from_url(store.url)
        assert client.ping()
        client.close()
    assert (tmp_path / "idverify-data" / "redis" / "redis.log").is_file()

"""The embedded redis-server starts from a relative data directory, as ./scripts/serve uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from idverify.store.embedded import HASH_MAX_LISTPACK_VALUE, RedisProcess, redis_server_binary


def test_a_relative_directory_starts_and_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with RedisProcess(Path("idverify-data") / "redis") as store:
        client = redis.Redis.from_url(store.url)
        assert client.ping()
        client.close()
    assert (tmp_path / "idverify-data" / "redis" / "redis.log").is_file()


@pytest.mark.parametrize("prefer_system", [False, True], ids=["bundled", "system"])
def test_records_with_sealed_values_stay_compact(tmp_path: Path, prefer_system: bool) -> None:
    """A hash holding an identity ref (``w1:`` and 96 hex digits) keeps the compact encoding, on 6.2 and 7."""
    binary = redis_server_binary(prefer_system=prefer_system)
    with RedisProcess(tmp_path / "redis", binary=binary) as store:
        client = redis.Redis.from_url(store.url)
        client.hset("iv1:{t:a}:acct:x", mapping={"identity": "w1:" + "ab" * 48, "kind": "person"})
        assert client.object("encoding", "iv1:{t:a}:acct:x") in {b"ziplist", b"listpack"}
        client.hset("iv1:{t:a}:acct:x", "long", "x" * (HASH_MAX_LISTPACK_VALUE + 1))
        assert client.object("encoding", "iv1:{t:a}:acct:x") == b"hashtable"
        client.close()

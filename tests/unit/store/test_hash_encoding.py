"""An external Redis below the hash limit the records need is found; one that will not say is let be."""

from __future__ import annotations

from pathlib import Path

from idverify.store.connection import connect
from idverify.store.embedded import HASH_MAX_LISTPACK_VALUE, RedisProcess, free_port
from idverify.store.hash_encoding import loose_hash_limit
from idverify.store.topology import close_client


async def _limit_of(url: str) -> int | None:
    redis = connect(url, pool_size=1)
    try:
        return await loose_hash_limit(redis)
    finally:
        await close_client(redis)


class TestLooseHashLimit:
    async def test_an_operators_redis_at_the_default_is_found(self, tmp_path: Path) -> None:
        """A careless operator's Redis left at 64 is named with its limit."""
        with RedisProcess(tmp_path, port=free_port(), extra_args=["--hash-max-ziplist-value", "64"]) as store:
            assert await _limit_of(store.url) == 64

    async def test_the_embedded_setting_passes(self, tmp_path: Path) -> None:
        """The limit the embedded Redis starts with, or more, is no finding."""
        with RedisProcess(tmp_path, port=free_port()) as store:
            assert await _limit_of(store.url) is None
        with RedisProcess(
            tmp_path / "more", port=free_port(), extra_args=["--hash-max-ziplist-value", "512"]
        ) as store:
            assert await _limit_of(store.url) is None
        assert HASH_MAX_LISTPACK_VALUE == 128

    async def test_a_redis_refusing_config_is_let_be(self, tmp_path: Path) -> None:
        """A managed Redis whose ACL refuses CONFIG gives no finding and no error."""
        with RedisProcess(tmp_path, port=free_port(), extra_args=["--hash-max-ziplist-value", "64"]) as store:
            redis = connect(store.url, pool_size=1)
            try:
                await redis.execute_command(
                    "ACL", "SETUSER", "app", "on", ">secret-pw", "~*", "+@all", "-config"
                )
            finally:
                await close_client(redis)
            assert await _limit_of(f"redis://app:secret-pw@127.0.0.1:{store.port}/0") is None

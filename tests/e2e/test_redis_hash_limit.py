"""A careless operator's external Redis, left at the default hash limit, is named at start-up."""

from __future__ import annotations

from pathlib import Path

from .conftest import server_on_own_redis

WARNING = "redis: hash-max-listpack-value is 64; set it to 128"


def test_an_external_redis_at_the_default_limit_is_warned_of(tmp_path: Path) -> None:
    """The server serves, and says once which setting makes its records take twice the memory."""
    with server_on_own_redis(tmp_path, extra_args=["--hash-max-ziplist-value", "64"]) as (_, server):
        assert server.log_text().count(WARNING) == 1


def test_an_external_redis_set_as_the_readme_says_is_not(tmp_path: Path) -> None:
    """At the limit README asks for, no line."""
    with server_on_own_redis(tmp_path) as (_, server):
        assert "hash-max-listpack-value" not in server.log_text()

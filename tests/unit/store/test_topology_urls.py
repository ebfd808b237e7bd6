"""Redis URLs: which topology each names, our options, credentials, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from idverify.domain.errors import ConfigError
from idverify.store.topology import PASSWORD_ENV, PASSWORD_FILE_ENV, TopologyKind, parse_redis_url
from idverify.supervisor import available_cores, worker_cores


class TestStandalone:
    def test_plain_urls_pass_through_without_our_options(self) -> None:
        """redis://, rediss:// and unix:// reach redis-py as given, minus wait_* options."""
        parsed = parse_redis_url("redis://cache:6380/2?wait_replicas=2&wait_timeout_ms=250")
        assert parsed.kind is TopologyKind.STANDALONE
        assert parsed.url == "redis://cache:6380/2"
        assert (parsed.ack.replicas, parsed.ack.timeout_ms) == (2, 250)
        assert parse_redis_url("unix:///run/redis.sock?db=0").url == "unix:///run/redis.sock?db=0"
        assert parse_redis_url("rediss://cache:6380/0").ack.replicas == 0


class TestCluster:
    def test_seed_nodes_and_tls(self) -> None:
        """redis+cluster:// lists seed nodes; rediss+cluster:// turns TLS on; no WAIT by default."""
        parsed = parse_redis_url("rediss+cluster://u:pw@a:7000,b:7001,[::1]:7002?ssl_ca_certs=/ca.pem")
        assert parsed.kind is TopologyKind.CLUSTER
        assert parsed.nodes == (("a", 7000), ("b", 7001), ("::1", 7002))
        assert parsed.tls
        assert parsed.tls_options == {"ssl_ca_certs": "/ca.pem"}
        assert (parsed.username, parsed.password) == ("u", "pw")
        assert parsed.ack.replicas == 0

    def test_a_database_other_than_zero_is_refused(self) -> None:
        """Cluster has database 0 only."""
        with pytest.raises(ConfigError, match="only database 0"):
            parse_redis_url("redis+cluster://a:7000/3")


class TestSentinel:
    def test_sentinels_service_and_database(self) -> None:
        """redis+sentinel://s1,s2/service/db; sentinel URLs wait for one replica by default."""
        parsed = parse_redis_url("redis+sentinel://s1:26379,s2/idverify/4")
        assert parsed.kind is TopologyKind.SENTINEL
        assert parsed.nodes == (("s1", 26379), ("s2", 26379))
        assert (parsed.service, parsed.db) == ("idverify", 4)
        assert parsed.ack.replicas == 1

    def test_the_service_name_is_required(self) -> None:
        """Without /service the URL is refused."""
        with pytest.raises(ConfigError, match="service"):
            parse_redis_url("redis+sentinel://s1:26379")


class TestRefusals:
    @pytest.mark.parametrize(
        "url",
        [
            "memcached://x:1",
            "redis+cluster://a:notaport",
            "redis+cluster://a:7000?color=blue",
            "redis+sentinel://s:26379/name?wait_replicas=-1",
            "redis+sentinel://s:26379/name?wait_timeout_ms=soon",
        ],
    )
    def test_malformed_urls_are_configuration_errors(self, url: str) -> None:
        """Unknown schemes, bad ports, unknown options and bad numbers fail at start-up."""
        with pytest.raises(ConfigError):
            parse_redis_url(url)


class TestPasswords:
    def test_the_url_wins_then_the_file_then_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A password file (a mounted Secret) is read at connect time; the URL's wins over it."""
        secret = tmp_path / "password"
        secret.write_text("from-file\n", encoding="utf-8")
        monkeypatch.setenv(PASSWORD_ENV, "from-env")
        assert parse_redis_url("redis+cluster://a:1").password == "from-env"  # noqa: S105 - test values
        monkeypatch.setenv(PASSWORD_FILE_ENV, str(secret))
        assert parse_redis_url("redis+cluster://a:1").password == "from-file"  # noqa: S105 - test values
        assert parse_redis_url("redis+cluster://:inline@a:1").password == "inline"  # noqa: S105 - test values

    def test_an_unreadable_password_file_is_a_configuration_error(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A missing file names the variable rather than connecting without a password."""
        monkeypatch.setenv(PASSWORD_FILE_ENV, str(tmp_path / "missing"))
        with pytest.raises(ConfigError, match=PASSWORD_FILE_ENV):
            _ = parse_redis_url("redis+cluster://a:1").password

    def test_the_password_is_not_in_the_repr(self) -> None:
        """Logging a parsed URL never prints its password."""
        assert "hunter2" not in repr(parse_redis_url("redis+cluster://:hunter2@a:1"))


class TestCores:
    def test_a_cgroup_quota_caps_the_worker_count(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """cpu.max "150000 100000" (1.5 CPUs) means 2 workers at most; "max" means no cap."""
        cpu_max = tmp_path / "cpu.max"
        monkeypatch.setattr("idverify.supervisor._CGROUP_CPU_MAX", cpu_max)
        monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(64)))
        cpu_max.write_text("150000 100000\n", encoding="ascii")
        assert available_cores() == 2
        cpu_max.write_text("max 100000\n", encoding="ascii")
        assert available_cores() == 64
        cpu_max.unlink()
        assert available_cores() == 64

    def test_workers_take_the_cores_of_the_affinity_in_turn(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Worker i gets core i of the affinity, wrapping round when there are more workers."""
        monkeypatch.setattr("idverify.supervisor._CGROUP_CPU_MAX", tmp_path / "absent")
        monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {7, 2, 4})
        assert worker_cores(1) == [2]
        assert worker_cores(3) == [2, 4, 7]
        assert worker_cores(5) == [2, 4, 7, 2, 4]

    def test_a_quota_narrower_than_the_affinity_pins_nothing(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Under a quota narrower than the affinity, the kernel places the workers.

        Containers on one node see the same cores: pinning each one's workers to the first of
        them would pile the containers onto those cores.
        """
        cpu_max = tmp_path / "cpu.max"
        monkeypatch.setattr("idverify.supervisor._CGROUP_CPU_MAX", cpu_max)
        monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(64)))
        cpu_max.write_text("200000 100000\n", encoding="ascii")
        assert worker_cores(2) == []
        monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1})
        assert worker_cores(2) == [0, 1]

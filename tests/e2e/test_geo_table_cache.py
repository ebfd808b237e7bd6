"""The workers of `idverify serve` map one cache file of IP tables, built once for all of them."""

from __future__ import annotations

import shutil
import signal
import stat
import time
from pathlib import Path

import pytest

from idverify.flows.ip_locator import GEO_TABLE_CACHE
from idverify.geo import default_database_path
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2

from .conftest import when_geo_loaded

pytestmark = pytest.mark.e2e
# A cold build takes seconds on a quiet machine and can take many times that on a busy one.
READY_PATIENCE_SECONDS = 120.0


def mapped_files(pid: int, directory: Path) -> set[str]:
    """The files under ``directory`` that a process maps, with their permissions."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text(encoding="ascii").splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith(str(directory)):
            found.add(f"{fields[1]} {fields[5]}")
    return found


def every_worker_answers(server: ServerProcess, workers: int) -> None:
    """Lookups on fresh connections, which the kernel spreads over the workers."""
    for _ in range(4 * workers):
        with server.client("platform") as platform:
            answer = when_geo_loaded(
                lambda: platform.account.LookupIp(account_pb2.LookupIpRequest(ip="8.8.8.8"))
            )
        assert answer.location.country_code == "US"


def wait_ready_lines(server: ServerProcess, count: int, marker: str = "geo: IP tables ready") -> list[str]:
    """The workers' log lines that hold ``marker`` (a load's), once there are ``count`` of them."""
    deadline = time.monotonic() + READY_PATIENCE_SECONDS
    while True:
        lines = [line for line in server.log_text().splitlines() if marker in line]
        if len(lines) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(lines) >= count, server.log_tail()
    return lines


class TestTableCache:
    def test_workers_map_one_file_built_once_and_a_restart_maps_it_again(self, tmp_path: Path) -> None:
        # A configured file (the bundled one, never reloaded, is not): SIGHUP reloads it.
        database = tmp_path / "GeoLite2-City.mmdb"
        shutil.copyfile(default_database_path(), database)
        config = f'[geo]\ndatabase = "{database}"\n'
        server = ServerProcess(tmp_path, config=config, extra_args=["--workers", "2"])
        cache = server.data_dir / GEO_TABLE_CACHE
        with server:
            lines = wait_ready_lines(server, 2)
            every_worker_answers(server, 2)
            workers = server.server_pids()[1:]
            assert len(workers) == 2
            files = list(cache.glob("*.tables"))
            assert len(files) == 1
            inode = files[0].stat().st_ino
            for pid in workers:
                assert mapped_files(pid, cache) == {f"r--s {files[0]}"}
            assert all("mapped from" in line for line in lines)
            assert server.log_text().count("geo: built the IP tables") == 1

            # A reload of the same file maps the same tables again in every worker: nothing is rebuilt.
            assert server.process is not None
            server.process.send_signal(signal.SIGHUP)
            wait_ready_lines(server, 2, marker="IP database loaded: mmdb")
            every_worker_answers(server, 2)
            assert [path.stat().st_ino for path in cache.glob("*.tables")] == [inode]
            assert server.log_text().count("geo: built the IP tables") == 1

        with ServerProcess(tmp_path, config=config, extra_args=["--workers", "2"]) as again:
            lines = wait_ready_lines(again, 4)
            every_worker_answers(again, 2)
            assert all("mapped from" in line for line in lines)
            assert again.log_text().count("geo: built the IP tables") == 1  # the first server's
            assert [path.stat().st_ino for path in cache.glob("*.tables")] == [inode]
            for pid in again.server_pids()[1:]:
                assert mapped_files(pid, cache) == {f"r--s {files[0]}"}


class TestTestServers:
    def test_a_test_server_on_the_bundled_database_maps_the_tables_built_once(self, tmp_path: Path) -> None:
        """``ServerProcess`` copies the tables its test process built: no worker builds them (CI's time)."""
        with ServerProcess(tmp_path, extra_args=["--workers", "2"]) as server:
            lines = wait_ready_lines(server, 2)
            every_worker_answers(server, 2)
            assert all("mapped from" in line for line in lines)
            assert "geo: built the IP tables" not in server.log_text()
            cache = server.data_dir / GEO_TABLE_CACHE
            assert stat.S_IMODE(cache.stat().st_mode) == 0o700
            files = list(cache.glob("*.tables"))
            assert len(files) == 1
            assert stat.S_IMODE(files[0].stat().st_mode) == 0o600

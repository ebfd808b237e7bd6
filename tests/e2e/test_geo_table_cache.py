"""The workers of `idverify serve` map one cache file of IP tables, built once for all of them."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from idverify.flows.ip_locator import GEO_TABLE_CACHE
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2

from .test_ip_location import LOAD_PATIENCE_SECONDS

pytestmark = pytest.mark.e2e


def mapped_files(pid: int, directory: Path) -> set[str]:
    """The files under ``directory`` that a process maps, with their permissions."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text(encoding="ascii").splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith(str(directory)):
            found.add(f"{fields[1]} {fields[5]}")
    return found


def every_worker_answers(server: ServerProcess, workers: int) -> None:
    """A lookup on fresh connections until each worker has loaded (it holds lookups until then)."""
    for _ in range(4 * workers):
        with server.client("platform") as platform:
            answer = platform.account.LookupIp(
                account_pb2.LookupIpRequest(ip="8.8.8.8"), timeout=LOAD_PATIENCE_SECONDS
            )
        assert answer.location.country_code == "US"


def wait_ready_lines(server: ServerProcess, count: int) -> list[str]:
    """The workers' "IP tables ready" log lines, once there are ``count`` of them."""
    server.wait_quiet()
    lines = [line for line in server.log_text().splitlines() if "geo: IP tables ready" in line]
    assert len(lines) >= count, server.log_tail()
    return lines


class TestTableCache:
    def test_workers_map_one_file_built_once_and_a_restart_maps_it_again(self, tmp_path: Path) -> None:
        server = ServerProcess(tmp_path, extra_args=["--workers", "2"])
        cache = server.data_dir / GEO_TABLE_CACHE
        with server:
            every_worker_answers(server, 2)
            lines = wait_ready_lines(server, 2)
            workers = server.server_pids()[1:]
            assert len(workers) == 2
            files = list(cache.glob("*.tables"))
            assert len(files) == 1
            inode = files[0].stat().st_ino
            for pid in workers:
                assert mapped_files(pid, cache) == {f"r--s {files[0]}"}
            assert sum("built in this process" in line for line in lines) <= 1

            # A reload of the same file maps the same tables again: nothing is rebuilt.
            assert server.process is not None
            server.process.send_signal(signal.SIGHUP)
            every_worker_answers(server, 2)
            server.wait_quiet()
            assert [path.stat().st_ino for path in cache.glob("*.tables")] == [inode]

        with ServerProcess(tmp_path, extra_args=["--workers", "2"]) as again:
            every_worker_answers(again, 2)
            lines = wait_ready_lines(again, 4)
            assert "built in this process" not in "\n".join(lines[2:])
            assert [path.stat().st_ino for path in cache.glob("*.tables")] == [inode]
            for pid in again.server_pids()[1:]:
                assert mapped_files(pid, cache) == {f"r--s {files[0]}"}

"""``idverify migrate audit-tiles``: a log whose nodes Redis keeps moved into tiles, online.

A real redis-server holds logs as a deployment from before ``audit_tiles_dir`` left them (every
node in Redis), filled through the prelude's own ``audit()`` and integrated without tiles. The
command runs as operators run it: copied while a server serves signups without the setting,
killed with SIGKILL mid-way and run again (the same bytes as one run), finished once the server
runs with the setting, verified, and refused in one line for bad input with nothing written.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest
import redis

from idverify.audit import merkle
from idverify.audit.checkpoint import load_public_key, verify_signed_head
from idverify.audit.tile_mirror import SIZE_FILE
from idverify.audit.tiles_move import RECORD_FILE
from idverify.cli import migrate as migrate_command
from idverify.cli.app import main
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.connection import connect
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender
from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary
from idverify.v1 import audit_pb2

from .conftest import LOOSE, person, verify
from .test_audit import signed_head
from .test_backup import idverify

pytestmark = pytest.mark.e2e

ENTRIES = {"acme": 10_000, "beta": 300}  # acme: three catch-up batches of 4,096
FILLER = 6000  # entries of the served log before its signups


def fill_and_integrate(url: str, tenant: str, count: int) -> None:
    """Appends ``count`` entries to the tenant's log and integrates them as a server without tiles does."""

    async def run() -> None:
        redis = connect(url)
        try:
            appender = SyntheticAppender(redis)
            base = {"principal": f"{tenant}/registrar/filler", "request_id": "", "trace_id": ""}
            for first in range(0, count, 1000):
                events = [
                    (base, {"type": "client.created", "outcome": "created", "n": f"{n}"})
                    for n in range(first, min(count, first + 1000))
                ]
                await appender.append(tenant, events)
            await RedisAuditLog(redis, Scripts(redis)).integrate(tenant)
        finally:
            await redis.aclose(close_connection_pool=True)

    asyncio.run(run())


def files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def migrate(store: RedisProcess, tiles: Path, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return idverify(
        "migrate",
        "audit-tiles",
        "--redis-url",
        store.url,
        "--audit-tiles-dir",
        str(tiles),
        "--data-dir",
        str(data),
        *args,
    )


def node_chunks(store: RedisProcess, tenant: str) -> list[bytes]:
    """The tenant's stored tree node chunks (none once its tree is kept in tiles)."""
    with redis.Redis.from_url(store.url) as client:
        return list(client.scan_iter(match=TenantKeys(tenant).audit_tree("*", "*")))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A Redis holding the untiled logs of ``ENTRIES``."""
    directory = tmp_path_factory.mktemp("migrate-redis")
    with RedisProcess(directory, port=free_port(), binary=redis_server_binary(prefer_system=True)) as redis:
        for tenant, count in ENTRIES.items():
            fill_and_integrate(redis.url, tenant, count)
        yield redis


def dumped(store: RedisProcess) -> dict[bytes, bytes | None]:
    """Every key of the store and its serialized value."""
    with redis.Redis.from_url(store.url) as client:
        return {key: client.dump(key) for key in client.scan_iter()}


def command_of(store: RedisProcess, tiles: Path, data: Path) -> list[str]:
    """The copy's command line, to run and kill."""
    return [
        *(sys.executable, "-m", "idverify", "migrate", "audit-tiles", "--redis-url", store.url),
        *("--audit-tiles-dir", str(tiles), "--data-dir", str(data)),
    ]


def clean_env() -> dict[str, str]:
    """The environment without the test run's IDVERIFY_* variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}


def killed_until_done(store: RedisProcess, tiles: Path, data: Path) -> int:
    """Runs the copy, killing it with SIGKILL at a later point each time, until a run ends; the kills."""
    size_file = tiles / "acme" / SIZE_FILE
    command, env = command_of(store, tiles, data), clean_env()
    kills = 0
    # The moments: the record written, then each catch-up batch's size file.
    for reached in (0, 1, 4096, 8192, None):
        run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while reached is not None and run.poll() is None:
            held = int(size_file.read_text()) if size_file.exists() else -1
            if (tiles / "acme" / RECORD_FILE).exists() and held >= reached:
                run.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.005)
        _, err = run.communicate(timeout=120)
        if run.returncode == 0:
            return kills
        assert run.returncode == -signal.SIGKILL, err
    pytest.fail("the copy never ended")


def test_a_copy_killed_at_any_moment_ends_in_the_same_bytes_and_then_finishes_verified(
    store: RedisProcess, tmp_path: Path
) -> None:
    """Killed mid-copy and run again, the tiles are one run's, byte for byte; finish and verify agree.

    The copy writes Redis nothing; the finish switches each log (no node left in Redis) and
    trims its entries, and its report proves the tiles consistent with the head it started from.
    """
    before = dumped(store)
    once = migrate(store, tmp_path / "once", tmp_path / "data")
    assert once.returncode == 0, once.stderr
    killed = tmp_path / "killed"
    assert killed_until_done(store, killed, tmp_path / "data") >= 1
    assert dumped(store) == before  # copies, whole or killed, leave Redis as it was
    assert files(killed) == files(tmp_path / "once")
    assert (killed / "acme" / SIZE_FILE).read_text() == f"{ENTRIES['acme']}\n"

    # The finish killed once its switch unlinked Redis's nodes (its trim under way or not): the rerun ends it.
    finishing = subprocess.Popen(
        [*command_of(store, killed, tmp_path / "data"), "--finish"],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while finishing.poll() is None and node_chunks(store, "acme"):
        time.sleep(0.005)
    finishing.send_signal(signal.SIGKILL)
    finishing.wait(timeout=60)
    finished = migrate(store, killed, tmp_path / "data", "--finish", "--json")
    assert finished.returncode == 0, finished.stderr
    reports = {report["tenant"]: report for report in json.loads(finished.stdout)["tenants"]}
    assert set(reports) == set(ENTRIES)
    acme = reports["acme"]
    assert acme["ok"], acme
    assert acme["kept_in_tiles"]
    assert acme["moved_from"]["size"] == acme["tree_size"] == acme["log_size"] == ENTRIES["acme"]
    assert acme["trimmed"] == ENTRIES["acme"] - 4096
    assert acme["entries_in_redis"] + acme["trimmed"] == acme["log_size"]
    assert acme["entries_in_bundles"] >= acme["trimmed"]
    assert node_chunks(store, "acme") == []

    again = migrate(store, killed, tmp_path / "data", "--verify")
    assert again.returncode == 0, again.stderr
    assert "tenant acme: OK" in again.stderr

    # A tile altered by a byte: the check finds it, naming the node.
    tile = killed / "acme" / "tile" / "0" / "001"
    data = bytearray(tile.read_bytes())
    data[100] ^= 1
    tile.write_bytes(bytes(data))
    tampered = migrate(store, killed, tmp_path / "data", "--verify", "--tenant", "acme")
    assert tampered.returncode == 1
    assert "FAILED: node 0/259 differs" in tampered.stderr


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[RedisProcess]:
    """A Redis of its own holding two small untiled logs, ``acme``'s and ``beta``'s."""
    with RedisProcess(
        tmp_path / "redis", port=free_port(), binary=redis_server_binary(prefer_system=True)
    ) as redis:
        fill_and_integrate(redis.url, "acme", 700)
        fill_and_integrate(redis.url, "beta", 300)
        yield redis


def test_bad_input_is_refused_in_one_line_and_writes_nothing(
    small_store: RedisProcess, tmp_path: Path
) -> None:
    """An unknown tenant, a file for a directory, Redis away, a folder of another log: exit 2, no file."""
    store = small_store
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    away = RedisProcess(tmp_path / "away", port=free_port())
    cases = {
        "unknown tenant": migrate(store, tiles, tmp_path / "data", "--tenant", "nobody"),
        "a file": migrate(store, a_file, tmp_path / "data"),
        "redis away": migrate(away, tiles, tmp_path / "data"),
    }
    for case, result in cases.items():
        assert result.returncode == 2, (case, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (case, result.stderr)
        assert files(tiles) == {}, case
    assert "nobody" in cases["unknown tenant"].stderr
    assert "not a directory" in cases["a file"].stderr

    # Another log's tiles where beta's go: refused before anything of either tenant is written.
    copied = migrate(store, tmp_path / "acme-tiles", tmp_path / "data", "--tenant", "acme")
    assert copied.returncode == 0, copied.stderr
    (tmp_path / "acme-tiles" / "acme").rename(tiles / "beta")
    before = files(tiles)
    other = migrate(store, tiles, tmp_path / "data")
    assert other.returncode == 2, other.stderr
    assert "another log" in other.stderr
    assert files(tiles) == before


def test_a_finished_log_is_not_copied_again(tmp_path: Path) -> None:
    """Once every log is kept in tiles, a copy says so and writes nothing; --verify still checks it."""
    with RedisProcess(
        tmp_path / "redis", port=free_port(), binary=redis_server_binary(prefer_system=True)
    ) as store:
        fill_and_integrate(store.url, "gamma", 500)
        tiles = tmp_path / "tiles"
        assert migrate(store, tiles, tmp_path / "data").returncode == 0
        assert migrate(store, tiles, tmp_path / "data", "--finish").returncode == 0
        before = files(tiles)
        again = migrate(store, tiles, tmp_path / "data")
        assert again.returncode == 2
        assert "kept in tiles already" in again.stderr
        assert files(tiles) == before
        assert migrate(store, tiles, tmp_path / "data", "--verify").returncode == 0


class Signups:
    """Signups through a server, one after another on a thread, until stopped; their verification ids."""

    def __init__(self, server: ServerProcess, prefix: str) -> None:
        self.server, self.prefix, self.done = server, prefix, list[str]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        with self.server.client("registrar") as registrar:
            while not self._stop.is_set():
                account = f"{self.prefix}-{len(self.done)}"
                self.done.append(verify(self.server, registrar, person(), account).verification_id)


def test_a_serving_server_loses_no_signup_while_its_log_moves(tmp_path: Path) -> None:
    """Signups go on while the log is copied and finished; each one's entries are in the moved log, proven.

    The operator's sequence: copy while the server runs without the setting, restart it with
    the setting, finish while it serves; then every signup's entries are in a head read from
    the tiles, and the move verifies.
    """
    tiles = tmp_path / "tiles"
    data = tmp_path / "migrate-data"
    with RedisProcess(
        tmp_path / "redis", port=free_port(), binary=redis_server_binary(prefer_system=True)
    ) as store:
        plain = ServerProcess(tmp_path / "server", config=LOOSE, redis_url=store.url)
        with plain:
            fill_and_integrate(store.url, "default", FILLER)
            with Signups(plain, "before") as before:
                while len(before.done) < 3:
                    time.sleep(0.05)
                copied = migrate(store, tiles, data)
                assert copied.returncode == 0, copied.stderr
        tiled = ServerProcess(
            tmp_path / "server", config=f'audit_tiles_dir = "{tiles}"\n' + LOOSE, redis_url=store.url
        )
        with tiled:
            with Signups(tiled, "after") as after:
                while len(after.done) < 3:
                    time.sleep(0.05)
                finished = migrate(store, tiles, data, "--finish", "--json")
                assert finished.returncode == 0, finished.stderr
                until = len(after.done) + 3
                while len(after.done) < until:
                    time.sleep(0.05)
            proven(tiled, [*before.done, *after.done])
        report = json.loads(finished.stdout)["tenants"][0]
        assert report["ok"], report
        assert report["kept_in_tiles"]
        assert report["moved_from"]["size"] >= FILLER
        assert migrate(store, tiles, data, "--verify").returncode == 0


def proven(server: ServerProcess, verification_ids: list[str]) -> None:
    """Each verification's entries are in the log, each proven in a signed head read from the tiles."""
    with server.client("auditor") as auditor:
        answer = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest())
        head = signed_head(answer.head)
        verify_signed_head(head, load_public_key(answer.public_key.encode()))
        size, root = head.head.size, head.head.root_hash
        events = list(
            auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest(start_index=FILLER, limit=size - FILLER))
        )
        for verification_id in verification_ids:
            mine = [item for item in events if verification_id.encode() in item.leaf]
            assert mine, verification_id
            for item in mine:
                proof = auditor.audit.GetInclusionProof(
                    audit_pb2.GetInclusionProofRequest(index=item.event.index, tree_size=size)
                )
                merkle.verify_inclusion(
                    merkle.leaf_hash(item.leaf), item.event.index, size, list(proof.hashes), root
                )


def test_a_run_without_a_terminal_prints_its_progress_in_lines_and_a_report(
    small_store: RedisProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Standard error is no terminal here: no bar, a line of entries and entries a second instead."""
    monkeypatch.setattr(migrate_command, "_LINE_SECONDS", 0.0)  # every update, not every five seconds
    common = ["--redis-url", small_store.url, "--audit-tiles-dir", str(tmp_path / "tiles")]
    common += ["--data-dir", str(tmp_path / "data"), "--tenant", "acme"]
    assert main(["migrate", "audit-tiles", *common]) == 0
    copied = capsys.readouterr().err
    assert "idverify: tenant acme: copy: 700 entries (" in copied
    assert "\r" not in copied  # no bar drawn
    assert main(["migrate", "audit-tiles", *common, "--verify", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["tenants"][0]["moved_from"]["size"] == 700
    assert "tenant acme: verify: 700 entries" in err

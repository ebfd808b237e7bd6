"""The ``idverify geo`` commands."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idverify.cli.geo import add_geo_commands


def run(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="idverify")
    add_geo_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    return args.handler(args, out), out.getvalue()


class TestGeoLookup:
    def test_lines(self, small_mmdb: Path) -> None:
        """One tab-separated line per address, in order."""
        status, output = run(
            "geo", "lookup", "--database", str(small_mmdb), "1.0.0.1", "::ffff:4.0.0.1", "10.0.0.1"
        )
        assert status == 0
        lines = [line.split("\t") for line in output.splitlines()]
        assert lines[0][:5] == ["1.0.0.1", "广东", "Guangdong", "CN", "CN-GD"]
        assert lines[0][5] == "GeoLite2-City"
        assert lines[1][:4] == ["::ffff:4.0.0.1", "中国香港", "Hong Kong, China", "HK"]
        assert lines[2] == ["10.0.0.1", "未知", "Unknown", "-", "-", "-", "-"]

    def test_json(self, small_mmdb: Path) -> None:
        """--json prints one object per line with every field."""
        status, output = run(
            "geo", "lookup", "--json", "--database", str(small_mmdb), "--type", "mmdb", "2.0.0.1"
        )
        assert status == 0
        answer = json.loads(output)
        assert answer["ip"] == "2.0.0.1"
        assert (answer["display"], answer["display_en"], answer["country_code"], answer["region_code"]) == (
            "美国",
            "United States",
            "US",
            "",
        )
        assert answer["source"] == "GeoLite2-City"
        assert answer["source_build_date"]

    def test_malformed_address(self, small_mmdb: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A malformed address is reported and the others still answered; exit 64."""
        status, output = run("geo", "lookup", "--database", str(small_mmdb), "1.2.3", "1.0.0.1")
        assert status == 64
        assert output.startswith("1.0.0.1\t广东")
        assert "1.2.3" in capsys.readouterr().err

    def test_bad_database(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An unusable database exits 65 with a message."""
        bad = tmp_path / "bad.mmdb"
        bad.write_bytes(b"nothing")
        assert run("geo", "lookup", "--database", str(bad), "1.0.0.1")[0] == 65
        assert "bad.mmdb" in capsys.readouterr().err


class TestGeoInfo:
    def test_text(self, small_mmdb: Path) -> None:
        """Type, path, build date and record count."""
        status, output = run("geo", "info", "--database", str(small_mmdb))
        assert status == 0
        fields = dict(line.split(": ", 1) for line in output.splitlines())
        assert fields["type"] == "mmdb"
        assert fields["path"] == str(small_mmdb)
        assert fields["name"] == "GeoLite2-City"
        assert fields["record_count"] == "12"
        assert fields["build_date"]

    def test_json(self, small_mmdb: Path) -> None:
        """--json prints one object per database."""
        status, output = run("geo", "info", "--json", "--database", str(small_mmdb))
        assert status == 0
        assert json.loads(output)["ip_versions"] == [4, 6]


class TestOldDatabaseWarning:
    """The bundled database's warning that it is old: once per user and file, not every call."""

    @staticmethod
    def lookup(cache: Path) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}
        return subprocess.run(
            [sys.executable, "-m", "idverify", "geo", "lookup", "8.8.8.8"],
            capture_output=True,
            text=True,
            env={**env, "XDG_CACHE_HOME": str(cache)},
            timeout=60,
            check=False,
        )

    def test_said_once(self, tmp_path: Path) -> None:
        first = self.lookup(tmp_path / "cache")
        assert first.returncode == 0
        assert first.stdout.startswith("8.8.8.8\t美国")
        assert first.stderr.startswith("idverify geo: warning: IP locations come from the bundled")
        assert len(first.stderr.splitlines()) == 1
        stamps = list((tmp_path / "cache" / "idverify").iterdir())
        assert len(stamps) == 1
        assert str(stamps[0]) in first.stderr
        again = self.lookup(tmp_path / "cache")
        assert (again.returncode, again.stdout, again.stderr) == (0, first.stdout, "")
        # Another user (another cache) is told too.
        assert "warning" in self.lookup(tmp_path / "other").stderr

    def test_said_every_time_where_no_stamp_can_be_kept(self, tmp_path: Path) -> None:
        """A cache path that cannot be a directory: the warning every time, no traceback."""
        blocker = tmp_path / "file"
        blocker.write_text("", encoding="utf-8")
        for _ in range(2):
            done = self.lookup(blocker)
            assert done.returncode == 0
            assert done.stderr.startswith("idverify geo: warning:")
            assert "shown once" not in done.stderr
            assert len(done.stderr.splitlines()) == 1

    def test_a_file_given_is_not_warned_about(self, small_mmdb: Path, tmp_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}
        done = subprocess.run(
            [sys.executable, "-m", "idverify", "geo", "lookup", "--database", str(small_mmdb), "1.0.0.1"],
            capture_output=True,
            text=True,
            env={**env, "XDG_CACHE_HOME": str(tmp_path)},
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert not (tmp_path / "idverify").exists()

    def test_a_corrupt_file_is_one_line(self, small_mmdb: Path, tmp_path: Path) -> None:
        """Truncated in its tree or its metadata: exit 65 and one line naming the file."""
        data = small_mmdb.read_bytes()
        for name, contents in (("head.mmdb", data[:200]), ("tail.mmdb", data[: len(data) - 40])):
            broken = tmp_path / name
            broken.write_bytes(contents)
            done = subprocess.run(
                [sys.executable, "-m", "idverify", "geo", "lookup", "--database", str(broken), "1.0.0.1"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 65
            assert done.stderr.startswith(f"idverify geo: {broken}")
            assert len(done.stderr.splitlines()) == 1

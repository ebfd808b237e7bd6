"""The ``idverify geo`` commands."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from idverify.geo.commands import add_geo_commands


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

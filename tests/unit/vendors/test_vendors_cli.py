# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""`idverify vendors check` against the fakes: ok, bad credentials, dry run, nothing configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from idverify.cli import main
from idverify.vendors.fakes import FakeAlibaba, FakeTencent


def write_config(tmp_path: Path, tencent: FakeTencent, alibaba: FakeAlibaba) -> Path:
    path = tmp_path / "idverify.toml"
    path.write_text(
        f"""
[vendors.tencent]
endpoint = "{tencent.url}"
secret_id_env = "CLI_TC_ID"
secret_key_env = "CLI_TC_KEY"

[vendors.alibaba]
endpoint = "{alibaba.url}"
secret_id_env = "CLI_ALI_ID"
secret_key_env = "CLI_ALI_KEY"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(tmp_path: Path, fake_tencent: FakeTencent, fake_alibaba: FakeAlibaba, monkeypatch) -> Path:
    monkeypatch.setenv("CLI_TC_ID", fake_tencent.key_id)
    monkeypatch.setenv("CLI_TC_KEY", fake_tencent.secret)
    monkeypatch.setenv("CLI_ALI_ID", fake_alibaba.key_id)
    monkeypatch.setenv("CLI_ALI_KEY", fake_alibaba.secret)
    return write_config(tmp_path, fake_tencent, fake_alibaba)


class TestVendorsCheck:
    def test_all_vendors_ok(self, config: Path, capsys: pytest.CaptureFixture[str], fake_tencent) -> None:
        """Each vendor answers an authenticated call; exit 0; one line each."""
        assert main(["vendors", "check", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "alibaba: ok" in out
        assert "tencent: ok" in out
        assert fake_tencent.all_signatures_ok

    def test_wrong_secret_fails(self, config: Path, capsys, monkeypatch) -> None:
        """A wrong secret: the vendor line says FAILED and the exit status is 1; no secret is printed."""
        monkeypatch.setenv("CLI_TC_KEY", "not-the-secret")
        assert main(["vendors", "check", "--config", str(config), "--vendor", "tencent"]) == 1
        out = capsys.readouterr().out
        assert "tencent: FAILED" in out
        assert "AuthFailure.SignatureFailure" in out
        assert "not-the-secret" not in out

    def test_dry_run_sends_nothing(self, config: Path, capsys, fake_tencent, fake_alibaba) -> None:
        """--dry-run prints signed requests and sends none."""
        assert main(["vendors", "check", "--config", str(config), "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "ACS3-HMAC-SHA256 Credential=" in out
        assert "TC3-HMAC-SHA256 Credential=" in out
        assert not fake_tencent.requests
        assert not fake_alibaba.requests

    def test_nothing_configured(self, tmp_path: Path, capsys) -> None:
        """Without a [vendors.*] table there is nothing to check: exit 2."""
        empty = tmp_path / "empty.toml"
        empty.write_text("", encoding="utf-8")
        assert main(["vendors", "check", "--config", str(empty)]) == 2
        assert "no [vendors.*]" in capsys.readouterr().err

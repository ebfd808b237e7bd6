"""The bootstrap token reaches a terminal once, and a log never (issue 18)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from idverify.server import BOOTSTRAP_TOKEN_FILE, announce_bootstrap_token

TOKEN = "ivk_default.0123456789abcdef.secret-part"  # noqa: S105 - a made-up token


class _Terminal(io.StringIO):
    """stderr as a person's terminal."""

    def isatty(self) -> bool:
        return True


def test_a_log_names_the_file_and_never_holds_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stderr that is no terminal (a container, a pipe) gets no token at all."""
    with caplog.at_level(logging.INFO):
        announce_bootstrap_token(TOKEN, tmp_path)
    assert str(tmp_path / BOOTSTRAP_TOKEN_FILE) in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN not in capsys.readouterr().err


def test_a_terminal_is_shown_the_token_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator starting the server by hand sees the token on the terminal, with the file's path."""
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    announce_bootstrap_token(TOKEN, tmp_path)
    assert terminal.getvalue().count(TOKEN) == 1
    assert str(tmp_path / BOOTSTRAP_TOKEN_FILE) in terminal.getvalue()

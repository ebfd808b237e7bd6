"""``[reads] summary_delay_seconds`` and ``close_interval_seconds``: when minute summaries are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from idverify.config import load_settings
from idverify.domain.errors import ConfigError


def test_the_defaults_are_a_whole_minute_and_fifteen_seconds() -> None:
    reads = load_settings(environ={}).reads
    assert (reads.summary_delay_seconds, reads.close_interval_seconds) == (60.0, 15.0)


def test_the_file_and_the_environment_set_them(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[reads]\nsummary_delay_seconds = 1\nclose_interval_seconds = 0.5\n", encoding="utf-8")
    reads = load_settings(path, environ={}).reads
    assert (reads.summary_delay_seconds, reads.close_interval_seconds) == (1.0, 0.5)
    environ = {"IDVERIFY_READS__SUMMARY_DELAY_SECONDS": "0", "IDVERIFY_READS__CLOSE_INTERVAL_SECONDS": "2"}
    reads = load_settings(environ=environ).reads
    assert (reads.summary_delay_seconds, reads.close_interval_seconds) == (0.0, 2.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SUMMARY_DELAY_SECONDS", "-1"),
        ("SUMMARY_DELAY_SECONDS", "3601"),
        ("SUMMARY_DELAY_SECONDS", "soon"),
        ("CLOSE_INTERVAL_SECONDS", "0"),
        ("CLOSE_INTERVAL_SECONDS", "-15"),
    ],
)
def test_a_bad_value_is_a_one_line_error_naming_the_setting(name: str, value: str) -> None:
    """A negative or hour-long delay, or a closer that never waits: refused at start."""
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={f"IDVERIFY_READS__{name}": value})
    assert "reads" in str(refused.value)
    assert name.lower() in str(refused.value)
    assert "\n" not in str(refused.value)

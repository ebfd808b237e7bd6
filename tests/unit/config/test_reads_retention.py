"""``[reads] retention_days``: how long the record of who read which accounts is kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from idverify.config import MAX_READS_RETENTION_DAYS, load_settings
from idverify.domain.errors import ConfigError


def test_the_default_is_180_days() -> None:
    assert load_settings(environ={}).reads.retention_days == 180


def test_the_file_and_the_environment_set_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[reads]\nretention_days = 365\n", encoding="utf-8")
    assert load_settings(path, environ={}).reads.retention_days == 365
    assert load_settings(environ={"IDVERIFY_READS__RETENTION_DAYS": "30"}).reads.retention_days == 30


@pytest.mark.parametrize("value", ["0", "-5", str(MAX_READS_RETENTION_DAYS + 1), "half a year", "1.5"])
def test_a_bad_value_is_a_one_line_error_naming_the_setting(value: str) -> None:
    """No record, a negative or absurd period, or not a whole number of days: refused at start."""
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={"IDVERIFY_READS__RETENTION_DAYS": value})
    assert "reads.retention_days" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_an_unknown_reads_setting_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[reads]\nretention = 30\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="reads: unknown setting"):
        load_settings(path, environ={})

"""Settings of CheckIdentity's daily mismatch limits, per account and per API client."""

from __future__ import annotations

from pathlib import Path

import pytest

from idverify.config import load_settings
from idverify.domain.errors import ConfigError


def test_defaults_are_five_per_account_and_a_hundred_per_client() -> None:
    limits = load_settings(environ={}).rate_limits
    assert limits.check_identity_mismatches_per_account_per_day == 5
    assert limits.check_identity_mismatches_per_principal_per_day == 100


def test_the_file_and_the_environment_set_them(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[rate_limits]\ncheck_identity_mismatches_per_account_per_day = 3\n", encoding="utf-8")
    assert load_settings(path, environ={}).rate_limits.check_identity_mismatches_per_account_per_day == 3
    env = {"IDVERIFY_RATE_LIMITS__CHECK_IDENTITY_MISMATCHES_PER_PRINCIPAL_PER_DAY": "1000"}
    assert load_settings(environ=env).rate_limits.check_identity_mismatches_per_principal_per_day == 1000


@pytest.mark.parametrize("scope", ["account", "principal"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_neither_can_be_turned_off(scope: str, value: str) -> None:
    """Without the limit CheckIdentity is an oracle of document numbers: 0 is refused, not 'off'."""
    env = {f"IDVERIFY_RATE_LIMITS__CHECK_IDENTITY_MISMATCHES_PER_{scope.upper()}_PER_DAY": value}
    with pytest.raises(ConfigError, match="check_identity_mismatches"):
        load_settings(environ=env)

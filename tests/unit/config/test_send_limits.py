"""Settings of the code-send budgets, the per-phone lock and the SMS destinations."""

from __future__ import annotations

from pathlib import Path

import pytest

from idverify.config import load_settings
from idverify.domain.errors import ConfigError


class TestSendLimits:
    def test_defaults(self) -> None:
        """A phone locks after 5 wrong codes for 15 minutes; budgets are on; no country is allowed."""
        settings = load_settings(environ={})
        assert settings.verification.otp_failures_per_phone == 5
        assert settings.verification.otp_failure_window_seconds == 900
        limits = settings.rate_limits
        assert limits.code_sends_per_phone_all_tenants_per_hour == 10
        assert min(limits.code_sends_per_principal_per_minute, limits.code_sends_per_tenant_per_day) > 0
        assert settings.sms_destinations == {}

    def test_destinations_from_file_and_environment(self, tmp_path: Path) -> None:
        """A tenant's calling codes come from [sms_destinations], or comma-separated from the environment."""
        path = tmp_path / "c.toml"
        path.write_text('[sms_destinations]\nacme = ["852", "853"]\n', encoding="utf-8")
        assert load_settings(path, environ={}).sms_destinations == {"acme": ("852", "853")}
        env = {"IDVERIFY_SMS_DESTINATIONS__ACME": "852, 886"}
        assert load_settings(environ=env).sms_destinations == {"acme": ("852", "886")}

    @pytest.mark.parametrize("codes", ['["+852"]', '["0852"]', '["8521"]', "[852]", '"x"'])
    def test_bad_calling_codes_are_refused(self, tmp_path: Path, codes: str) -> None:
        """A calling code is 1 to 3 digits without a leading 0 or a plus."""
        path = tmp_path / "c.toml"
        path.write_text(f"[sms_destinations]\nacme = {codes}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"sms_destinations\.acme"):
            load_settings(path, environ={})

    @pytest.mark.parametrize(
        ("env", "fragment"),
        [
            ({"IDVERIFY_VERIFICATION__OTP_FAILURE_WINDOW_SECONDS": "86401"}, "86400"),
            ({"IDVERIFY_VERIFICATION__OTP_FAILURES_PER_PHONE": "-1"}, "otp_failures_per_phone"),
            ({"IDVERIFY_RATE_LIMITS__CODE_SENDS_PER_TENANT_PER_DAY": "-5"}, "rate_limits"),
        ],
    )
    def test_a_lock_longer_than_a_day_or_a_negative_limit_is_refused(
        self, env: dict[str, str], fragment: str
    ) -> None:
        """A phone's lock is never longer than a day; limits are 0 (off) or more."""
        with pytest.raises(ConfigError, match=fragment):
            load_settings(environ=env)

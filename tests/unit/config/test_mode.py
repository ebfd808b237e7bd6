"""The development-mode switch: what production mode refuses to serve with."""

from __future__ import annotations

from pathlib import Path

import pytest

from idverify.config import development_mode_refusals, load_settings
from idverify.domain.errors import ConfigError

GATEWAY = '[sms]\nsender = "http"\n[sms.options]\nurl = "https://sms.example"\nsecret_env = "SMS_SECRET"\n'


class TestMode:
    def test_production_is_the_default(self) -> None:
        """Without --dev or IDVERIFY_MODE the settings are in production mode."""
        settings = load_settings(environ={})
        assert settings.mode == "production"
        assert not settings.development

    def test_the_environment_and_the_flag_set_development(self) -> None:
        """IDVERIFY_MODE=development, or the --dev override, switch development mode on."""
        assert load_settings(environ={"IDVERIFY_MODE": "development"}).development
        assert load_settings(environ={}, overrides={"mode": "development"}).development

    def test_an_unknown_mode_is_refused(self) -> None:
        """A mode other than production or development is a configuration error naming it."""
        with pytest.raises(ConfigError, match="mode: expected production or development, got 'dev'"):
            load_settings(environ={"IDVERIFY_MODE": "dev"})


class TestRefusals:
    def test_the_console_sender_is_refused_in_production(self) -> None:
        """The default console sender, which logs every code, is named as a refusal in production."""
        [refusal] = development_mode_refusals(load_settings(environ={}))
        assert refusal.startswith("sms.sender: ")

    def test_development_mode_refuses_nothing(self) -> None:
        """In development mode the console sender and plain HTTP are allowed."""
        env = {"IDVERIFY_MODE": "development", "IDVERIFY_VENDORS__GW__ALLOW_PLAIN_HTTP": "true"}
        assert development_mode_refusals(load_settings(environ=env)) == []

    def test_a_real_sender_is_not_refused(self, tmp_path: Path) -> None:
        """A gateway sender over https serves in production mode."""
        path = tmp_path / "c.toml"
        path.write_text(GATEWAY, encoding="utf-8")
        assert development_mode_refusals(load_settings(path, environ={})) == []

    @pytest.mark.parametrize(
        ("config", "env", "named"),
        [
            (GATEWAY + "allow_plain_http = true\n", {}, "sms.options.allow_plain_http"),
            (
                GATEWAY + "[vendors.tencent]\nallow_plain_http = true\n",
                {},
                "vendors.tencent.allow_plain_http",
            ),
            (GATEWAY, {"IDVERIFY_VENDORS__GW__ALLOW_PLAIN_HTTP": "yes"}, "vendors.gw.allow_plain_http"),
        ],
    )
    def test_plain_http_off_the_host_is_refused_in_production(
        self, tmp_path: Path, config: str, env: dict[str, str], named: str
    ) -> None:
        """allow_plain_http, from the file or the environment, is named as a refusal in production."""
        path = tmp_path / "c.toml"
        path.write_text(config, encoding="utf-8")
        [refusal] = development_mode_refusals(load_settings(path, environ=env))
        assert refusal.startswith(f"{named}: ")

    def test_allow_plain_http_false_is_not_refused(self, tmp_path: Path) -> None:
        """Saying allow_plain_http = false is no refusal."""
        path = tmp_path / "c.toml"
        path.write_text(GATEWAY + "allow_plain_http = false\n", encoding="utf-8")
        assert development_mode_refusals(load_settings(path, environ={})) == []

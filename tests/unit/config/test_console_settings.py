"""The console's settings: on in development mode only where it is safe, HTTPS elsewhere."""

from __future__ import annotations

import pytest

from idverify.config import load_settings
from idverify.domain.errors import ConfigError

DEV = {"mode": "development"}
TLS = {"IDVERIFY_TLS__CERT_FILE": "/x/tls.crt", "IDVERIFY_TLS__KEY_FILE": "/x/tls.key"}


class TestConsoleSettings:
    def test_on_in_development_off_in_production(self) -> None:
        """By default the console serves in development mode only, next to gRPC on port 50052."""
        assert load_settings(environ={}, overrides=DEV).console_enabled
        assert load_settings(environ={}, overrides=DEV).console_host_port == ("127.0.0.1", 50052)
        assert not load_settings(environ={}).console_enabled

    def test_port_zero_follows_grpc(self) -> None:
        """A server on port 0 (tests) puts its console on a port of its own choosing too."""
        settings = load_settings(environ={}, overrides={**DEV, "listen": "127.0.0.1:0"})
        assert settings.console_host_port == ("127.0.0.1", 0)

    def test_flag_and_environment_move_it(self) -> None:
        """--console-listen (console.listen) and IDVERIFY_CONSOLE__LISTEN set its address."""
        by_flag = load_settings(environ={}, overrides={**DEV, "console.listen": "127.0.0.1:6001"})
        assert by_flag.console_host_port == ("127.0.0.1", 6001)
        by_env = load_settings(environ={"IDVERIFY_CONSOLE__LISTEN": "[::1]:6002"}, overrides=DEV)
        assert by_env.console_host_port == ("::1", 6002)

    def test_production_needs_tls(self) -> None:
        """A careless operator switching it on without a certificate is refused, naming the fix."""
        with pytest.raises(ConfigError, match="HTTPS needs"):
            load_settings(environ={"IDVERIFY_CONSOLE__ENABLED": "on"})
        assert load_settings(environ={**TLS, "IDVERIFY_CONSOLE__ENABLED": "on"}).console_enabled

    def test_development_off_loopback_without_tls(self) -> None:
        """Plain HTTP beyond loopback is refused when asked for, and left out by "auto"."""
        everywhere = {**DEV, "listen": "0.0.0.0:50051"}
        assert not load_settings(environ={}, overrides=everywhere).console_enabled
        with pytest.raises(ConfigError, match="loopback"):
            load_settings(environ={"IDVERIFY_CONSOLE__ENABLED": "on"}, overrides=everywhere)
        assert load_settings(environ=TLS, overrides=everywhere).console_enabled

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("ENABLED", "maybe"),
            ("LISTEN", "nowhere"),
            ("SESSION_SECONDS", "5"),
            ("SESSION_SECONDS", "100000"),
            ("SIGNIN_FAILURES_PER_MINUTE", "0"),
        ],
    )
    def test_bad_values_are_named(self, name: str, value: str) -> None:
        """Each bad value stops the start with the setting's name."""
        with pytest.raises(ConfigError, match=r"^console"):
            load_settings(environ={f"IDVERIFY_CONSOLE__{name}": value})

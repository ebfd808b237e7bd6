"""Vendor callbacks' settings: off unless listen is set; an https public URL outside development."""

from __future__ import annotations

import pytest

from idverify.config import load_settings
from idverify.domain.errors import ConfigError

DEV = {"mode": "development"}
ON = {
    "IDVERIFY_CALLBACKS__LISTEN": "10.0.0.5:8443",
    "IDVERIFY_CALLBACKS__PUBLIC_URL": "https://idv.example/cb",
}


def test_off_by_default_in_both_modes() -> None:
    assert not load_settings(environ={}).callbacks_enabled
    assert not load_settings(environ={}, overrides=DEV).callbacks_enabled


def test_listen_and_public_url_turn_it_on() -> None:
    settings = load_settings(environ=ON)
    assert settings.callbacks_enabled
    assert settings.callbacks_host_port == ("10.0.0.5", 8443)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"IDVERIFY_CALLBACKS__PUBLIC_URL": "https://idv.example/cb"}, "callbacks.listen is not"),
        ({**ON, "IDVERIFY_CALLBACKS__LISTEN": "nowhere"}, "callbacks.listen: expected HOST:PORT"),
        ({**ON, "IDVERIFY_CALLBACKS__PUBLIC_URL": ""}, "callbacks.public_url"),
        ({**ON, "IDVERIFY_CALLBACKS__PUBLIC_URL": "http://idv.example/cb"}, "callbacks.public_url"),
        ({**ON, "IDVERIFY_CALLBACKS__PUBLIC_URL": "https://idv.example/cb?x=1"}, "callbacks.public_url"),
        ({**ON, "IDVERIFY_CALLBACKS__PER_SOURCE_PER_MINUTE": "0"}, "per_source_per_minute"),
        ({**ON, "IDVERIFY_CALLBACKS__MAX_BODY_BYTES": "100000000"}, "max_body_bytes"),
    ],
)
def test_a_careless_operator_gets_one_line(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_plain_http_public_url_in_development_only() -> None:
    environ = {**ON, "IDVERIFY_CALLBACKS__PUBLIC_URL": "http://127.0.0.1:8443"}
    assert load_settings(environ=environ, overrides=DEV).callbacks_enabled

"""Where plaintext may go: only addresses that cannot leave the machine."""

from __future__ import annotations

import pytest

from idverify.security.loopback import is_loopback_host


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.200.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),  # noqa: S104 - an address to judge, not to bind
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("localhost.attacker.example", False),
        ("sms-gateway.svc", False),
        ("", False),
    ],
)
def test_only_this_machine_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback

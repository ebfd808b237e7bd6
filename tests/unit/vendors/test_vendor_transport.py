# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Retries, timeouts, dropped connections and the breaker, over real loopback sockets."""

from __future__ import annotations

import socket

import pytest

from idverify.domain.errors import ConfigError
from idverify.store.embedded import free_port
from idverify.vendors.circuit import CircuitState
from idverify.vendors.fakes import Drop, ErrorCode, FakeTencent, HttpStatus, Slow
from idverify.vendors.transport import TransportSettings, check_endpoint
from idverify.vendors.verdicts import VendorUnavailable, VerdictKind


class TestRetries:
    async def test_non_billed_busy_is_retried_with_backoff(
        self, make_claim, tencent, fake_tencent: FakeTencent
    ) -> None:
        """RequestLimitExceeded twice, then an answer: three signed calls, one verdict."""
        fake_tencent.plan(ErrorCode("RequestLimitExceeded"), ErrorCode("RequestLimitExceeded"))
        verdict = await tencent(max_retries=2).check_name_id(make_claim())
        assert verdict.kind is VerdictKind.MATCH
        assert fake_tencent.actions() == ["IdCardVerification"] * 3
        assert fake_tencent.all_signatures_ok

    async def test_non_billed_result_code_is_retried(
        self, make_claim, tencent, fake_tencent: FakeTencent
    ) -> None:
        """Result -4 of IdCardVerification (ID service failure) is not billed: try again."""
        from idverify.vendors.fakes import ResultCode  # noqa: PLC0415

        fake_tencent.plan(ResultCode("-4"))
        verdict = await tencent().check_name_id(make_claim())
        assert verdict.kind is VerdictKind.MATCH
        assert len(fake_tencent.requests) == 2

    async def test_retries_run_out(self, make_claim, tencent, fake_tencent: FakeTencent) -> None:
        """When every attempt is busy the step gets VENDOR_BUSY with the vendor's code."""
        fake_tencent.plan(*[ErrorCode("RequestLimitExceeded")] * 3)
        with pytest.raises(VendorUnavailable) as raised:
            await tencent(max_retries=2).check_name_id(make_claim())
        assert (raised.value.reason, raised.value.vendor_code) == ("VENDOR_BUSY", "RequestLimitExceeded")
        assert len(fake_tencent.requests) == 3

    async def test_a_timeout_is_never_retried(self, make_claim, tencent, fake_tencent: FakeTencent) -> None:
        """The vendor may have answered and billed: one slow call, VENDOR_TIMEOUT, no second call."""
        fake_tencent.plan(Slow(1.0))
        with pytest.raises(VendorUnavailable) as raised:
            await tencent(timeout_seconds=0.2).check_name_id(make_claim())
        assert raised.value.reason == "VENDOR_TIMEOUT"
        assert len(fake_tencent.requests) <= 1

    async def test_a_dropped_connection_is_never_retried(
        self, make_claim, tencent, fake_tencent: FakeTencent
    ) -> None:
        """A connection closed after the request was sent may have been billed: no retry."""
        fake_tencent.plan(Drop())
        with pytest.raises(VendorUnavailable) as raised:
            await tencent().check_name_id(make_claim())
        assert (raised.value.reason, raised.value.vendor_code) == ("VENDOR_UNAVAILABLE", "CONNECTION_LOST")
        assert len(fake_tencent.requests) == 1

    async def test_refused_connections_are_retried_then_unavailable(
        self, make_claim, credentials_env
    ) -> None:
        """Nothing listens: each attempt fails to connect (nothing sent), then VENDOR_UNAVAILABLE."""
        from idverify.vendors.tencent import TencentFaceId  # noqa: PLC0415

        port = free_port()
        options = {
            "endpoint": f"http://127.0.0.1:{port}",
            **credentials_env("TC", "AKIDx", "secret"),
            "backoff_seconds": 0.0,
            "connect_timeout_seconds": 0.5,
        }
        vendor = TencentFaceId("tencent", options)
        try:
            with pytest.raises(VendorUnavailable) as raised:
                await vendor.check_name_id(make_claim())
            assert (raised.value.reason, raised.value.vendor_code) == ("VENDOR_UNAVAILABLE", "CONNECT_FAILED")
        finally:
            await vendor.aclose()

    async def test_a_proxy_503_is_retried_but_502_is_not(
        self, make_claim, tencent, fake_tencent: FakeTencent
    ) -> None:
        """503 means not processed (retry); 502 may mean processed (no retry)."""
        fake_tencent.plan(HttpStatus(503))
        assert (await tencent().check_name_id(make_claim())).kind is VerdictKind.MATCH
        fake_tencent.plan(HttpStatus(502))
        with pytest.raises(VendorUnavailable, match="HTTP_502"):
            await tencent().check_name_id(make_claim())


class TestBreaker:
    async def test_opens_after_repeated_failures_and_stops_calling(
        self, make_claim, tencent, fake_tencent: FakeTencent
    ) -> None:
        """Three dropped calls open the circuit; the fourth is refused without reaching the vendor."""
        vendor = tencent(breaker_failures=3, breaker_reset_seconds=60)
        fake_tencent.plan(Drop(), Drop(), Drop())
        for _ in range(3):
            with pytest.raises(VendorUnavailable):
                await vendor.check_name_id(make_claim())
        assert vendor.transport.breaker.state is CircuitState.OPEN
        with pytest.raises(VendorUnavailable) as raised:
            await vendor.check_name_id(make_claim())
        assert raised.value.vendor_code == "CIRCUIT_OPEN"
        assert len(fake_tencent.requests) == 3

    async def test_half_open_trial_closes_on_success(
        self, make_claim, tencent, fake_tencent: FakeTencent
    ) -> None:
        """After the reset time one trial call goes out, and its success closes the circuit."""
        vendor = tencent(breaker_failures=1, breaker_reset_seconds=0)
        fake_tencent.plan(Drop())
        with pytest.raises(VendorUnavailable):
            await vendor.check_name_id(make_claim())
        assert vendor.transport.breaker.state is CircuitState.HALF_OPEN
        assert (await vendor.check_name_id(make_claim())).kind is VerdictKind.MATCH
        assert vendor.transport.breaker.state is CircuitState.CLOSED

    async def test_verdicts_are_successes(self, make_claim, tencent, fake_tencent: FakeTencent) -> None:
        """A mismatch is an answer, not a failure: it never opens the circuit."""
        vendor = tencent(breaker_failures=1)
        for _ in range(3):
            verdict = await vendor.check_name_id(make_claim(name="王五"))
            assert verdict.kind is VerdictKind.MISMATCH
        assert vendor.transport.breaker.state is CircuitState.CLOSED
        del fake_tencent


class TestKeepAlive:
    async def test_calls_reuse_one_connection(self, make_claim, tencent, fake_tencent: FakeTencent) -> None:
        """Sequential calls ride one pooled HTTP/1.1 connection."""
        vendor = tencent()
        for _ in range(5):
            await vendor.check_name_id(make_claim())
        pool = vendor.transport._client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1
        del fake_tencent


class TestSettings:
    def test_defaults(self) -> None:
        """An empty table gives the documented defaults."""
        settings = TransportSettings.from_options("vendors.x", {})
        assert (settings.timeout_seconds, settings.max_retries, settings.breaker_failures) == (5.0, 2, 5)

    @pytest.mark.parametrize(("key", "value"), [("timeout_seconds", 0), ("qps", -1), ("max_retries", True)])
    def test_bad_values_are_refused(self, key: str, value: object) -> None:
        """Out-of-range or mistyped numbers fail at start-up, naming the key."""
        with pytest.raises(ConfigError, match=key):
            TransportSettings.from_options("vendors.x", {key: value})

    @pytest.mark.parametrize("url", ["http://vendor.example", "ftp://x", "", "not a url"])
    def test_endpoints_must_be_https_off_loopback(self, url: str) -> None:
        """Identity data never crosses a network in clear text unless the operator says so."""
        with pytest.raises(ConfigError):
            check_endpoint("vendors.x.endpoint", url, allow_plain_http=False)

    def test_plain_http_allowed_to_loopback_or_explicitly(self) -> None:
        """Loopback (the fakes, a sidecar) and an explicit opt-in may use http."""
        assert check_endpoint("e", "http://127.0.0.1:8080", allow_plain_http=False).host == "127.0.0.1"
        assert check_endpoint("e", "http://gw.internal", allow_plain_http=True).host == "gw.internal"


def test_free_port_is_closed() -> None:
    """The refused-connection test relies on nothing listening on a fresh free port."""
    port = free_port()
    with socket.socket() as sock:
        sock.settimeout(0.5)
        with pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", port))

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""One vendor's HTTP link: pooled keep-alive connections, timeouts, a QPS budget, retries, a breaker.

Retries follow billing. A request that never left (no connection) and an answer in which the
vendor says "busy, not billed" are retried with exponential backoff and jitter; a timeout or a
connection dropped after sending is never retried, because the vendor may have answered and
billed. Every final failure counts towards the circuit breaker; an open circuit refuses at once.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx

from idverify.domain.errors import ConfigError
from idverify.observability import telemetry
from idverify.security.loopback import is_loopback_host
from idverify.vendors.circuit import CircuitBreaker
from idverify.vendors.qps import QpsBudget
from idverify.vendors.verdicts import RetryableAnswer, VendorUnavailable

__all__ = [
    "TRANSPORT_OPTIONS",
    "PreparedRequest",
    "TransportSettings",
    "VendorTransport",
    "check_endpoint",
    "fail_on_http_status",
]

T = TypeVar("T")

TRANSPORT_OPTIONS: Final = frozenset(
    {
        "timeout_seconds",
        "connect_timeout_seconds",
        "deadline_seconds",
        "max_connections",
        "max_retries",
        "backoff_seconds",
        "qps",
        "qps_max_wait_seconds",
        "breaker_failures",
        "breaker_reset_seconds",
        "ca_file",
        "allow_plain_http",
    }
)
_MAX_BACKOFF_SECONDS: Final = 2.0


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """One signed request, built afresh for every attempt (timestamps and nonces change)."""

    url: str
    headers: Mapping[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"PreparedRequest(url={self.url!r}, body=<{len(self.body)} bytes>)"


def _number(
    where: str, options: Mapping[str, Any], key: str, *, default: float, low: float, high: float
) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}: expected a number from {low} to {high}")
    return float(value)


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """How to talk to one vendor; every field has a safe default.

    Attributes:
        timeout_seconds: per read/write/pool wait (default 5).
        connect_timeout_seconds: to open a connection (default 2).
        deadline_seconds: a call with its retries gives up after this long (default 8).
        max_connections: pooled keep-alive connections (default 20).
        max_retries: retries of non-billed transient failures (default 2).
        backoff_seconds: first retry delay, doubled each time, with full jitter (default 0.2).
        qps: calls per second per worker process; 0 = no limit (default 20).
        qps_max_wait_seconds: how long a call may queue for the budget (default 0.5).
        breaker_failures: consecutive failures that open the circuit (default 5).
        breaker_reset_seconds: how long it stays open before a trial call (default 30).
        ca_file: PEM bundle of a private CA (default: the system's).
        allow_plain_http: allow http:// to hosts other than loopback (default false).
    """

    timeout_seconds: float = 5.0
    connect_timeout_seconds: float = 2.0
    deadline_seconds: float = 8.0
    max_connections: int = 20
    max_retries: int = 2
    backoff_seconds: float = 0.2
    qps: float = 20.0
    qps_max_wait_seconds: float = 0.5
    breaker_failures: int = 5
    breaker_reset_seconds: float = 30.0
    ca_file: str = ""
    allow_plain_http: bool = False

    @classmethod
    def from_options(cls, where: str, options: Mapping[str, Any]) -> TransportSettings:
        """Validated settings from a vendor table (other keys are the caller's to check).

        Raises:
            ConfigError: naming the table and key at fault.

        """
        ca_file = options.get("ca_file", "")
        allow = options.get("allow_plain_http", False)
        if not isinstance(ca_file, str):
            raise ConfigError(f"{where}.ca_file: expected a path")
        if not isinstance(allow, bool):
            raise ConfigError(f"{where}.allow_plain_http: expected true or false")

        def number(key: str, default: float, low: float, high: float) -> float:
            return _number(where, options, key, default=default, low=low, high=high)

        return cls(
            timeout_seconds=number("timeout_seconds", 5.0, 0.01, 60),
            connect_timeout_seconds=number("connect_timeout_seconds", 2.0, 0.01, 60),
            deadline_seconds=number("deadline_seconds", 8.0, 0.01, 120),
            max_connections=int(number("max_connections", 20, 1, 1000)),
            max_retries=int(number("max_retries", 2, 0, 10)),
            backoff_seconds=number("backoff_seconds", 0.2, 0, 10),
            qps=number("qps", 20.0, 0, 100_000),
            qps_max_wait_seconds=number("qps_max_wait_seconds", 0.5, 0, 10),
            breaker_failures=int(number("breaker_failures", 5, 1, 1000)),
            breaker_reset_seconds=number("breaker_reset_seconds", 30.0, 0, 3600),
            ca_file=ca_file,
            allow_plain_http=allow,
        )


def check_endpoint(where: str, raw: object, *, allow_plain_http: bool) -> httpx.URL:
    """An absolute http(s) URL; plain http only to loopback unless explicitly allowed.

    Raises:
        ConfigError: on anything else.

    """
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{where}: expected an absolute https URL")
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{where}: not a URL: {exc}") from exc
    if url.scheme not in {"http", "https"} or not url.host:
        raise ConfigError(f"{where}: expected an absolute http(s) URL")
    # Names, ID numbers and card numbers cross this link.
    if url.scheme == "http" and not is_loopback_host(url.host) and not allow_plain_http:
        raise ConfigError(f"{where}: must use https (or set allow_plain_http = true)")
    return url


def fail_on_http_status(response: httpx.Response) -> None:
    """Raise for an HTTP status that carries no vendor answer (a proxy's or gateway's).

    Raises:
        RetryableAnswer: 429 or 503 (the request was turned away before it was processed).
        VendorUnavailable: any other non-2xx status.

    """
    status = response.status_code
    if status in {429, 503}:
        raise RetryableAnswer("VENDOR_BUSY" if status == 429 else "VENDOR_UNAVAILABLE", f"HTTP_{status}")  # noqa: PLR2004
    if not response.is_success:
        raise VendorUnavailable("VENDOR_UNAVAILABLE", f"HTTP_{status}")


class VendorTransport:
    """The pooled client, budget and breaker of one vendor, shared by all its verifiers.

    Args:
        vendor: the vendor's configured name (for spans and messages).
        settings: validated transport settings.
        clock: monotonic seconds (tests).
        sleep: the backoff sleep (tests).

    Raises:
        ConfigError: the CA bundle cannot be loaded.

    """

    def __init__(
        self,
        vendor: str,
        settings: TransportSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.vendor = vendor
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self.breaker = CircuitBreaker(
            failure_threshold=settings.breaker_failures,
            reset_seconds=settings.breaker_reset_seconds,
            clock=clock,
        )
        self._budget = QpsBudget(settings.qps, max_wait_seconds=settings.qps_max_wait_seconds, clock=clock)
        verify: ssl.SSLContext | bool = True
        if settings.ca_file:
            try:
                verify = ssl.create_default_context(cafile=settings.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"vendors.{vendor}: cannot load CA bundle {settings.ca_file}: {exc}"
                ) from exc
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
                keepalive_expiry=30.0,
            ),
            verify=verify,
            # Proxy variables in the server's environment must not reroute identity data.
            trust_env=False,
            follow_redirects=False,
        )

    async def exchange(
        self, action: str, prepare: Callable[[], PreparedRequest], interpret: Callable[[httpx.Response], T]
    ) -> T:
        """Send one call, retrying what may be retried, and interpret the answer.

        Args:
            action: the vendor action, for the span (``IdCardVerification``).
            prepare: builds and signs the request; called once per attempt.
            interpret: turns a response into the caller's result; raises
                :class:`RetryableAnswer` for a non-billed transient answer and
                :class:`~idverify.vendors.verdicts.VendorUnavailable` for a final failure.

        Returns:
            What ``interpret`` returned.

        Raises:
            VendorUnavailable: the circuit is open, the budget is spent, the call timed out or
                failed, or retries ran out. The message never holds request data.

        """
        if not self.breaker.allow():
            raise VendorUnavailable("VENDOR_UNAVAILABLE", "CIRCUIT_OPEN")
        deadline = self._clock() + self.settings.deadline_seconds
        attempt = 0
        while True:
            if not await self._budget.acquire():
                self.breaker.release_trial()
                raise VendorUnavailable("VENDOR_BUSY", "QPS_BUDGET")
            with telemetry.span(f"vendor.{self.vendor}.{action}", provider=self.vendor) as current:
                retry = await self._attempt(prepare, interpret, current)
            if not isinstance(retry, RetryableAnswer):
                return retry
            attempt += 1
            delay = random.uniform(0, min(_MAX_BACKOFF_SECONDS, self.settings.backoff_seconds * 2**attempt))  # noqa: S311 - jitter, not a secret
            if attempt > self.settings.max_retries or self._clock() + delay >= deadline:
                self.breaker.record_failure()
                raise VendorUnavailable(retry.reason, retry.vendor_code)
            await self._sleep(delay)

    async def _attempt(
        self, prepare: Callable[[], PreparedRequest], interpret: Callable[[httpx.Response], T], current: Any
    ) -> T | RetryableAnswer:
        request = prepare()
        try:
            response = await self._client.post(
                request.url, content=request.body, headers=dict(request.headers)
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            # Nothing was sent: safe to try again.
            return RetryableAnswer("VENDOR_UNAVAILABLE", "CONNECT_FAILED")
        except httpx.TimeoutException as exc:
            self.breaker.record_failure()
            raise VendorUnavailable("VENDOR_TIMEOUT", "TIMEOUT") from exc
        except httpx.HTTPError as exc:
            # The request may have been processed (and billed) before the connection dropped.
            self.breaker.record_failure()
            raise VendorUnavailable("VENDOR_UNAVAILABLE", "CONNECTION_LOST") from exc
        try:
            result = interpret(response)
        except RetryableAnswer as answer:
            current.set_attributes(telemetry.safe_attributes({"idverify.vendor_code": answer.vendor_code}))
            return answer
        except VendorUnavailable as failure:
            current.set_attributes(telemetry.safe_attributes({"idverify.vendor_code": failure.vendor_code}))
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return result

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()

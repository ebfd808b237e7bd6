"""End-to-end fixtures: `idverify serve` as a real process, and builders for test identities.

Every identity a test uses is made with :func:`person` / :func:`organization`, which records it
so that the privacy scan can look for it afterwards.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import redis
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idverify.client import Client
from idverify.domain.consent import text_version_of
from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary
from idverify.v1 import account_pb2, common_pb2, verification_pb2
from idverify.vendors.fakes import FakeTencent

# Rate limits no load test reaches: what such a test measures is the store, not a refusal.
LOOSE = """
[rate_limits]
per_principal_per_minute = 100000000
per_identity_per_hour = 100000000
code_sends_per_phone_per_hour = 100000000
"""
_RIC_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_counter = itertools.count(1)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"


def ric(region: str, birth: date, sequence: int) -> str:
    """A mainland resident ID number with a correct check character."""
    body = f"{region}{birth:%Y%m%d}{sequence:03d}"
    total = sum(int(c) * w for c, w in zip(body, _RIC_WEIGHTS, strict=True))
    return body + "10X98765432"[total % 11]


@dataclass(frozen=True)
class Identity:
    """A test person: everything here is personal data that must never be stored in the clear."""

    name: str
    number: str
    phone: str

    def subject(self, **changes: object) -> common_pb2.Subject:
        person = {"name": self.name, "document_number": self.number, "phone_number": self.phone}
        return subject_of(common_pb2.SUBJECT_KIND_PERSON, common_pb2.DOCUMENT_TYPE_CN_RIC, person, changes)


def subject_of(
    kind: common_pb2.SubjectKind.ValueType,
    document_type: common_pb2.DocumentType.ValueType,
    *fields: Mapping[str, object],
) -> common_pb2.Subject:
    """A Subject of ``kind`` named by a document of ``document_type``, each of ``fields`` set in turn."""
    subject = common_pb2.Subject(kind=kind, document_type=document_type)
    for field, value in itertools.chain.from_iterable(each.items() for each in fields):
        setattr(subject, field, value)
    return subject


IDENTITIES: list[Identity] = []


ADULT_BIRTH = date(1990, 3, 7)


def person(birth: date = ADULT_BIRTH, region: str = "440106") -> Identity:
    """A fresh, unique test person (recorded for the privacy scan).

    A region and birth date hold 1,000 sequence numbers; an adult of the default birth date
    moves a day on every thousand so that long runs (the soak) never repeat a number.
    """
    n = next(_counter)
    if birth == ADULT_BIRTH:
        birth += timedelta(days=n // 1000)
    rng = random.Random(n)  # noqa: S311 - deterministic test names, not secrets
    name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
    identity = Identity(name=name, number=ric(region, birth, n % 1000), phone=f"139{n:08d}")
    IDENTITIES.append(identity)
    return identity


def text_versions(purposes: Iterable[str]) -> dict[str, str]:
    """The version of a consent text for each purpose, as every consent given must name one."""
    return {purpose: text_version_of(f"consent text for {purpose}, e2e") for purpose in purposes}


def start(
    client: Client,
    identity: Identity,
    account: str,
    *,
    request_id: str | None = None,
    method: str = "sms",
    consents: tuple[str, ...] = ("identity", "phone"),
    versions: dict[str, str] | None = None,
    **subject_changes: object,
) -> verification_pb2.Verification:
    """StartVerification for a person, each consent with its text version unless ``versions``."""
    return client.verification.StartVerification(
        verification_pb2.StartVerificationRequest(
            request_id=request_id or f"req-{next(_counter)}",
            account_id=account,
            method_id=method,
            subject=identity.subject(**subject_changes),
            consents=list(consents),
            consent_text_versions=text_versions(consents) if versions is None else versions,
            client_ip="203.0.113.9",
        )
    ).verification


@contextmanager
def server_on_own_redis(
    directory: Path, *, config: str = "", **redis_options: Any
) -> Iterator[tuple[RedisProcess, ServerProcess]]:
    """A server with ``LOOSE`` limits on a redis-server of its own, which the test may kill or fill.

    ``config``: top-level settings before ``LOOSE``'s tables; ``redis_options``: what
    RedisProcess takes besides its folder, port and binary.
    """
    store = RedisProcess(
        directory / "redis", port=free_port(), binary=redis_server_binary(prefer_system=True), **redis_options
    )
    store.start()
    server = ServerProcess(directory / "server", config=config + LOOSE, redis_url=store.url)
    try:
        server.start()
        yield store, server
    finally:
        server.stop()
        store.stop()


def submit(client: Client, verification_id: str, code: str) -> verification_pb2.Verification:
    """SubmitChallenge."""
    return client.verification.SubmitChallenge(
        verification_pb2.SubmitChallengeRequest(verification_id=verification_id, code=code)
    ).verification


def verify(
    server: ServerProcess, client: Client, identity: Identity, account: str
) -> verification_pb2.Verification:
    """Start + submit the logged code."""
    started = start(client, identity, account)
    assert started.status == verification_pb2.VERIFICATION_STATUS_CHALLENGE_SENT, started
    return submit(client, started.verification_id, server.sms_code(started.verification_id))


def assert_still_serving(server: ServerProcess, account_prefix: str) -> None:
    """Health/Check answers SERVING within 2 s and three signups verify within 20 s, under load."""
    with grpc.insecure_channel(server.target) as channel:
        began = time.monotonic()
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert time.monotonic() - began < 2
    with server.client() as registrar:
        began = time.monotonic()
        for _ in range(3):
            verified = verify(server, registrar, person(), f"{account_prefix}-{time.monotonic_ns()}")
            assert verified.status == verification_pb2.VERIFICATION_STATUS_VERIFIED
        assert time.monotonic() - began < 20


def wrong_code(right: str) -> str:
    """A code of the same length that is not the right one."""
    return "".join(str((int(c) + 1) % 10) for c in right)


def rich_error(error: grpc.RpcError) -> tuple[str, str]:
    """(reason, field) from a status's google.rpc details."""
    reason, field = "", ""
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reason = info.reason
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    field = bad.field_violations[0].field
    return reason, field


def retry_delay_ms(error: grpc.RpcError) -> int:
    """RetryInfo's delay of a status, 0 without one."""
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return int(info.retry_delay.ToMilliseconds())
    return 0


def start_as_told(
    client: Client, identity: Identity, account: str, *, attempts: int = 30, **options: Any
) -> verification_pb2.Verification:
    """A start by a caller that waits as told when the worker's hashes are full, then retries.

    A burst of starts larger than a worker can hash within the call's time is refused in part
    (RESOURCE_EXHAUSTED, ``HASH_QUEUE_FULL``, with a RetryInfo delay) by design; how much is
    refused depends on the machine's load. A test about something else (a binding race) sends
    its burst as a well-behaved caller would: the same request id again after the delay.
    """
    request_id = options.pop("request_id", None) or f"req-{next(_counter)}"
    for _ in range(attempts - 1):
        try:
            return start(client, identity, account, request_id=request_id, **options)
        except grpc.RpcError as error:
            if rich_error(error)[0] != "HASH_QUEUE_FULL":
                raise
            time.sleep(max(retry_delay_ms(error), 10) / 1000)
    return start(client, identity, account, request_id=request_id, **options)


def error_metadata(error: grpc.RpcError) -> dict[str, str]:
    """The ErrorInfo metadata of a status (``fallback_method_ids`` of a refused start...)."""
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return dict(info.metadata)
    return {}


# A worker builds its lookup tables at start (seconds on a quiet machine, many more on a busy
# one); meanwhile an IP call waits a while, then answers UNAVAILABLE with GEO_LOADING: retry.
GEO_PATIENCE_SECONDS = 180.0
T = TypeVar("T")


def when_geo_loaded(call: Callable[[], T]) -> T:
    """``call``'s answer, retried while the worker answering says its IP tables are loading."""
    deadline = time.monotonic() + GEO_PATIENCE_SECONDS
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            loading = error.code() is grpc.StatusCode.UNAVAILABLE and rich_error(error)[0] == "GEO_LOADING"
            if not loading or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def record_login_ip(client: Client, account: str, ip: str = "8.8.8.8") -> common_pb2.IpLocation:
    """RecordLoginIp, patient with a worker that is still loading its IP database."""
    request = account_pb2.RecordLoginIpRequest(account_id=account, ip=ip)
    return when_geo_loaded(lambda: client.account.RecordLoginIp(request).location)


def embedded_redis(server: ServerProcess) -> redis.Redis:
    """A client of the server's embedded Redis (its Unix socket), to inspect what was stored."""
    return redis.Redis(unix_socket_path=str(server.data_dir / "redis" / "redis.sock"))


def needles_of(identity: Identity) -> set[bytes]:
    """A person's name, number and phone in the clear and as SHA-256 / MD5 hex: what a scan seeks."""
    needles: set[bytes] = set()
    for value in (identity.name, identity.number, identity.phone, f"+86{identity.phone}"):
        raw = value.encode()
        needles |= {
            raw,
            hashlib.sha256(raw).hexdigest().encode(),
            hashlib.md5(raw).hexdigest().encode(),  # noqa: S324 - finding MD5 forms is the point
        }
    return needles


def everything_stored(store: redis.Redis) -> list[bytes]:
    """Every key and every value in ``store`` (hash fields as ``field=value``), for privacy scans."""
    found: list[bytes] = []
    for key in store.scan_iter(count=1000):
        found.append(key)
        kind = store.type(key)
        if kind == b"string":
            found.append(store.get(key) or b"")
        elif kind == b"hash":
            found.extend(b"%s=%s" % item for item in store.hgetall(key).items())
        elif kind == b"set":
            found.extend(store.smembers(key))
        elif kind == b"zset":
            found.extend(store.zrange(key, 0, -1))
        elif kind == b"list":
            found.extend(store.lrange(key, 0, -1))
        elif kind == b"stream":
            found.extend(str(entry).encode() for entry in store.xrange(key))
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`idverify serve` on its embedded default."""
    with ServerProcess(tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture(scope="module")
def registrar(server: ServerProcess) -> Iterator[Client]:
    """A registrar of the default tenant."""
    with server.client("registrar") as client:
        yield client


@pytest.fixture(scope="module")
def faceid() -> Iterator[FakeTencent]:
    """The local fake FaceID, one per test module (its people and plans are the module's)."""
    with FakeTencent() as fake:
        yield fake

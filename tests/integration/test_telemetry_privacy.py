"""Traces, metrics and logs of a full signup carry no personal data, and traces are complete.

The server runs in this process (``idverify.server.running``) so that an in-memory span
exporter and metric reader can see everything it emits; the log is captured as JSON lines.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from idverify.config import load_settings
from idverify.domain.consent import text_version_of
from idverify.observability.logs import JsonFormatter
from idverify.security.principals import Role
from idverify.server import Application, running
from idverify.testing import RedisProcess
from idverify.v1 import account_pb2, account_pb2_grpc, common_pb2, verification_pb2, verification_pb2_grpc

NAME, NUMBER, PHONE = "欧阳明月", "440106198807150010", "13912345678"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
async def app(
    redis_server: RedisProcess, tmp_path: Path
) -> AsyncIterator[tuple[Application, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    settings = load_settings(
        environ={},
        overrides={
            "listen": "127.0.0.1:0",
            "data_dir": str(tmp_path),
            "redis_url": redis_server.url.replace("/0", "/7"),
        },
    )
    async with running(settings, span_exporters=[exporter]) as application:
        yield application, exporter


def assert_rpc_spans_are_one_tree_each(spans: Sequence[ReadableSpan]) -> None:
    """Every span in an RPC's trace (steps, scripts, hashes) hangs from a span of that trace."""
    rpc_traces = {s.context.trace_id for s in spans if s.kind is SpanKind.SERVER}
    span_ids = {(s.context.trace_id, s.context.span_id) for s in spans}
    for child in spans:
        if child.kind is not SpanKind.SERVER and child.context.trace_id in rpc_traces:
            assert child.parent is not None, child.name
            assert (child.context.trace_id, child.parent.span_id) in span_ids, child.name


def identity_forms() -> set[str]:
    forms: set[str] = set()
    for value in (NAME, NUMBER, PHONE, f"+86{PHONE}"):
        forms |= {value, hashlib.sha256(value.encode()).hexdigest(), hashlib.md5(value.encode()).hexdigest()}  # noqa: S324
    return forms


def assert_scripts_spanned(span_names: set[str], scripts: set[str]) -> None:
    """Each script has a span named after it (a chain's names its scripts: ``redis.phone_guess/submit``)."""
    spanned = {script for name in span_names if name.startswith("redis.") for script in name[6:].split("/")}
    assert scripts <= spanned, " ".join(sorted(span_names))
    assert "redacted" not in span_names, " ".join(sorted(span_names))


async def test_signup_telemetry_is_complete_and_private(
    app: tuple[Application, InMemorySpanExporter],
) -> None:
    """A full signup emits the expected spans and metrics and logs, and none of them hold the identity."""
    application, exporter = app
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        _, token = await application.clients.create("default", Role.REGISTRAR)
        _, platform_token = await application.clients.create("default", Role.PLATFORM)
        auth = (
            ("authorization", f"Bearer {token}"),
            ("traceparent", TRACEPARENT),
            ("x-request-id", "req-otel-1"),
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{application.port}") as channel:
            stub = verification_pb2_grpc.VerificationServiceStub(channel)
            started = await stub.StartVerification(
                verification_pb2.StartVerificationRequest(
                    request_id="req-otel-1",
                    account_id="acct-otel",
                    method_id="sms",
                    consents=["identity", "phone"],
                    consent_text_versions={
                        "identity": text_version_of("identity text"),
                        "phone": text_version_of("phone text"),
                    },
                    subject=common_pb2.Subject(
                        kind=common_pb2.SUBJECT_KIND_PERSON,
                        name=NAME,
                        document_type=common_pb2.DOCUMENT_TYPE_CN_RIC,
                        document_number=NUMBER,
                        phone_number=PHONE,
                    ),
                ),
                metadata=auth,
            )
            vid = started.verification.verification_id
            code = re.findall(rf"code (\d+) for \S+ \(verification {vid}\)", captured.getvalue())[-1]
            done = await stub.SubmitChallenge(
                verification_pb2.SubmitChallengeRequest(verification_id=vid, code=code), metadata=auth
            )
            assert done.verification.status == verification_pb2.VERIFICATION_STATUS_VERIFIED
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.StartVerification(
                    verification_pb2.StartVerificationRequest(
                        request_id="bad",
                        account_id="a",
                        method_id="sms",
                        subject=common_pb2.Subject(name=NAME, document_number=NUMBER + "1"),
                    ),
                    metadata=auth,
                )
            accounts = account_pb2_grpc.AccountServiceStub(channel)
            await accounts.GetAccount(
                account_pb2.GetAccountRequest(account_id="acct-otel"),
                metadata=(("authorization", f"Bearer {platform_token}"),),
            )
        application_spans = []
        for provider in [application.telemetry.tracer_provider] if application.telemetry else []:
            assert provider is not None
            provider.force_flush()
        application_spans = exporter.get_finished_spans()
    finally:
        logging.getLogger().removeHandler(handler)

    names = {span.name for span in application_spans}
    assert {
        "StartVerification",
        "SubmitChallenge",
        "verifier.document",
        "verifier.sms_otp",
        "argon2id.index",
    } <= names
    assert_scripts_spanned(names, {"start", "submit"})
    assert_rpc_spans_are_one_tree_each(application_spans)
    server_span = next(s for s in application_spans if s.name == "StartVerification")
    assert f"{server_span.context.trace_id:032x}" == TRACEPARENT.split("-")[1]
    assert server_span.attributes is not None
    assert server_span.attributes["rpc.grpc.status_code"] == "OK"

    points = []
    data = reader.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                points.extend((metric.name, dict(p.attributes or {})) for p in metric.data.data_points)
    metric_names = {name for name, _ in points}
    assert {
        "idverify.verifications.started",
        "idverify.verifications.finished",
        "idverify.rpc.duration",
        "idverify.argon2.duration",
        "idverify.challenges.sent",
    } <= metric_names

    log_text = captured.getvalue()
    assert '"request_id": "req-otel-1"' in log_text
    assert '"trace_id": "0af7651916cd43dd8448eb211c80319c"' in log_text

    haystack = "\n".join(
        [log_text]
        + [
            f"{s.name} {dict(s.attributes or {})} {[e.name for e in s.events]} {dict(s.resource.attributes)}"
            for s in application_spans
        ]
        + [f"{name} {attributes}" for name, attributes in points]
    )
    assert [form for form in identity_forms() if form in haystack] == []

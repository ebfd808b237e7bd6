"""While no spans are exported, idverify's spans start nothing and leave the caller's context current."""

from __future__ import annotations

import pytest
from opentelemetry import context, propagate, trace

from idverify.observability import telemetry

# A caller's W3C trace context, as gRPC metadata carries it.
CALLER = (("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),)


@pytest.fixture(autouse=True)
def untraced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracer of a process whose telemetry was not asked for spans: the API's no-op one.

    Set here rather than assumed: a server an earlier test ran in this process installed its own.
    """
    monkeypatch.setattr(telemetry, "_TRACER", trace.NoOpTracer())
    assert not telemetry.tracing()


def test_a_callers_context_stays_current_inside_spans_and_leaf_spans() -> None:
    """Logs and outbox records still carry the caller's trace and span ids, as with the no-op tracer."""
    with telemetry.server_span("/idverify.v1.VerificationService/StartVerification", CALLER):
        outer = telemetry.current_ids()
        with telemetry.span("verifier.sms_otp", verifier="sms_otp") as current:
            assert (
                telemetry.current_ids() == outer == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
            )
            assert current is trace.get_current_span()
            with telemetry.leaf_span("redis.start", script="start") as leaf:
                assert not leaf.is_recording()
                assert (
                    telemetry.current_span_context() == "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                )
    assert telemetry.current_ids() == ("", "")


def test_an_exception_passes_through_and_the_context_is_left_as_it_was() -> None:
    """A failing block is not swallowed, and nothing is attached that would have to be detached."""
    token = context.attach(propagate.extract(dict(CALLER)))
    try:
        before = trace.get_current_span()
        with pytest.raises(RuntimeError, match="boom"), telemetry.span("step"):
            raise RuntimeError("boom")
        with pytest.raises(RuntimeError, match="boom"), telemetry.leaf_span("redis.get"):
            raise RuntimeError("boom")
        assert trace.get_current_span() is before
    finally:
        context.detach(token)


def test_no_attribute_is_looked_at() -> None:
    """A hostile value in an attribute costs nothing and goes nowhere: no span exists to carry it."""
    with telemetry.span("step", phone="13912345678", verifier=object()) as current:
        assert not current.is_recording()

"""The non-personal facts of a call that audit entries carry: principal, request id, trace id."""

from __future__ import annotations

from idverify.flows.context import RequestInfo
from idverify.security.principals import caller
from idverify.services.grpc_types import Context

_MAX_ID = 128


def request_info(context: Context, request_id: str = "") -> RequestInfo:
    """Collects the principal label, a bounded request id and the W3C trace id if one came in."""
    trace_id = ""
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent" and isinstance(value, str):
            parts = value.split("-")
            if len(parts) == 4 and len(parts[1]) == 32:  # noqa: PLR2004 - W3C traceparent layout
                trace_id = parts[1]
    safe_request_id = request_id if request_id.isprintable() and len(request_id) <= _MAX_ID else ""
    return RequestInfo(principal=caller().label, request_id=safe_request_id, trace_id=trace_id)

"""The non-personal facts of a call that audit entries carry: principal, request id, trace id.

A caller chooses its request ids freely, so one may hold anything, an ID number included, and an
audit entry can never be erased. Entries therefore carry a keyed pseudonym of the request id
(``RequestIdPseudonyms``), never the id itself. A trace id is kept only when the ``traceparent``
is the W3C format: it is then random hex that the caller's tracing system made, nothing else.
"""

from __future__ import annotations

import re

from idverify.flows.context import RequestInfo
from idverify.privacy.keyring import Keyring
from idverify.security.principals import caller
from idverify.services.grpc_types import Context

_MAX_ID = 128
# W3C Trace Context: version-traceid-parentid-flags, lower-case hex; version ff is invalid.
_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_ALL_ZERO_TRACE = "0" * 32
_ALL_ZERO_PARENT = "0" * 16
REQUEST_PURPOSE = "request-audit"


class RequestIdPseudonyms:
    """Keyed pseudonyms of caller-chosen request ids, per tenant, for audit entries."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def __call__(self, tenant: str, request_id: str) -> str:
        """The 32-hex pseudonym of ``request_id`` in ``tenant``; empty for an empty id."""
        return self._keyring.pseudonym(tenant, REQUEST_PURPOSE, request_id) if request_id else ""

    def request_info(self, context: Context, request_id: str) -> RequestInfo:
        """:func:`request_info` of a call that names a request id: the id's pseudonym goes with it."""
        bounded = request_id if request_id.isprintable() and len(request_id) <= _MAX_ID else ""
        info = request_info(context)
        return RequestInfo(
            principal=info.principal, request_id=self(caller().tenant, bounded), trace_id=info.trace_id
        )


def trace_id_of(traceparent: str) -> str:
    """The trace id of a well-formed W3C ``traceparent``; empty for anything else."""
    match = _TRACEPARENT.fullmatch(traceparent)
    if match is None or match[1] == _ALL_ZERO_TRACE or match[2] == _ALL_ZERO_PARENT:
        return ""
    return match[1]


def request_info(context: Context) -> RequestInfo:
    """The principal label and the W3C trace id if one came in (no request id)."""
    trace_id = ""
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent" and isinstance(value, str):
            trace_id = trace_id_of(value)
    return RequestInfo(principal=caller().label, trace_id=trace_id)

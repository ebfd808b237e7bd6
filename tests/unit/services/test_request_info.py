"""What of a call's own ids reaches an audit entry: a keyed pseudonym and a well-formed trace id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from idverify.privacy.keyring import Keyring
from idverify.security.principals import Principal, Role, current_principal
from idverify.services.request_info import RequestIdPseudonyms, request_info, trace_id_of

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
ID_NUMBER = "110101199003074514"


class _Context:
    """The one call-context method request_info reads."""

    def __init__(self, *metadata: tuple[str, str]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


@pytest.fixture(autouse=True)
def registrar() -> Iterator[Principal]:
    principal = Principal(tenant="default", role=Role.REGISTRAR, client_id="c1")
    token = current_principal.set(principal)
    yield principal
    current_principal.reset(token)


class TestTraceIds:
    def test_a_w3c_traceparent_gives_its_trace_id(self) -> None:
        assert trace_id_of(TRACEPARENT) == TRACE

    @pytest.mark.parametrize(
        "traceparent",
        [
            f"00-{TRACE.upper()}-00f067aa0ba902b7-01",  # upper case is not the format
            f"00-{ID_NUMBER[:-1]}X{'0' * 14}-00f067aa0ba902b7-01",  # an ID number with its X
            f"00-{'z' * 32}-00f067aa0ba902b7-01",
            f"00-{'0' * 32}-00f067aa0ba902b7-01",  # an all-zero trace id is invalid
            f"00-{TRACE}-{'0' * 16}-01",  # so is an all-zero parent id
            f"ff-{TRACE}-00f067aa0ba902b7-01",  # version ff is forbidden
            f"00-{TRACE}-00f067aa0ba902b7",
            f"00-{TRACE}-00f067aa0ba902b7-01-extra",
            f"00-{'张' * 32}-00f067aa0ba902b7-01",  # 32 characters, as the old check wanted
            "",
        ],
    )
    def test_anything_else_gives_none(self, traceparent: str) -> None:
        assert trace_id_of(traceparent) == ""

    def test_a_malformed_traceparent_is_not_carried(self) -> None:
        context = _Context(("traceparent", f"00-{'张' * 32}-00f067aa0ba902b7-01"))
        assert request_info(context).trace_id == ""
        assert request_info(_Context(("traceparent", TRACEPARENT))).trace_id == TRACE


class TestRequestIds:
    def test_an_audit_entry_gets_a_keyed_pseudonym_of_the_request_id(self) -> None:
        keyring = Keyring.generate()
        info = RequestIdPseudonyms(keyring).request_info(_Context(("traceparent", TRACEPARENT)), ID_NUMBER)
        assert ID_NUMBER not in str(info.audit_fields())
        assert len(info.request_id) == 32
        assert int(info.request_id, 16) >= 0
        assert info.trace_id == TRACE
        assert info.principal == "default/registrar/c1"

    def test_the_pseudonym_is_stable_per_tenant_and_key(self) -> None:
        keyring = Keyring.generate()
        pseudonyms = RequestIdPseudonyms(keyring)
        assert pseudonyms("default", "req-1") == pseudonyms("default", "req-1")
        assert pseudonyms("default", "req-1") != pseudonyms("other", "req-1")
        assert pseudonyms("default", "req-1") != RequestIdPseudonyms(Keyring.generate())("default", "req-1")

    def test_no_request_id_stays_empty(self) -> None:
        assert RequestIdPseudonyms(Keyring.generate()).request_info(_Context(), "").request_id == ""

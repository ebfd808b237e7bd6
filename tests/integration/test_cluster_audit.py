"""The audit log's end-to-end tests again: standalone Redis, Cluster and Sentinel.

The server fixture repeats the e2e module's signups on a freshly emptied topology (the tests
count the events those signups leave), and the test classes are the e2e suite's own.
"""

from __future__ import annotations

import pytest

from idverify.testing import ServerProcess
from tests.e2e import test_audit as e2e_audit
from tests.e2e.conftest import person, start, submit, verify, wrong_code

from .conftest import TopologyServers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The e2e module's own fixtures, registered here by name.
auditor = e2e_audit.auditor
exported = e2e_audit.exported


@pytest.fixture(scope="module")
def server(topology_servers: TopologyServers) -> ServerProcess:
    """The e2e audit fixture's signups (one with a wrong code first) on the current topology."""
    running = topology_servers.start("audit")
    with running.client("registrar") as registrar:
        for n in range(3):
            verify(running, registrar, person(), f"audit-acct-{n}")
        started = start(registrar, person(), "audit-wrong")
        code = running.sms_code(started.verification_id)
        submit(registrar, started.verification_id, wrong_code(code))
        submit(registrar, started.verification_id, code)
    return running


class TestAuditQueriesOnTopology(e2e_audit.TestQueries):
    """Queries by time, type, outcome and account."""


class TestAuditProofsOnTopology(e2e_audit.TestProofs):
    """Signed tree heads, inclusion and consistency proofs."""


class TestAuditRefusalsOnTopology(e2e_audit.TestRefusals):
    """What auditors may not do."""


class TestAuditExportOnTopology(e2e_audit.TestExport):
    """Export and offline verification."""

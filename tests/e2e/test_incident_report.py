"""An incident report end to end: a leaked token's reads counted, signed, checked offline.

The scale is ``IDVERIFY_INCIDENT_ACCOUNTS`` accounts read by one token (3,000 by default, with a
threshold of 1,000 persons configured so that it is crossed); the issue's full scale is
150,000 against the default threshold of 100,000 (README, "For compliance teams").
The reads come two ways: through the server (a second platform token reads labelled accounts
with GetIpLocations, and verified persons' accounts with GetAccount), and generated straight into
the read accounting's key schema in the server's own store for the current hours of the store's
clock, with persons behind the accounts (unbound labelled accounts have none), so that the
persons' threshold is crossed at scale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from idverify.audit.incident_html import OPERATOR_FIELDS
from idverify.client import Client
from idverify.flows.read_accounting import HOUR_MS, Category
from idverify.store.read_keys import ReadKeys
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, admin_pb2, audit_pb2
from tests.unit.audit.test_incident_html import Page

from .conftest import Identity, embedded_redis, needles_of, person, record_login_ip, rich_error, verify

pytestmark = pytest.mark.e2e
ACCOUNTS = int(os.environ.get("IDVERIFY_INCIDENT_ACCOUNTS", "3000"))
THRESHOLD = 100_000 if ACCOUNTS >= 150_000 else ACCOUNTS // 3
PERSONS = ACCOUNTS * 9 // 10  # one person in ten holds two accounts


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # The owner platform labels every account, one call each: far past the per-minute default.
    config = (
        f"[incident]\nthreshold_people = {THRESHOLD}\n[rate_limits]\nper_principal_per_minute = 1000000\n"
    )
    with ServerProcess(tmp_path_factory.mktemp("server"), config=config) as running:
        yield running


@pytest.fixture(scope="module")
def store(server: ServerProcess) -> Iterator[redis.Redis]:
    client = embedded_redis(server)
    yield client
    client.close()


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[Client]:
    with server.client("admin") as client:
        yield client


@pytest.fixture(scope="module")
def leaked(admin: Client) -> str:
    """The client id of a platform token that leaked."""
    created = admin.admin.CreateClient(admin_pb2.CreateClientRequest(role="platform", description="leaked"))
    return str(created.client.client_id)


@pytest.fixture(scope="module")
def hour(store: redis.Redis) -> int:
    seconds, _ = store.time()
    return int(seconds) * 1000 // HOUR_MS


@pytest.fixture(scope="module")
def generated_reads(store: redis.Redis, leaked: str, hour: int) -> str:
    """The leaked token read every account over the last two hours; another client read others."""
    keys = ReadKeys("default")

    def read(when: int, client: str, category: Category, accounts: range) -> None:
        with store.pipeline(transaction=False) as pipe:
            for start in range(accounts.start, accounts.stop, 10_000):
                chunk = range(start, min(start + 10_000, accounts.stop))
                pipe.pfadd(keys.accounts(when, client, category), *(f"acct-{n}" for n in chunk))
                pipe.pfadd(keys.identities(when, client, category), *(f"person-{n * 9 // 10}" for n in chunk))
            pipe.sadd(keys.who(when), client)
            pipe.execute()

    half = ACCOUNTS // 2
    read(hour - 1, leaked, Category.IP_LOCATION, range(half + 100))
    read(hour, leaked, Category.IP_LOCATION, range(half - 100, ACCOUNTS))
    read(hour, leaked, Category.VERIFICATION, range(50))
    read(hour, "0th3r", Category.IP_LOCATION, range(ACCOUNTS, ACCOUNTS + 400))
    return leaked


def iso(hour: int, minutes: int = 0) -> str:
    return (datetime.fromtimestamp(hour * HOUR_MS / 1000, UTC) + timedelta(minutes=minutes)).isoformat()


def cli(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IDVERIFY_TOKEN"}
    if token:
        env["IDVERIFY_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "idverify", "incident", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def public_key_file(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    with server.client("auditor") as auditor:
        pem = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).public_key
    path = tmp_path_factory.mktemp("key") / "audit-public.pem"
    path.write_text(pem)
    return path


@pytest.fixture(scope="module")
def written(
    server: ServerProcess, generated_reads: str, hour: int, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """``idverify incident report`` for the leaked token, from half past two hours ago to now."""
    out = tmp_path_factory.mktemp("report")
    done = cli(
        "report",
        "--server",
        server.target,
        "--principal",
        generated_reads,
        "--since",
        iso(hour - 1, 30),
        "--until",
        iso(hour, 59),
        "--detected-at",
        iso(hour, 5),
        "--out",
        str(out),
        "--html",
        token=server.token("admin"),
    )
    assert done.returncode == 0, done.stderr
    (json_file,) = out.glob("incident-default-*.json")
    (markdown,) = out.glob("incident-default-*.md")
    return json_file, markdown, done


def within(figure: dict[str, Any], truth: int) -> bool:
    return bool(figure["low"] <= truth <= figure["high"])


class TestLeakedToken:
    def test_the_report_counts_the_tokens_reads_within_the_stated_error(
        self, written: tuple[Path, Path, subprocess.CompletedProcess[str]], generated_reads: str, hour: int
    ) -> None:
        report = json.loads(written[0].read_bytes())["report"]
        reads = report["reads"]
        assert reads["clients_that_read"] == [generated_reads]
        assert within(reads["by_category"]["ip_location"]["accounts"], ACCOUNTS)
        assert within(reads["by_category"]["ip_location"]["identities"], PERSONS)
        assert within(reads["by_category"]["verification"]["accounts"], 50)
        assert reads["by_category"]["consent"]["accounts"]["exact"]
        assert within(reads["all_categories"]["accounts"], ACCOUNTS)
        assert "0.81 %" in reads["error_bound"]
        assert report["window"]["hours"] == 2
        assert report["window"]["since"] == iso(hour - 1).replace("+00:00", ".000Z")

    def test_the_threshold_is_flagged_and_the_deadline_follows_detection(
        self, written: tuple[Path, Path, subprocess.CompletedProcess[str]], hour: int
    ) -> None:
        report = json.loads(written[0].read_bytes())["report"]
        assert report["threshold"]["people"] == THRESHOLD
        assert report["threshold"]["crossed"] is True
        assert report["deadline"]["hours"] == "4"
        assert report["deadline"]["due"] == iso(hour + 4, 5).replace("+00:00", ".000Z")
        summary = written[2].stdout
        assert f"threshold of {THRESHOLD:,} crossed: yes" in summary

    def test_the_markdown_leaves_the_measures_to_the_operator(
        self, written: tuple[Path, Path, subprocess.CompletedProcess[str]]
    ) -> None:
        text = written[1].read_text(encoding="utf-8")
        assert "## Measures taken\n\n*to be filled by the operator*" in text
        assert "## Measures to be taken\n\n*to be filled by the operator*" in text

    def test_the_html_page_is_written_beside_with_the_same_figures(
        self, written: tuple[Path, Path, subprocess.CompletedProcess[str]]
    ) -> None:
        (page_file,) = written[0].parent.glob("incident-default-*.html")
        assert f"for people (fill in the measures): {page_file}" in written[2].stdout
        report = json.loads(written[0].read_bytes())["report"]
        page = Page(page_file.read_text(encoding="utf-8"))
        assert page.textareas == dict.fromkeys(OPERATOR_FIELDS, "")
        assert report["deadline"]["due"] in page.sections["threshold"]
        accounts = report["reads"]["by_category"]["ip_location"]["accounts"]
        assert f"{accounts['estimate']:,} (between {accounts['low']:,}" in page.sections["scale"]
        assert not {tag for tag, _ in page.tags} & {"script", "link", "img"}

    def test_it_verifies_offline_and_any_tampering_fails(
        self,
        written: tuple[Path, Path, subprocess.CompletedProcess[str]],
        public_key_file: Path,
        tmp_path: Path,
    ) -> None:
        ok = cli("verify", str(written[0]), "--public-key", str(public_key_file))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.startswith("OK: incident report of tenant default")
        document = json.loads(written[0].read_bytes())
        document["report"]["reads"]["all_categories"]["identities"]["estimate"] -= 1
        forged = tmp_path / "forged.json"
        forged.write_text(json.dumps(document))
        failed = cli("verify", str(forged), "--public-key", str(public_key_file))
        assert failed.returncode == 1
        assert failed.stdout.startswith("FAILED")

    def test_the_report_is_in_the_audit_log(self, server: ServerProcess, written: object) -> None:
        del written
        with server.client("auditor") as auditor:
            found = list(
                auditor.audit.QueryEvents(
                    audit_pb2.QueryEventsRequest(event_types=["incident.reported"], limit=10)
                )
            )
        assert found
        assert found[-1].event.principal.startswith("default/admin/")


@pytest.fixture(scope="module")
def persons(server: ServerProcess) -> list[Identity]:
    people = [person(), person()]
    with server.client("registrar") as registrar, server.client("platform") as platform:
        for n, who in enumerate(people):
            verify(server, registrar, who, f"incident-acct-{n}")
        record_login_ip(platform, "incident-acct-0")
    return people


@pytest.fixture(scope="module")
def breach(admin: Client, persons: list[Identity]) -> admin_pb2.CreateIncidentReportResponse:
    del persons
    request = admin_pb2.CreateIncidentReportRequest(store_breach=True, critical_infrastructure=True)
    request.since.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    request.until.FromDatetime(datetime.now(UTC))
    request.detected_at.FromDatetime(datetime(2026, 12, 6, 8, 0, tzinfo=UTC))
    answer: admin_pb2.CreateIncidentReportResponse = admin.admin.CreateIncidentReport(request)
    return answer


class TestStoreBreach:
    def test_holdings_match_what_the_store_holds(
        self, breach: admin_pb2.CreateIncidentReportResponse, store: redis.Redis
    ) -> None:
        """Counted again here, key by key, from the server's own Redis."""
        identities = [
            k for k in store.scan_iter(match="iv1:{t:default}:id:*") if not store.hexists(k, "moved_to")
        ]
        accounts = list(store.scan_iter(match="iv1:{t:default}:acct:*"))
        bound = [k for k in accounts if store.hexists(k, "identity")]
        located = [k for k in accounts if store.hexists(k, "ip_ms")]
        report = json.loads(breach.signed_report)["report"]
        holdings = report["holdings"]
        assert holdings["identities"] == len(identities) >= 2
        assert holdings["accounts"] == len(accounts)
        assert holdings["bound_accounts"] == len(bound) >= 2
        assert holdings["by_category"]["ip_location"] == len(located) >= 1
        assert holdings["sealed_values"]["birth_date"] >= 2
        assert report["threshold"]["affected"]["exact"]
        assert report["deadline"]["due"] == "2026-12-06T09:00:00.000Z"  # one hour: critical infrastructure

    def test_the_report_holds_no_personal_data(
        self, breach: admin_pb2.CreateIncidentReportResponse, persons: list[Identity]
    ) -> None:
        texts = [breach.signed_report, breach.markdown.encode()]
        for who in persons:
            for needle in needles_of(who):
                assert all(needle not in text for text in texts), needle
        assert all(b"incident-acct-" not in text for text in texts)


@pytest.fixture(scope="module")
def read_through_the_server(server: ServerProcess, admin: Client, persons: list[Identity]) -> str:
    """A second platform token reads, through the server, every account a platform labelled.

    The labels are recorded by the tenant's own platform (RecordLoginIp is a write, not a read);
    the leaked token then reads them in batches of 1,000 (GetIpLocations) and the two verified
    persons' accounts (GetAccount). Returns the leaked token's client id.
    """
    del persons
    created = admin.admin.CreateClient(admin_pb2.CreateClientRequest(role="platform", description="leaked 2"))
    ids = [f"incident-read-{n}" for n in range(ACCOUNTS)]
    with server.client("platform") as owner, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda account: record_login_ip(owner, account), ids))
    with Client(server.target, created.token) as leaked:
        for first in range(0, ACCOUNTS, 1000):
            leaked.account.GetIpLocations(
                account_pb2.GetIpLocationsRequest(account_ids=ids[first : first + 1000])
            )
        for n in range(2):
            leaked.account.GetAccount(account_pb2.GetAccountRequest(account_id=f"incident-acct-{n}"))
    return str(created.client.client_id)


class TestReadsThroughTheServer:
    def test_a_tokens_real_reads_are_counted_within_the_stated_error(
        self, admin: Client, store: redis.Redis, read_through_the_server: str
    ) -> None:
        client_id = read_through_the_server
        request = admin_pb2.CreateIncidentReportRequest(principals=[client_id])
        now = datetime.now(UTC)
        request.since.FromDatetime(now - timedelta(hours=1))
        request.until.FromDatetime(now + timedelta(minutes=1))
        request.detected_at.FromDatetime(now)
        hours = range(int(store.time()[0]) * 1000 // HOUR_MS - 1, int(store.time()[0]) * 1000 // HOUR_MS + 1)
        keys = ReadKeys("default")
        deadline = time.monotonic() + 30
        # GetAccount's reads are recorded once it has answered: wait for them.
        while not any(store.exists(keys.identities(h, client_id, Category.VERIFICATION)) for h in hours):
            assert time.monotonic() < deadline, "the GetAccount reads were never recorded"
            time.sleep(0.2)
        report = json.loads(admin.admin.CreateIncidentReport(request).signed_report)["report"]
        reads = report["reads"]
        assert reads["clients_that_read"] == [client_id]
        assert within(reads["by_category"]["ip_location"]["accounts"], ACCOUNTS)
        assert reads["by_category"]["ip_location"]["identities"]["estimate"] == 0  # labelled, never bound
        assert within(reads["by_category"]["verification"]["accounts"], 2)
        assert within(reads["by_category"]["verification"]["identities"], 2)
        assert within(reads["all_categories"]["accounts"], ACCOUNTS + 2)


class TestAbuse:
    @staticmethod
    def request() -> admin_pb2.CreateIncidentReportRequest:
        asked = admin_pb2.CreateIncidentReportRequest()
        asked.since.FromDatetime(datetime(2026, 12, 6, 0, 0, tzinfo=UTC))
        asked.until.FromDatetime(datetime(2026, 12, 6, 1, 0, tzinfo=UTC))
        asked.detected_at.FromDatetime(datetime(2026, 12, 6, 2, 0, tzinfo=UTC))
        return asked

    @pytest.mark.parametrize("role", ["auditor", "platform", "registrar", "operator"])
    def test_only_an_admin_may_ask(self, server: ServerProcess, role: str) -> None:
        with server.client(role) as client, pytest.raises(grpc.RpcError) as refused:
            client.admin.CreateIncidentReport(self.request())
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED

    def test_without_a_token_it_is_unauthenticated(self, server: ServerProcess) -> None:
        with Client(server.target, "") as anonymous, pytest.raises(grpc.RpcError) as refused:
            anonymous.admin.CreateIncidentReport(self.request())
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

    def test_an_admin_reports_on_its_own_tenant_only(self, server: ServerProcess) -> None:
        asked = self.request()
        asked.tenant = "default"
        with server.client("admin", tenant="tb") as other, pytest.raises(grpc.RpcError) as refused:
            other.admin.CreateIncidentReport(asked)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert rich_error(refused.value)[0] == "OTHER_TENANT"

    @pytest.mark.parametrize(
        ("field", "reason"),
        [
            ("since", "MISSING_FIELD"),
            ("until", "EMPTY_WINDOW"),
            ("principals[1]", "BAD_ID"),
            ("detected_at", ""),
        ],
    )
    def test_bad_requests_are_invalid_argument_naming_the_field(
        self, admin: Client, field: str, reason: str
    ) -> None:
        asked = self.request()
        if field == "since":
            asked.ClearField("since")
        elif field == "until":
            asked.until.CopyFrom(asked.since)
        elif field == "principals[1]":
            asked.principals.extend(["c0ffee01", "../../etc"])
        else:
            asked.ClearField("detected_at")
        with pytest.raises(grpc.RpcError) as refused:
            admin.admin.CreateIncidentReport(asked)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        got_reason, got_field = rich_error(refused.value)
        assert got_field == field
        assert not reason or got_reason == reason

    @pytest.mark.parametrize(
        ("flags", "message"),
        [
            (["--since", "yesterday"], "--since: not an ISO 8601 time"),
            (["--since", "2026-12-06T08:00"], "--since: give the time zone"),
            (["--out", "/nonexistent/dir"], "--out: /nonexistent/dir is not a directory"),
        ],
    )
    def test_bad_flags_get_one_line(self, server: ServerProcess, flags: list[str], message: str) -> None:
        values = {
            "--since": "2026-12-06T08:00Z",
            "--until": "2026-12-06T09:00Z",
            "--detected-at": "2026-12-06T09:30Z",
        }
        values.update(dict(zip(flags[::2], flags[1::2], strict=True)))
        args = [item for pair in values.items() for item in pair]
        done = cli("report", "--server", server.target, *args, token=server.token("admin"))
        assert done.returncode == 2
        assert done.stderr.startswith(f"idverify: {message}")
        assert done.stderr.count("\n") == 1

    def test_a_refusal_is_one_line_too(self, server: ServerProcess) -> None:
        done = cli(
            "report",
            "--server",
            server.target,
            "--since",
            "2026-12-06T08:00Z",
            "--until",
            "2026-12-06T09:00Z",
            "--detected-at",
            "2026-12-06T09:30Z",
            token=server.token("auditor"),
        )
        assert done.returncode == 1
        assert done.stderr.startswith("idverify: PERMISSION_DENIED")
        assert done.stderr.count("\n") == 1

    def test_verify_refuses_what_is_not_a_report_in_one_line(
        self, public_key_file: Path, tmp_path: Path
    ) -> None:
        junk = tmp_path / "junk.json"
        junk.write_text("{}")
        done = cli("verify", str(junk), "--public-key", str(public_key_file))
        assert done.returncode == 1
        assert done.stderr.startswith("idverify: not a signed incident report")
        assert done.stderr.count("\n") == 1

"""The auditor's console over HTTP, without a browser: sign-in, sessions, headers, reads, abuse.

One real server (development mode, one worker, so the per-worker sign-in limit is the one
counted), real Redis; the browser's side of the console is tests/e2e/test_console_browser.py.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest
from cryptography import x509

from idverify.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from idverify.console.server import COOKIE, CSP
from idverify.flows.read_accounting import HOUR_MS, Category
from idverify.store.keys import TenantKeys
from idverify.store.read_keys import ReadKeys
from idverify.testing import ServerProcess, free_port
from idverify.v1 import account_pb2, admin_pb2
from tests.e2e.conftest import embedded_redis, everything_stored, needles_of, person, verify
from tests.e2e.test_tls import Authority, credentials, pki, tls_config

pytestmark = pytest.mark.e2e

__all__ = ["pki"]  # the TLS tests' fixture, used here too

# A real sender, as production mode wants (plain HTTP to loopback stays allowed); never called here.
PRODUCTION_SMS = (
    f'[sms]\nsender = "http"\n[sms.options]\nurl = "http://127.0.0.1:{free_port()}"\n'
    'secret_env = "SMS_SECRET"\n'
)

SIGNIN_LIMIT = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A development server whose console allows few failed sign-ins."""
    with ServerProcess(
        tmp_path_factory.mktemp("console"),
        console=True,
        extra_args=["--workers", "1"],
        env={"IDVERIFY_CONSOLE__SIGNIN_FAILURES_PER_MINUTE": str(SIGNIN_LIMIT)},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def signup(server: ServerProcess) -> tuple[object, str]:
    """One verified signup of the default tenant, and one of tenant acme; the default's identity."""
    identity = person()
    with server.client("registrar") as registrar:
        verify(server, registrar, identity, "console-account-1")
    with server.client("registrar", tenant="acme") as registrar:
        verify(server, registrar, person(), "acme-account-1")
    with server.client("platform") as platform:
        platform.account.CancelAccount(account_pb2.CancelAccountRequest(account_id="console-account-1"))
    return identity, "console-account-1"


def browser(server: ServerProcess) -> httpx.Client:
    """An HTTP client that keeps cookies, does not follow redirects, and says where it posts from."""
    return httpx.Client(base_url=server.console_url, headers={"Origin": server.console_url}, timeout=10)


def session_cookie(answer: httpx.Response) -> str:
    """The session id a sign-in answer sets."""
    found = re.match(rf"{COOKIE}=([^;]*);", answer.headers.get("set-cookie", ""))
    assert found is not None, answer.headers
    return found.group(1)


def carrying(server: ServerProcess, session: str) -> httpx.Client:
    """A client that sends the session cookie.

    httpx keeps a Secure cookie off plain HTTP, as it should; a browser treats the loopback
    console as a secure context and sends it (tests/e2e/test_console_browser.py).
    """
    return httpx.Client(
        base_url=server.console_url,
        headers={"Origin": server.console_url, "Cookie": f"{COOKIE}={session}"},
        timeout=10,
    )


def signed_in(server: ServerProcess, role: str = "auditor", tenant: str = "default") -> httpx.Client:
    """A client signed in with a fresh token of the role."""
    with browser(server) as client:
        answer = client.post("/signin", data={"token": server.token(role, tenant)})
    assert answer.status_code == 303, answer.text
    return carrying(server, session_cookie(answer))


class TestSignIn:
    def test_no_cookie_is_sent_to_sign_in(self, server: ServerProcess) -> None:
        """Without a session the page redirects to the sign-in form and the API answers 401."""
        with browser(server) as client:
            page = client.get("/")
            assert page.status_code == 303
            assert page.headers["location"] == "/signin"
            for path in (
                "/api/events",
                "/api/head",
                "/api/charts",
                "/api/events/0",
                "/api/charts/outcomes.csv",
            ):
                answer = client.get(path)
                assert answer.status_code == 401, path
                assert answer.json()["reason"] == "UNAUTHENTICATED"

    def test_forged_cookie_is_refused(self, server: ServerProcess) -> None:
        """A made-up or malformed session cookie opens nothing."""
        for value in ("x" * 43, "", "a" * 5000, "../../etc", server.token("auditor")):
            with carrying(server, value) as client:
                assert client.get("/api/me").status_code == 401, value[:20]

    def test_auditor_gets_a_strict_cookie_not_the_token(self, server: ServerProcess) -> None:
        """The cookie is HttpOnly, Secure, SameSite=Strict, expires, and is a session id, not the token."""
        token = server.token("auditor")
        with browser(server) as client:
            answer = client.post("/signin", data={"token": token})
            assert answer.status_code == 303
            assert answer.headers["location"] == "/"
            cookie = answer.headers["set-cookie"]
            assert cookie.startswith(f"{COOKIE}=")
            for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Max-Age=1800", "Path=/"):
                assert flag in cookie, flag
            value = session_cookie(answer)
            assert token not in cookie
            assert token.split(".")[-1] not in value
            with carrying(server, value) as session:
                me = session.get("/api/me").json()
            assert (me["tenant"], me["role"]) == ("default", "auditor")
        tenant, session_id = value.split(".", 1)
        assert tenant == "default"
        stored = b"\n".join(everything_stored(embedded_redis(server)))
        assert session_id.encode() not in stored
        assert hashlib.sha256(session_id.encode()).hexdigest().encode() in stored

    def test_admin_may_sign_in(self, server: ServerProcess) -> None:
        """An admin token of the tenant signs in too (AuditService's roles)."""
        with signed_in(server, "admin") as client:
            assert client.get("/api/me").json()["role"] == "admin"

    @pytest.mark.parametrize("role", ["registrar", "platform", "operator"])
    def test_other_roles_are_refused(self, server: ServerProcess, role: str) -> None:
        """Registrar, platform and operator tokens get 403 and no cookie."""
        with browser(server) as client:
            answer = client.post("/signin", data={"token": server.token(role)})
            assert answer.status_code == 403
            assert "set-cookie" not in answer.headers

    def test_bootstrap_token_is_refused(self, server: ServerProcess) -> None:
        """The bootstrap token creates clients only: it does not open the console."""
        with browser(server) as client:
            assert client.post("/signin", data={"token": server.bootstrap_token()}).status_code == 403

    def test_cross_origin_post_is_refused(self, server: ServerProcess) -> None:
        """A sign-in or sign-out posted from another origin is refused outright."""
        with httpx.Client(base_url=server.console_url, headers={"Origin": "https://evil.example"}) as client:
            assert client.post("/signin", data={"token": server.token("auditor")}).status_code == 403
            assert client.post("/signout").status_code == 403

    def test_sign_in_and_out_are_post_only(self, server: ServerProcess) -> None:
        """GET cannot sign anyone in or out (a link or an image cannot do it)."""
        with signed_in(server) as client:
            assert client.get("/signout").status_code == 405
            assert client.get("/signin", params={"token": server.token("auditor")}).status_code == 200
            assert client.get("/api/me").status_code == 200

    def test_sign_out_ends_the_session_on_the_server(self, server: ServerProcess) -> None:
        """After sign-out the old cookie, replayed, opens nothing; both ends are in the audit log."""
        with signed_in(server, "admin") as client:
            stolen = client.headers["Cookie"].split("=", 1)[1]
            me = client.get("/api/me").json()
            answer = client.post("/signout")
            assert answer.status_code == 303
            assert f'{COOKIE}=""' in answer.headers["set-cookie"]
        with carrying(server, stolen) as replay:
            assert replay.get("/api/me").status_code == 401
        with signed_in(server) as auditor:
            entries = auditor.get(
                "/api/events", params={"type": ["console.signed_in", "console.signed_out"], "limit": 200}
            ).json()["events"]
            ends = [e["type"] for e in entries]
            assert "console.signed_out" in ends
            last_out = next(e for e in reversed(entries) if e["type"] == "console.signed_out")
            entry = auditor.get(f"/api/events/{last_out['index']}").json()["entry"]
            assert f'"role":"{me["role"]}"' in entry
            assert '"principal":"default/admin/' in entry
            assert stolen.split(".", 1)[1] not in entry

    def test_revoking_the_client_ends_its_sessions(self, server: ServerProcess) -> None:
        """A leaked auditor token revoked: the sessions it opened stop at once."""
        with server.client("admin") as admin:
            created = admin.admin.CreateClient(
                admin_pb2.CreateClientRequest(tenant="default", role="auditor", description="leaked")
            )
            with browser(server) as client:
                answer = client.post("/signin", data={"token": created.token})
                assert answer.status_code == 303
            with carrying(server, session_cookie(answer)) as session:
                assert session.get("/api/me").status_code == 200
                admin.admin.RevokeClient(admin_pb2.RevokeClientRequest(client_id=created.client.client_id))
                assert session.get("/api/me").status_code == 401


class TestHeaders:
    def test_every_answer_has_the_strict_policy(self, server: ServerProcess) -> None:
        """CSP without inline script, nosniff, no framing, no referrer, on pages, assets and errors."""
        with signed_in(server) as client:
            for path in (
                "/",
                "/signin",
                "/static/console.js",
                "/static/merkle.js",
                "/api/head",
                "/api/events/999999",
                "/nope",
            ):
                answer = client.get(path)
                headers = answer.headers
                assert headers["content-security-policy"] == CSP, path
                assert "'unsafe-inline'" not in CSP
                assert "default-src 'self'" in CSP
                assert headers["x-content-type-options"] == "nosniff"
                assert headers["x-frame-options"] == "DENY"
                assert headers["referrer-policy"] == "same-origin"

    def test_pages_load_nothing_from_elsewhere(self) -> None:
        """Every asset is in the package; no page names another host or carries inline script."""
        static = Path(__file__).parents[2] / "idverify" / "console" / "static"
        for page in static.iterdir():
            text = page.read_text(encoding="utf-8")
            assert not re.search(r"(src|href)=\"(https?:)?//", text), page.name
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), page.name
            assert " on" + "click=" not in text, page.name
            assert "javascript:" not in text, page.name
            assert 'fetch("http' not in text, page.name
            assert 'import("http' not in text, page.name

    def test_unknown_assets_and_traversal(self, server: ServerProcess) -> None:
        """Only the shipped files are served: no directory walk, no other file types."""
        with browser(server) as client:
            for path in (
                "/static/../server.py",
                "/static/%2e%2e%2fserver.py",
                "/static/__init__.py",
                "/static/nope.js",
            ):
                answer = client.get(path)
                # A client may normalize the dots away: then it is an unknown page, sent to sign in.
                assert answer.status_code in {303, 404}, path
                assert "import" not in answer.text, path


class TestReads:
    def test_filters_and_pages_like_query_events(
        self, server: ServerProcess, signup: tuple[object, str]
    ) -> None:
        """Type, outcome and account filters narrow the log; pages follow next_index."""
        _, account = signup
        with signed_in(server) as client:
            everything = client.get("/api/events", params={"limit": 200}).json()["events"]
            verified = client.get("/api/events", params={"type": "verification.verified"}).json()["events"]
            assert verified
            assert all(e["type"] == "verification.verified" for e in verified)
            mine = client.get("/api/events", params={"account_id": account}).json()["events"]
            assert mine
            assert len({e["account"] for e in mine}) == 1
            assert account not in str(mine)
            first = client.get("/api/events", params={"limit": 2}).json()
            assert [e["index"] for e in first["events"]] == [everything[0]["index"], everything[1]["index"]]
            second = client.get("/api/events", params={"limit": 2, "from_index": first["next_index"]}).json()
            assert second["events"][0]["index"] == everything[2]["index"]
            window = client.get(
                "/api/events",
                params={"start_ms": everything[1]["time_ms"], "end_ms": everything[-1]["time_ms"] + 1},
            ).json()["events"]
            assert all(e["time_ms"] >= everything[1]["time_ms"] for e in window)

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"start_ms": "20", "end_ms": "10"}, "start_time"),
            ({"from_index": "abc"}, "from_index"),
            ({"limit": "0"}, "limit"),
            ({"limit": "100000"}, "limit"),
            ({"start_ms": "-5"}, "start_ms"),
            ({"type": "x" * 65}, "event_types[0]"),
            ({"account_id": "\u0000"}, "account_id"),
        ],
    )
    def test_bad_filters_name_the_field(
        self, server: ServerProcess, params: dict[str, str], field: str
    ) -> None:
        """A bad filter is a 400 naming the field, never a 500."""
        with signed_in(server) as client:
            answer = client.get("/api/events", params=params)
            assert answer.status_code == 400, answer.text
            assert answer.json()["field"] == field

    def test_entry_head_and_proofs_check_out(self, server: ServerProcess, signup: tuple[object, str]) -> None:
        """An entry's bytes, the signed head and the proofs the page checks agree (checked here too)."""
        del signup
        with signed_in(server) as client:
            head = client.get("/api/head").json()
            assert head["origin"] == "idverify/default"
            assert "BEGIN PUBLIC KEY" in head["public_key_pem"]
            root = base64.b64decode(head["root_hash"])
            entry = client.get("/api/events/1").json()
            leaf = leaf_hash(entry["entry"].encode())
            assert base64.b64decode(entry["leaf_hash"]) == leaf
            proof = client.get("/api/proof/inclusion", params={"index": 1, "tree_size": head["size"]}).json()
            verify_inclusion(leaf, 1, head["size"], [base64.b64decode(h) for h in proof["hashes"]], root)
            older = client.get("/api/proof/consistency", params={"first": 1, "second": head["size"]}).json()
            first_root = leaf_hash(client.get("/api/events/0").json()["entry"].encode())
            verify_consistency(
                1, head["size"], [base64.b64decode(h) for h in older["hashes"]], first_root, root
            )
            assert client.get("/api/events/99999999").status_code == 400
            bad = client.get("/api/proof/inclusion", params={"index": 5, "tree_size": 2})
            assert (bad.status_code, bad.json()["field"]) == (400, "index")
            assert client.get("/api/proof/inclusion", params={"index": 0}).json()["field"] == "tree_size"

    def test_a_damaged_entry_is_named_never_a_server_error(self, server: ServerProcess) -> None:
        """An entry altered in Redis (planted, or a damaged restore): 409 AUDIT_ENTRY_DAMAGED, not a 500.

        Its own tenant, so the module's other reads never meet it.
        """
        tenant = "damaged-log"
        with server.client("registrar", tenant=tenant) as registrar:
            verify(server, registrar, person(), "damaged-account-1")
        damaged = 1
        embedded_redis(server).hset(
            TenantKeys(tenant).audit_log(), str(damaged), b'{"v":1,"seq":1,"type":"\xff"}'
        )
        with signed_in(server, tenant=tenant) as client:
            for answer in (
                client.get("/api/events", params={"limit": 200}),
                client.get(f"/api/events/{damaged}"),
            ):
                assert answer.status_code == 409, answer.text
                assert answer.json()["reason"] == "AUDIT_ENTRY_DAMAGED"
                assert str(damaged) in answer.json()["message"]
            assert client.get("/api/events/0").status_code == 200

    def test_charts_count_from_the_indexes(self, server: ServerProcess, signup: tuple[object, str]) -> None:
        """Today's bars hold the verifications by outcome and method; erasures show; CSV exports."""
        del signup
        with signed_in(server) as client:
            charts = client.get("/api/charts", params={"days": 7}).json()
            outcomes = {s["label"]: s["counts"] for s in charts["outcomes"]["series"]}
            assert outcomes["verified"][-1] >= 1
            assert len(charts["outcomes"]["labels"]) == 7
            methods = {s["label"]: s["counts"] for s in charts["methods"]["series"]}
            assert methods["sms"][-1] >= 1
            assert charts["erasures"]["extra"]["pending"] >= 1  # the account, and its identity
            assert charts["erasures"]["extra"]["overdue"] == 0
            assert set(charts) == {"outcomes", "methods", "reasons", "refusals", "rate_limits", "erasures"}
            exported = client.get("/api/charts/outcomes.csv", params={"days": 7})
            assert exported.headers["content-type"].startswith("text/csv")
            rows = list(csv.reader(io.StringIO(exported.text)))
            assert rows[0] == ["label", "verified", "rejected", "expired", "needs guardian"]
            assert int(rows[-1][1]) >= 1
            assert client.get("/api/charts/nope.csv").status_code == 404
            assert client.get("/api/charts", params={"days": "1000"}).json()["field"] == "days"

    def test_another_tenants_log_is_out_of_reach(
        self, server: ServerProcess, signup: tuple[object, str]
    ) -> None:
        """An acme auditor sees acme's log only, whatever the request names."""
        del signup
        with signed_in(server, tenant="acme") as client:
            assert client.get("/api/head", params={"tenant": "default"}).json()["origin"] == "idverify/acme"
            events = client.get("/api/events", params={"tenant": "default", "limit": 200}).json()["events"]
            assert events
            for event in events:
                entry = client.get(f"/api/events/{event['index']}", params={"tenant": "default"}).json()[
                    "entry"
                ]
                assert '"principal":"acme/' in entry or '"principal":"default/operator' in entry, entry
        with signed_in(server) as default:
            acme_size = len(events)
            default_size = default.get("/api/head").json()["size"]
            assert (
                default_size != acme_size or default.get("/api/head").json()["origin"] == "idverify/default"
            )

    def test_no_personal_data_on_any_page(self, server: ServerProcess, signup: tuple[object, str]) -> None:
        """Pages, entries, charts and exports hold no name, number, phone or raw account id."""
        identity, account = signup
        needles = {*needles_of(identity), account.encode()}  # type: ignore[arg-type]
        with signed_in(server) as client:
            size = client.get("/api/head").json()["size"]
            paths = [
                "/",
                "/api/me",
                "/api/head",
                "/api/charts",
                "/api/events?limit=200",
                *(f"/api/events/{index}" for index in range(size)),
                *(f"/api/charts/{name}.csv" for name in ("outcomes", "methods", "reasons", "erasures")),
            ]
            seen = [client.get(path).content for path in paths]
        everything = b"\n".join(seen)
        for needle in needles:
            assert needle not in everything, needle


def console_serial(port: int, ca: Authority) -> int:
    """The serial number of the certificate the console presents to a new connection."""
    context = ssl.create_default_context(cadata=ca.pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


class TestReadsAreRecorded:
    """The console's reads of the log are accounted to the signed-in client, as AuditService's are."""

    @staticmethod
    def own_auditor(server: ServerProcess) -> tuple[httpx.Client, str]:
        """A client signed in with a token of its own, and that token's client id."""
        with server.client("admin") as admin:
            token = admin.admin.CreateClient(
                admin_pb2.CreateClientRequest(role="auditor", description="console reader")
            ).token
        with browser(server) as client:
            answer = client.post("/signin", data={"token": token})
        assert answer.status_code == 303, answer.text
        return carrying(server, session_cookie(answer)), token.split(".")[1]

    @staticmethod
    def recorded(server: ServerProcess, client_id: str) -> dict[str, int]:
        """The client's calls and accounts per RPC, over its open minutes of reads."""
        store = embedded_redis(server)
        keys = TenantKeys("default")
        summed: dict[str, int] = {}
        members = cast("list[bytes]", store.zrange(keys.reads_open(), 0, -1))
        for member in (m.decode() for m in members):
            if member.split(":", 1)[1] != client_id:
                continue
            counts = cast("dict[bytes, bytes]", store.hgetall(keys.reads_minute_counts(member)))
            assert counts[b"principal"].decode() == f"default/auditor/{client_id}"
            for name, value in ((n.decode(), v) for n, v in counts.items()):
                if name.startswith(("calls:", "accounts:")):
                    summed[name] = summed.get(name, 0) + int(value)
        return summed

    def test_each_read_is_recorded_under_the_signed_in_client(
        self, server: ServerProcess, signup: tuple[object, str]
    ) -> None:
        _, account = signup
        client, client_id = self.own_auditor(server)
        with client:
            assert client.get("/api/events", params={"account_id": account}).json()["events"]
            size = client.get("/api/head").json()["size"]
            client.get("/api/events/0").raise_for_status()
            client.get("/api/proof/inclusion", params={"index": 0, "tree_size": size}).raise_for_status()
            client.get("/api/proof/consistency", params={"first": 1, "second": size}).raise_for_status()
            client.get("/api/charts").raise_for_status()
            client.get("/api/charts/outcomes.csv").raise_for_status()
        counts = self.recorded(server, client_id)
        for call in ("QueryEvents", "GetTreeHead", "GetEvent", "GetInclusionProof", "GetConsistencyProof"):
            assert counts[f"calls:Console.{call}"] == 1, call
        assert counts["calls:Console.Charts"] == 2
        assert counts["accounts:Console.QueryEvents"] == 1  # the account the query named
        store = embedded_redis(server)
        seconds, _ = store.time()
        hours = [seconds * 1000 // HOUR_MS + d for d in (-1, 0)]
        read = ReadKeys("default").accounts_over(hours, [client_id], Category.AUDIT)
        assert store.pfcount(*read) == 1
        assert client_id.encode() in store.smembers(ReadKeys("default").who(hours[-1]))

    def test_a_refused_read_is_not_recorded_and_a_stranger_records_nothing(
        self, server: ServerProcess
    ) -> None:
        """A bad filter (400) reads nothing; no session, no reader: nothing is recorded."""
        client, client_id = self.own_auditor(server)
        with client:
            assert client.get("/api/events", params={"limit": "0"}).status_code == 400
            assert client.get("/api/events/99999999").status_code == 400
        with browser(server) as stranger:
            assert stranger.get("/api/events").status_code == 401
        assert self.recorded(server, client_id) == {}


class TestProductionConsole:
    def test_https_with_the_grpc_certificate(self, pki: tuple[Authority, Path], tmp_path: Path) -> None:
        """In production the console is HTTPS with the gRPC port's certificate, and HSTS."""
        ca, directory = pki
        config = PRODUCTION_SMS + tls_config(directory, mutual=False) + '[console]\nenabled = "on"\n'
        server = ServerProcess(
            tmp_path,
            config=config,
            credentials=credentials(ca, directory, None),
            development=False,
            env={"SMS_SECRET": "s" * 32},
            extra_args=["--workers", "1"],
        )
        with server:
            assert server.console_url.startswith("https://")
            with httpx.Client(verify=ssl.create_default_context(cadata=ca.pem.decode())) as client:
                answer = client.get(f"https://localhost:{server.console_port}/signin")
            assert answer.status_code == 200
            assert answer.headers["strict-transport-security"].startswith("max-age=")
            with pytest.raises(httpx.HTTPError), httpx.Client() as plain:
                plain.get(f"http://127.0.0.1:{server.console_port}/signin")
            # A renewed certificate, as gRPC's: new handshakes get it without a restart.
            first = console_serial(server.console_port, ca)
            cert, key, renewed = ca.issue("idverify server", server=True)
            (directory / "server.key").write_bytes(key)
            (directory / "server.pem").write_bytes(cert)
            deadline = time.monotonic() + 15
            while console_serial(server.console_port, ca) != renewed and time.monotonic() < deadline:
                time.sleep(0.2)
            assert console_serial(server.console_port, ca) == renewed != first

    def test_production_refuses_a_console_without_tls(self, tmp_path: Path) -> None:
        """console.enabled = on without a certificate stops the start with one line naming why."""
        server = ServerProcess(
            tmp_path,
            config=PRODUCTION_SMS + '[console]\nenabled = "on"\n',
            development=False,
            env={"SMS_SECRET": "s" * 32},
        )
        with pytest.raises(RuntimeError, match=r"console: HTTPS needs tls\.cert_file"):
            server.start()


class TestSignInLimit:
    """Last in the module: it locks this machine's address out of sign-ins for a while."""

    def test_wrong_tokens_are_rate_limited(self, server: ServerProcess) -> None:
        """Past the limit every sign-in from the address is refused with 429, a right token included."""
        with browser(server) as client:
            answers: list[int] = []
            while 429 not in answers and len(answers) < 2 * SIGNIN_LIMIT:
                guess = client.post("/signin", data={"token": f"ivk_default.guess{len(answers)}.secret"})
                answers.append(guess.status_code)
            # Refused roles earlier in the module counted as failures too: the limit may come sooner.
            assert answers[-1] == 429, answers
            assert set(answers[:-1]) <= {401}
            assert len(answers) <= SIGNIN_LIMIT + 1
            refused = client.post("/signin", data={"token": server.token("auditor")})
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert "set-cookie" not in refused.headers
        log = server.log_text()
        assert "console: sign-ins from one address refused" in log
        assert server.token("auditor") not in log
        assert "guess" not in log

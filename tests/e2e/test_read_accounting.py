"""Reads are recorded (issue 23 §1), end to end: every read RPC, a leaked token, the dump.

Each principal's reads land in the hour's estimates of its data categories at once, and in one
``reads.summarized`` audit entry per minute, written by the server's workers once the summary
delay has passed since the minute's end (a whole minute by default; the module's server has one
second, and its workers look every second: ``tests/unit/flows/test_read_ledger.py`` pins the
default): the module's reads are made first, then their summaries are awaited once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from idverify.audit.events import EventType
from idverify.client import Client
from idverify.flows.read_accounting import Category, accounts_digest, hour_of
from idverify.privacy.keyring import load_keyring
from idverify.store.keys import TenantKeys
from idverify.store.read_keys import ReadKeys
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, admin_pb2, audit_pb2, consent_pb2, verification_pb2

from .conftest import (
    Identity,
    embedded_redis,
    everything_stored,
    needles_of,
    person,
    record_login_ip,
    verify,
)

pytestmark = pytest.mark.e2e
TENANT = "default"
# Accounts the leaked token reads in bulk (each first given a login IP label).
BULK = 250
# The summaries of a minute are written a second or two after it ends (this module's server):
# a bound far past that, for a loaded machine.
SUMMARY_WAIT_SECONDS = 240
SHORT_SUMMARY_DELAY = "[reads]\nsummary_delay_seconds = 1\nclose_interval_seconds = 1\n"
Summaries = list[audit_pb2.AuditEvent]


def client_id_of(token: str) -> str:
    """The client id inside a token (``ivk_<tenant>.<client id>.<secret>``)."""
    return token.split(".")[1]


def store_hour(store: redis.Redis) -> int:
    seconds, micros = store.time()
    return hour_of(seconds * 1000 + micros // 1000)


class Principals:
    """The module's callers, each a client of its own."""

    def __init__(self, server: ServerProcess) -> None:
        with server.client("admin") as admin:
            made = {
                name: admin.admin.CreateClient(
                    admin_pb2.CreateClientRequest(tenant=TENANT, role=role, description=f"reads {name}")
                ).token
                for name, role in (
                    ("platform", "platform"),
                    ("leaked", "platform"),
                    ("registrar", "registrar"),
                    ("auditor", "auditor"),
                )
            }
        self.tokens = made
        self.ids = {name: client_id_of(token) for name, token in made.items()}
        self.clients = {name: Client(server.target, token) for name, token in made.items()}

    def __getitem__(self, name: str) -> Client:
        return self.clients[name]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


class World:
    """What the module set up and read: people, accounts, and the hours the reads fell in."""

    def __init__(self, server: ServerProcess, callers: Principals) -> None:
        self.server, self.callers = server, callers
        self.store = embedded_redis(server)
        self.people: list[Identity] = [person(), person()]
        self.hours: set[int] = set()
        self.verification_id = ""

    def hour_keys(self, client: str, category: Category, kind: str) -> list[str]:
        keys = ReadKeys(TENANT)
        clients = [self.callers.ids[client]]
        if kind == "a":
            return keys.accounts_over(sorted(self.hours), clients, category)
        return keys.identities_over(sorted(self.hours), clients, category)

    def count(self, client: str, category: Category, kind: str = "a") -> int:
        names = self.hour_keys(client, category, kind)
        return int(self.store.pfcount(*names))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`idverify serve` on its embedded default, its minutes summarized a second after their end."""
    directory: Path = tmp_path_factory.mktemp("server")
    with ServerProcess(directory, config=SHORT_SUMMARY_DELAY) as running:
        yield running


@pytest.fixture(scope="module")
def callers(server: ServerProcess) -> Iterator[Principals]:
    made = Principals(server)
    yield made
    made.close()


@pytest.fixture(scope="module")
def world(server: ServerProcess, callers: Principals) -> World:
    """P0 holds accounts a0 and a1, P1 holds b0; u0 is unbound; each has an IP label.

    Then every read RPC is called once by its role, and the leaked token reads in bulk.
    """
    w = World(server, callers)
    registrar, platform, auditor = callers["registrar"], callers["platform"], callers["auditor"]
    w.hours.add(store_hour(w.store))
    verified = verify(server, registrar, w.people[0], "rd-a0")
    w.verification_id = verified.verification_id
    verify(server, registrar, w.people[0], "rd-a1")
    verify(server, registrar, w.people[1], "rd-b0")
    for account in ("rd-a0", "rd-a1", "rd-b0", "rd-u0"):
        record_login_ip(platform, account)
    for n in range(BULK):
        record_login_ip(callers["leaked"], f"rd-bulk-{n}")

    platform.account.GetAccount(account_pb2.GetAccountRequest(account_id="rd-a0"))
    ids = ["rd-a0", "rd-a1", "rd-b0", "rd-u0", "rd-never-seen"]
    platform.account.GetIpLocations(account_pb2.GetIpLocationsRequest(account_ids=ids))
    platform.account.ExportAccountData(account_pb2.ExportAccountDataRequest(account_id="rd-b0"))
    platform.account.CheckDisplayName(
        account_pb2.CheckDisplayNameRequest(account_id="rd-a0", display_name="Sunny")
    )
    registrar.verification.GetVerification(
        verification_pb2.GetVerificationRequest(verification_id=w.verification_id)
    )
    registrar.verification.CheckIdentity(
        verification_pb2.CheckIdentityRequest(account_id="rd-b0", subject=w.people[1].subject())
    )
    registrar.consent.ListConsents(consent_pb2.ListConsentsRequest(account_id="rd-a0"))
    list(auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest(account_id="rd-a0")))
    head = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head
    auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=0))
    auditor.audit.GetInclusionProof(audit_pb2.GetInclusionProofRequest(index=0, tree_size=head.tree_size))
    auditor.audit.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(first=1, second=head.tree_size))

    bulk = [f"rd-bulk-{n}" for n in range(BULK)]
    for first in range(0, BULK, 100):
        request = account_pb2.GetIpLocationsRequest(account_ids=bulk[first : first + 100])
        callers["leaked"].account.GetIpLocations(request)
    w.hours.add(store_hour(w.store))
    return w


def summaries(server: ServerProcess, client_ids: set[str]) -> list[audit_pb2.AuditEvent]:
    """The reads.summarized entries of these clients, once none of their minutes is still open.

    Read with the test's own admin token: its reads are recorded too, under its own id.
    """
    store = embedded_redis(server)
    open_minutes = TenantKeys(TENANT).reads_open()
    deadline = time.monotonic() + SUMMARY_WAIT_SECONDS
    while time.monotonic() < deadline:
        still_open = {m.decode().split(":", 1)[1] for m in store.zrange(open_minutes, 0, -1)}
        if not still_open & client_ids:
            break
        time.sleep(0.5)
    with server.client("admin") as admin:
        query = audit_pb2.QueryEventsRequest(event_types=[EventType.READS_SUMMARIZED.value])
        found = [reply.event for reply in admin.audit.QueryEvents(query)]
    return [event for event in found if event.attributes["client_id"] in client_ids]


def totals(events: list[audit_pb2.AuditEvent], client_id: str) -> dict[str, int]:
    """A client's counts summed over its minutes (its reads may straddle a minute's end)."""
    summed: dict[str, int] = {}
    for event in events:
        if event.attributes["client_id"] != client_id:
            continue
        for name, value in event.attributes.items():
            if name.startswith(("calls", "accounts")):
                summed[name] = summed.get(name, 0) + int(value)
    return summed


@pytest.fixture(scope="module")
def summarized(server: ServerProcess, world: World) -> Summaries:
    """The module callers' summaries, once their minutes are all closed."""
    wanted = {world.callers.ids[name] for name in ("platform", "leaked", "registrar", "auditor")}
    return summaries(server, wanted)


class TestHourlyEstimates:
    def test_each_read_rpc_counts_its_accounts_and_persons_in_its_category(self, world: World) -> None:
        """Accounts (and the persons bound to them) per principal and data category, at once."""
        # GetAccount and CheckDisplayName a0, the export b0.
        assert world.count("platform", Category.VERIFICATION) == 2
        assert world.count("platform", Category.VERIFICATION, "i") == 2
        # GetIpLocations: the four with a label (not the unknown id), and the export's b0.
        assert world.count("platform", Category.IP_LOCATION) == 4
        assert world.count("platform", Category.IP_LOCATION, "i") == 2  # u0 is bound to no one
        assert world.count("platform", Category.CONSENT) == 1
        assert world.count("platform", Category.AUDIT) == 1
        assert world.count("registrar", Category.VERIFICATION) == 2  # GetVerification a0, check b0
        assert world.count("registrar", Category.VERIFICATION, "i") == 2
        assert world.count("registrar", Category.CONSENT) == 1
        assert world.count("auditor", Category.AUDIT) == 1  # the query named a0
        assert world.count("auditor", Category.AUDIT, "i") == 1

    def test_a_leaked_platform_token_reading_in_bulk_leaves_a_trace(self, world: World) -> None:
        """The bulk read shows as that client's accounts, within the estimate's error."""
        counted = world.count("leaked", Category.IP_LOCATION)

        assert abs(counted - BULK) <= 0.03 * BULK
        assert world.count("leaked", Category.VERIFICATION) == 0
        readers = set().union(*(world.store.smembers(ReadKeys(TENANT).who(h)) for h in world.hours))
        assert world.callers.ids["leaked"].encode() in readers

    def test_two_platform_tokens_are_kept_apart(self, world: World) -> None:
        """The leaked token's bulk read is not in the other platform client's counts, nor theirs in its."""
        assert world.count("platform", Category.IP_LOCATION) == 4
        both = world.hour_keys("platform", Category.IP_LOCATION, "a") + world.hour_keys(
            "leaked", Category.IP_LOCATION, "a"
        )
        assert abs(int(world.store.pfcount(*both)) - (BULK + 4)) <= 0.03 * BULK

    def test_every_read_key_expires_with_the_retention_period(self, world: World) -> None:
        """The default retention is 180 days, set on every hour's key."""
        keys = [
            k for h in world.hours for k in world.store.scan_iter(match=f"iv1:{{t:{TENANT}}}:reads:{h}:*")
        ]
        assert keys
        for key in keys:
            assert 179 * 86_400 < world.store.ttl(key) <= 180 * 86_400, key

    def test_refused_calls_are_not_reads(self, server: ServerProcess, world: World) -> None:
        """No token, a role without the right, or a bad request: refused, and nothing counted."""
        request = account_pb2.GetIpLocationsRequest(account_ids=["rd-a0"])
        before = world.count("registrar", Category.IP_LOCATION)
        channel = grpc.insecure_channel(server.target)
        try:
            stub = Client(server.target, world.callers.tokens["registrar"])
            with pytest.raises(grpc.RpcError) as denied:
                stub.account.GetIpLocations(request)
            stub.close()
            anonymous = channel.unary_unary(
                "/idverify.v1.AccountService/GetIpLocations",
                request_serializer=account_pb2.GetIpLocationsRequest.SerializeToString,
                response_deserializer=account_pb2.GetIpLocationsResponse.FromString,
            )
            with pytest.raises(grpc.RpcError) as unauthenticated:
                anonymous(request, timeout=10)
        finally:
            channel.close()
        with pytest.raises(grpc.RpcError) as invalid:
            world.callers["platform"].account.GetAccount(account_pb2.GetAccountRequest(account_id="bad id\n"))

        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert world.count("registrar", Category.IP_LOCATION) == before == 0
        assert world.count("platform", Category.VERIFICATION) == 2


class TestMinuteSummaries:
    def test_each_rpc_is_summarized_per_principal_and_minute(
        self, world: World, summarized: list[audit_pb2.AuditEvent]
    ) -> None:
        """One entry per principal and minute: calls and account reads per RPC, distinct accounts."""
        ids = world.callers.ids
        platform, registrar, auditor = (
            totals(summarized, ids[n]) for n in ("platform", "registrar", "auditor")
        )
        assert platform["calls:GetAccount"] == 1
        assert platform["accounts:GetAccount"] == 1
        assert platform["calls:GetIpLocations"] == 1
        assert platform["accounts:GetIpLocations"] == 4
        assert platform["calls:ExportAccountData"] == 1
        assert platform["calls:CheckDisplayName"] == platform["accounts:CheckDisplayName"] == 1
        assert platform["accounts:ExportAccountData"] == 1
        assert registrar["calls:GetVerification"] == registrar["calls:CheckIdentity"] == 1
        assert registrar["calls:ListConsents"] == registrar["accounts:ListConsents"] == 1
        for rpc in ("QueryEvents", "GetTreeHead", "GetEvent", "GetInclusionProof", "GetConsistencyProof"):
            assert auditor[f"calls:{rpc}"] == 1, rpc
        assert auditor["accounts:QueryEvents"] == 1
        assert "calls:RecordLoginIp" not in platform  # a write is not a read

    def test_a_summary_names_its_principal_and_no_account(self, summarized: Summaries) -> None:
        """The principal label and client id, the minute, and no account, not even a pseudonym."""
        for event in summarized:
            client = event.attributes["client_id"]
            assert event.principal.endswith(f"/{client}")
            assert event.account_pseudonym == ""
            assert int(event.attributes["minute_ms"]) % 60_000 == 0
            assert event.attributes["minute_ms"] <= str(event.time.seconds * 1000)

    def test_the_leaked_tokens_minute_digest_matches_the_accounts_it_read(
        self, server: ServerProcess, world: World, summarized: list[audit_pb2.AuditEvent]
    ) -> None:
        """Given the accounts suspected, an investigator checks the digest; the log names none."""
        keyring = load_keyring(path=server.data_dir / "keyring.json")
        leaked = [e for e in summarized if e.attributes["client_id"] == world.callers.ids["leaked"]]
        reads = [e for e in leaked if "calls:GetIpLocations" in e.attributes]
        assert sum(int(e.attributes["accounts:GetIpLocations"]) for e in reads) == BULK
        if len(reads) == 1:  # the bulk read fell in one minute: its digest covers exactly them
            pseudonyms = [keyring.pseudonym(TENANT, "account", f"rd-bulk-{n}") for n in range(BULK)]
            assert reads[0].attributes["accounts"] == str(BULK)
            assert reads[0].attributes["digest"] == accounts_digest(pseudonyms)


class TestTheDump:
    def test_nothing_recorded_about_reads_is_personal_data(
        self, server: ServerProcess, world: World, callers: Principals
    ) -> None:
        """A thief with the Redis dump finds no name, ID number or phone in any reads key or entry."""
        summaries(server, {callers.ids["auditor"]})  # a summary entry exists by now
        needles = set().union(*(needles_of(identity) for identity in world.people))
        stored = everything_stored(world.store)
        assert any(b":reads:" in item for item in stored)
        assert any(b"reads.summarized" in item for item in stored)
        for item in stored:
            assert not any(needle in item for needle in needles), item[:80]
        for account in ("rd-a0", "rd-bulk-0"):
            assert not any(account.encode() in item for item in stored)

"""IP-location display through the API and the CLI, on the bundled GeoLite2 database."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import pytest

from idverify.privacy.keyring import load_keyring
from idverify.store.keys import TenantKeys
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2

from .conftest import embedded_redis, record_login_ip, rich_error, when_geo_loaded

pytestmark = pytest.mark.e2e
# An address, what LookupIp displays for it and its country code.
DISPLAYED = [
    ("8.8.8.8", "美国", "US"),
    ("::ffff:8.8.8.8", "美国", "US"),
    ("10.1.2.3", "未知", ""),
    ("127.0.0.1", "未知", ""),
    ("169.254.1.1", "未知", ""),
    ("192.0.2.1", "未知", ""),
    ("224.0.0.1", "未知", ""),
    ("fe80::1", "未知", ""),
    ("2001:db8::1", "未知", ""),
]


def lookup(server: ServerProcess, ip: str) -> account_pb2.LookupIpResponse:
    """LookupIp, retried while the worker answering is still loading its database."""
    with server.client("platform") as platform:
        return when_geo_loaded(lambda: platform.account.LookupIp(account_pb2.LookupIpRequest(ip=ip)))


class TestLookup:
    @pytest.mark.parametrize(("ip", "display", "country"), DISPLAYED)
    def test_display_policy_through_the_api(
        self, server: ServerProcess, ip: str, display: str, country: str
    ) -> None:
        """Public addresses show their country; private, reserved and documentation ranges 未知."""
        location = lookup(server, ip).location
        assert (location.display, location.country_code) == (display, country)
        if country:
            assert location.source.startswith("GeoLite2")
            assert location.source_build_date.startswith("2019-12")

    def test_a_mainland_address_shows_its_province(self, server: ServerProcess) -> None:
        """A mainland China address shows a province short name with its ISO 3166-2 code."""
        location = lookup(server, "202.96.128.86").location
        assert location.country_code == "CN"
        assert location.region_code.startswith("CN-")
        assert not location.display.endswith(("省", "市", "自治区"))

    @pytest.mark.parametrize("ip", ["", "1.2.3", "1.2.3.4.5", "300.1.1.1", "not-an-ip", "01.2.3.4"])
    def test_malformed_addresses_name_the_field(self, server: ServerProcess, ip: str) -> None:
        """A malformed address is INVALID_ARGUMENT naming the ip field."""
        with pytest.raises(grpc.RpcError) as refused:
            lookup(server, ip)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert rich_error(refused.value)[1] == "ip"


class TestAccounts:
    def test_login_ip_is_stored_as_its_label_only(self, server: ServerProcess) -> None:
        """RecordLoginIp keeps the label on the account, and the address appears nowhere in Redis."""
        with server.client("platform") as platform:
            recorded = record_login_ip(platform, "geo-acct", "8.8.4.4")
            account = platform.account.GetAccount(
                account_pb2.GetAccountRequest(account_id="geo-acct")
            ).account
        assert recorded.display == account.ip_location.display == "美国"
        assert account.ip_recorded_at.seconds > 0
        store = embedded_redis(server)
        for key in store.scan_iter(count=1000):
            assert b"8.8.4.4" not in key
            if store.type(key) == b"hash":
                assert all(b"8.8.4.4" not in v for v in store.hgetall(key).values())

    def test_batch_of_a_thousand_with_unknown_accounts(self, server: ServerProcess) -> None:
        """GetIpLocations answers up to 1,000 accounts at once and lists the unknown ones."""
        with server.client("platform") as platform:
            recorded = [record_login_ip(platform, f"batch-{n}", "1.1.1.1") for n in range(3)]
            ids = [f"batch-{n}" for n in range(999)] + ["batch-1"]  # a repeated id is answered once
            answer = platform.account.GetIpLocations(account_pb2.GetIpLocationsRequest(account_ids=ids))
        assert set(answer.locations) == {"batch-0", "batch-1", "batch-2"}
        assert len(answer.unknown_account_ids) == 996
        assert recorded[0].source
        assert [answer.locations[f"batch-{n}"] for n in range(3)] == recorded

    def test_batch_reads_labels_from_their_parts_where_the_wire_form_is_missing(
        self, server: ServerProcess
    ) -> None:
        """A label stored without its wire form (by a build before it had one) reads from its parts."""
        keyring = load_keyring(path=server.data_dir / "keyring.json")
        store = embedded_redis(server)
        with server.client("platform") as platform:
            for account in ("wire-gone", "wire-kept"):
                record_login_ip(platform, account, "8.8.8.8")
            key = {
                a: TenantKeys("default").account(keyring.pseudonym("default", "account", a))
                for a in ("wire-gone", "wire-kept")
            }
            store.hdel(key["wire-gone"], "ip_wire")
            store.hset(key["wire-gone"], mapping={"ip_display": "日本", "ip_country": "JP"})
            answer = platform.account.GetIpLocations(
                account_pb2.GetIpLocationsRequest(account_ids=list(key))
            ).locations
        assert (answer["wire-gone"].display, answer["wire-gone"].country_code) == ("日本", "JP")
        assert (answer["wire-kept"].display, answer["wire-kept"].country_code) == ("美国", "US")
        assert answer["wire-gone"].source == answer["wire-kept"].source


class TestCommandLine:
    def test_geo_lookup_and_info(self) -> None:
        """`idverify geo lookup` prints the same answer; `geo info` describes the database."""
        looked = subprocess.run(
            [sys.executable, "-m", "idverify", "geo", "lookup", "--json", "8.8.8.8"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert json.loads(looked.stdout.splitlines()[0])["display"] == "美国"
        info = subprocess.run(
            [sys.executable, "-m", "idverify", "geo", "info"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert "2019-12" in info.stdout

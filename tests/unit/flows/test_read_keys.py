"""The ``reads`` keys: the exact schema the incident report counts from."""

from __future__ import annotations

from idverify.flows.read_accounting import Category, hour_of
from idverify.store.keys import TenantKeys
from idverify.store.read_keys import ReadKeys


class TestReadKeys:
    def test_keys_follow_the_documented_schema(self) -> None:
        """Account and identity HyperLogLogs and the hour's client set are named as keys.py says."""
        keys = ReadKeys("tenant-a")

        accounts = keys.accounts(493_000, "ab12", Category.IP_LOCATION)

        assert accounts == "iv1:{t:tenant-a}:reads:493000:ab12:ip_location:a"
        assert keys.identities(493_000, "cert:0", "audit") == "iv1:{t:tenant-a}:reads:493000:cert:0:audit:i"
        assert keys.who(493_000) == "iv1:{t:tenant-a}:reads:493000:who"

    def test_keys_share_the_tenants_hash_slot(self) -> None:
        """Every reads key carries the tenant's hash tag, so scripts may PFADD beside their reads."""
        keys = ReadKeys("tenant-a")
        tag = TenantKeys("tenant-a").account("x").split("}")[0] + "}"

        for key in (keys.accounts(1, "c", "consent"), keys.identities(1, "c", "consent"), keys.who(1)):
            assert key.startswith(tag)

    def test_a_window_names_every_hour_and_client(self) -> None:
        """accounts_over names one key per hour and client, for a PFCOUNT over their union."""
        keys = ReadKeys("t")

        names = keys.accounts_over(range(10, 12), ["a", "b"], Category.VERIFICATION)

        assert names == [keys.accounts(h, c, Category.VERIFICATION) for h in (10, 11) for c in ("a", "b")]
        assert keys.identities_over([10], ["a"], "consent") == [keys.identities(10, "a", "consent")]

    def test_hour_is_the_floor_of_store_ms(self) -> None:
        """The hour bucket is floor(ms / 3 600 000)."""
        assert hour_of(0) == 0
        assert hour_of(3_599_999) == 0
        assert hour_of(3_600_000) == 1
        assert [c.value for c in Category] == ["verification", "ip_location", "consent", "audit"]

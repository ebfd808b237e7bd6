"""Accounts in Redis as GetAccount, RecordLoginIp and GetIpLocations see them.

``flows.accounts`` decides what a platform may know about an account; this adapter reads the
account hash into an ``AccountRecord``, writes a login label with ``login_ip.lua`` (the label's
parts, its wire form and the store's time, with the audit entry) and reads labels in batches with
``ip_labels.lua`` (which also records the read, with the read spec built here); step by step, as
plain reads in the accounts' buckets followed by the read's accounting (``store.read_steps``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from idverify.flows.accounts import AccountRecord, LoginLabel, StoredLocation
from idverify.flows.read_accounting import Category, Reader, read_spec
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.read_steps import record_read, records
from idverify.store.scripted_store import ScriptedStore
from idverify.store.scripts import Scripts

__all__ = ["RedisAccounts", "account_hash"]

_IP_CATEGORIES = (Category.IP_LOCATION,)
# A label's parts in ip_labels.lua's reply order, for a label stored before its wire form was.
_IP_FIELDS = ("ip_display", "ip_display_en", "ip_country", "ip_region", "ip_source", "ip_build", "ip_ms")


async def account_hash(redis: RedisClient, tenant: str, account: str) -> dict[str, str] | None:
    """The fields of the account hash of pseudonym ``account`` as text, or None when there is none."""
    async with translate_errors():
        raw = await redis.hgetall(TenantKeys(tenant).account(account))
    return {as_text(k): as_text(v) for k, v in raw.items()} if raw else None


class RedisAccounts(ScriptedStore):
    """``flows.accounts.AccountStore`` over Redis."""

    def __init__(
        self, redis: RedisClient, scripts: Scripts, retention_days: int, *, steps: StepRunner | None = None
    ) -> None:
        """``retention_days``: how long a recorded read is kept (``[reads] retention_days``).

        ``steps`` runs a batch of labels' reads and their accounting: step by step (a Cluster, or
        the tests' runner) the labels are read first, then ``reads_record.lua`` is given them.
        """
        super().__init__(redis, scripts)
        self._retention_days = retention_days
        self._runner = steps or StepRunner(scripts)

    async def account(self, tenant: str, account: str) -> AccountRecord | None:
        """The account hash, or None when the key does not exist."""
        record = await account_hash(self._redis, tenant, account)
        if record is None:
            return None
        return AccountRecord(
            identity=record.get("identity", ""),
            verified_ms=int(record.get("verified_ms", "0")),
            method=record.get("method", ""),
            assurance=record.get("assurance", ""),
            kind=record.get("kind", ""),
            age_band=record.get("age_band", ""),
            age_source=record.get("age_source"),
            birth_sealed=record.get("birth_sealed", ""),
            location=_stored_location(record),
            erase_due_ms=int(record.get("erase_due_ms", "0")),
            superseded_ms=int(record.get("superseded_ms", "0")),
        )

    async def record_login_label(
        self, tenant: str, account: str, label: LoginLabel, audit: Mapping[str, str]
    ) -> None:
        """One run of ``login_ip.lua``."""
        keys = TenantKeys(tenant)
        parts = {
            "ip_display": label.display,
            "ip_display_en": label.display_en,
            "ip_country": label.country_code,
            "ip_region": label.region_code,
            "ip_source": label.source,
            "ip_build": label.source_build_date,
        }
        request = {name: value for name, value in audit.items() if name != "account"}
        await self._scripts.run(
            "login_ip",
            [keys.account(account), keys.audit_log()],
            [json.dumps(parts), json.dumps(request), audit.get("account", ""), label.wire],
        )

    async def ip_labels(
        self, tenant: str, accounts: Sequence[str], reader: Reader | None
    ) -> list[bytes | StoredLocation | None]:
        """One run of ``ip_labels.lua``: per account its wire form, its parts, or false."""
        spec = read_spec(reader, _IP_CATEGORIES, self._retention_days)
        if not self._runner.chained:
            return await self._ip_labels_step_by_step(TenantKeys(tenant), accounts, spec)
        rows = await self._scripts.run(
            "ip_labels", TenantKeys(tenant).accounts(accounts), [*spec, *_IP_FIELDS]
        )
        labels: list[bytes | StoredLocation | None] = []
        for row in rows:
            if row is None:
                labels.append(None)
            elif isinstance(row, bytes):
                labels.append(row)
            else:
                labels.append(_location_of_parts(row))
        return labels

    async def _ip_labels_step_by_step(
        self, keys: TenantKeys, accounts: Sequence[str], spec: Sequence[str]
    ) -> list[bytes | StoredLocation | None]:
        """The labels read in their accounts' buckets, then the accounting of those found.

        One round trip for the labels, a second for labels stored without their wire form, then
        ``reads_record`` (``store.read_steps``).
        """
        recording = records(spec)
        read_ms = await self._scripts.clock.now_ms() if recording else 0
        account_keys = keys.accounts(accounts)
        # ip_display beside the wire form tells a label stored without one from no label.
        found = await self._runner.run_reads(
            "ip_labels", [("HMGET", key, "ip_wire", "identity", _IP_FIELDS[0]) for key in account_keys], 1
        )
        legacy = [i for i, row in enumerate(found) if row[0] is None and row[2] is not None]
        done = 1
        parts: dict[int, Sequence[bytes | None]] = {}
        if legacy:
            done += 1
            rows = await self._runner.run_reads(
                "ip_labels", [("HMGET", account_keys[i], *_IP_FIELDS) for i in legacy], done
            )
            parts = dict(zip(legacy, rows, strict=True))
        labels: list[bytes | StoredLocation | None] = []
        read, identities = [], []
        for i, (account, row) in enumerate(zip(accounts, found, strict=True)):
            label = row[0] if row[0] is not None else (_location_of_parts(parts[i]) if i in parts else None)
            labels.append(label)
            if label is not None:
                read.append(account)
                identities.append(as_text(row[1]) if row[1] is not None else "")
        if recording:
            await record_read(
                self._runner,
                "ip_labels",
                done + 1,
                keys,
                spec,
                read_ms=read_ms,
                accounts=read,
                identities=identities,
            )
        return labels


def _location_of_parts(row: Sequence[bytes | None]) -> StoredLocation:
    """A label recorded before labels were stored in wire form, from its parts in _IP_FIELDS order."""
    display, display_en, country, region, source, build, recorded_ms = (as_text(part or b"") for part in row)
    return StoredLocation(display, display_en, country, region, source, build, int(recorded_ms or 0))


def _stored_location(record: Mapping[str, str]) -> StoredLocation | None:
    if "ip_display" not in record:
        return None
    return StoredLocation(
        display=record["ip_display"],
        display_en=record.get("ip_display_en", ""),
        country_code=record.get("ip_country", ""),
        region_code=record.get("ip_region", ""),
        source=record.get("ip_source", ""),
        source_build_date=record.get("ip_build", ""),
        recorded_ms=int(record.get("ip_ms", "0")),
    )

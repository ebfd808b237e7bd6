"""Account reads and IP-location display: what a platform may know about an account.

An account record holds derived facts only: verified or not, when, by which method, subject
kind, age band, and the display label of its last login IP (never the address).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from idverify.domain.errors import InvalidArgument
from idverify.domain.normalize import normalize_identifier, normalize_identifiers
from idverify.flows.account_age import AccountAges
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.flows.read_accounting import Category, Reader, read_spec
from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import TenantKeys

MAX_BATCH = 1000
_IP_CATEGORIES = (Category.IP_LOCATION,)
_IP_FIELDS = ("ip_display", "ip_display_en", "ip_country", "ip_region", "ip_source", "ip_build", "ip_ms")


class Located(Protocol):
    """The display result of one IP lookup (read-only)."""

    @property
    def display(self) -> str:
        """Chinese label."""
        ...

    @property
    def display_en(self) -> str:
        """English label."""
        ...

    @property
    def country_code(self) -> str:
        """ISO 3166-1 alpha-2, or empty."""
        ...

    @property
    def region_code(self) -> str:
        """ISO 3166-2 of a mainland province, or empty."""
        ...

    @property
    def source(self) -> str:
        """The database that answered."""
        ...

    @property
    def source_build_date(self) -> str:
        """Its build date, YYYY-MM-DD."""
        ...


class IpLocator(Protocol):
    """Resolves an IP address text to its display location."""

    async def locate(self, ip: str, *, field: str = "ip") -> Located:
        """The location; raises InvalidArgument naming ``field`` for a malformed address."""
        ...


@dataclass(frozen=True, slots=True)
class StoredLocation:
    """A display label as stored on an account."""

    display: str
    display_en: str
    country_code: str
    region_code: str
    source: str
    source_build_date: str
    recorded_ms: int


@dataclass(frozen=True, slots=True)
class AccountView:
    """What GetAccount returns."""

    account_id: str
    verified: bool
    verified_ms: int
    method_id: str
    assurance: str
    subject_kind: str
    # The band on the day asked ("" when unbound) and where its birth date came from
    # (document, authority, declared, none; legacy: the band of the binding day).
    age_band: str
    location: StoredLocation | None
    # Set once the account is cancelled: when what remains of it is erased (epoch ms).
    erasure_due_ms: int = 0
    # Set when an established claim superseded the account's binding (epoch ms).
    superseded_ms: int = 0
    age_source: str = ""


class AccountFlow:
    """Account reads and IP labels for every tenant."""

    def __init__(self, deps: FlowDeps, locator: IpLocator, encode_label: Callable[[Located], bytes]) -> None:
        """Builds the flow.

        Args:
            deps: Redis, scripts and keyring.
            locator: resolves login addresses.
            encode_label: a label's wire form, stored beside its parts so that batch reads
                (:meth:`ip_locations`) hand it on without decoding and encoding it again.
        """
        self._d = deps
        self._locator = locator
        self._encode_label = encode_label
        self._ages = AccountAges(deps.sealer)

    def _key(self, tenant: str, account_id: str, field: str = "account_id") -> str:
        account_id = normalize_identifier(account_id, field=field)
        return TenantKeys(tenant).account(self._d.keyring.pseudonym(tenant, "account", account_id))

    async def get_account(self, tenant: str, account_id: str) -> AccountView:
        """The account's derived facts; an unknown account reads as not verified.

        Raises:
            InvalidArgument: on a malformed account id.
        """
        account_id = normalize_identifier(account_id, field="account_id")
        account_ps = self._d.keyring.pseudonym(tenant, "account", account_id)
        async with translate_errors():
            raw = await self._d.redis.hgetall(TenantKeys(tenant).account(account_ps))
        record = {as_text(k): as_text(v) for k, v in raw.items()}
        age = self._ages.read(tenant, account_ps, record, self._d.today())
        return AccountView(
            account_id=account_id,
            verified=bool(record.get("identity")),
            verified_ms=int(record.get("verified_ms", "0")),
            method_id=record.get("method", ""),
            assurance=record.get("assurance", ""),
            subject_kind=record.get("kind", ""),
            age_band=age.band.value if age.band else "",
            location=_stored_location(record),
            erasure_due_ms=int(record.get("erase_due_ms", "0")),
            superseded_ms=0 if record.get("identity") else int(record.get("superseded_ms", "0")),
            age_source=age.source.value if age.source else "",
        )

    async def lookup_ip(self, ip: str) -> Located:
        """Resolves an address without storing anything.

        Raises:
            InvalidArgument: on a malformed address.
        """
        return await self._locator.locate(ip, field="ip")

    async def record_login_ip(
        self, tenant: str, account_id: str, ip: str, info: RequestInfo | None = None
    ) -> Located:
        """Stores the display label of a login IP on the account (never the address).

        The label and its audit entry are written in one step (``store/lua/login_ip.lua``).

        Raises:
            InvalidArgument: on a malformed account id or address.
        """
        key = self._key(tenant, account_id)
        location = await self._locator.locate(ip, field="ip")
        audit_account = self._d.keyring.pseudonym(
            tenant, "audit", normalize_identifier(account_id, field="account_id")
        )
        label = {
            "ip_display": location.display,
            "ip_display_en": location.display_en,
            "ip_country": location.country_code,
            "ip_region": location.region_code,
            "ip_source": location.source,
            "ip_build": location.source_build_date,
        }
        request = (info or RequestInfo.internal()).audit_fields()
        await self._d.scripts.run(
            "login_ip",
            [key, TenantKeys(tenant).audit_log()],
            [json.dumps(label), json.dumps(request), audit_account, self._encode_label(location)],
        )
        return location

    async def ip_locations(
        self, tenant: str, account_ids: Sequence[str], reader: Reader | None = None
    ) -> tuple[list[tuple[str, bytes]], list[str]]:
        """Stored labels, in wire form, of up to MAX_BATCH accounts in one script call.

        The same call records ``reader``'s read of the accounts that have a label.

        Returns:
            (account id, encoded label) of each account with a label, each id once, and the ids of
            the others.

        Raises:
            InvalidArgument: on an empty or oversized batch or a malformed id.
        """
        if not account_ids:
            raise InvalidArgument("at least one account id", reason="EMPTY", field="account_ids")
        if len(account_ids) > MAX_BATCH:
            raise InvalidArgument(f"at most {MAX_BATCH} account ids", reason="TOO_MANY", field="account_ids")
        # Checked before duplicates go, so that a bad id's index is the one the caller sent.
        unique = list(dict.fromkeys(normalize_identifiers(account_ids, field="account_ids")))
        keys = TenantKeys(tenant).accounts(self._d.keyring.pseudonyms(tenant, "account", unique))
        spec = read_spec(reader, _IP_CATEGORIES, self._d.settings.reads.retention_days)
        rows = await self._d.scripts.run("ip_labels", keys, [*spec, *_IP_FIELDS])
        found: list[tuple[str, bytes]] = []
        unknown: list[str] = []
        for account_id, row in zip(unique, rows, strict=True):
            if row is None:
                unknown.append(account_id)
            elif isinstance(row, bytes):
                found.append((account_id, row))
            else:
                found.append((account_id, self._encode_label(_location_of_parts(row))))
        return found, unknown


def _location_of_parts(row: Sequence[bytes | None]) -> StoredLocation:
    """A label recorded before labels were stored in wire form, from its parts in _IP_FIELDS order."""
    display, display_en, country, region, source, build, recorded_ms = (as_text(part or b"") for part in row)
    return StoredLocation(display, display_en, country, region, source, build, int(recorded_ms or 0))


def _stored_location(record: dict[str, str]) -> StoredLocation | None:
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

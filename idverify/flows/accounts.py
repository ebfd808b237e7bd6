"""Account reads and IP-location display: what a platform may know about an account.

An account record holds derived facts only: verified or not, when, by which method, subject
kind, age band, and the display label of its last login IP (never the address).

The flow reads and writes accounts through :class:`AccountStore`, the port declared here, in
typed records; ``store.accounts.RedisAccounts`` implements it over Redis (the account hash,
``login_ip.lua`` and ``ip_labels.lua``, which also records the reads).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from idverify.domain.errors import InvalidArgument
from idverify.domain.normalize import normalize_identifier, normalize_identifiers
from idverify.flows.account_age import AccountAges
from idverify.flows.context import RequestInfo
from idverify.flows.read_accounting import Reader
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer

MAX_BATCH = 1000


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


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account as stored: what GetAccount derives its view from ("" / 0 where a field is absent)."""

    identity: str  # the bound identity's ref; "" when unbound
    verified_ms: int
    method: str
    assurance: str
    kind: str
    age_band: str  # the band of the binding day (legacy records)
    age_source: str | None  # None on records written before sources were kept
    birth_sealed: str  # the sealed birth date, in text
    location: StoredLocation | None
    erase_due_ms: int
    superseded_ms: int


@dataclass(frozen=True, slots=True)
class LoginLabel:
    """A login IP's display label as recorded on an account (never the address)."""

    display: str
    display_en: str
    country_code: str
    region_code: str
    source: str
    source_build_date: str
    wire: bytes  # the label's encoded IpLocation, handed on as it is by batch reads


class AccountStore(Protocol):
    """What account reads and IP labels read and write; every method may raise StoreUnavailable."""

    async def account(self, tenant: str, account: str) -> AccountRecord | None:
        """The account (by pseudonym), or None when nothing is stored for it."""
        ...

    async def record_login_label(
        self, tenant: str, account: str, label: LoginLabel, audit: Mapping[str, str]
    ) -> None:
        """Stores the label (and the store's time) on the account with its ``login_ip.recorded`` entry.

        ``audit`` holds the request's audit fields and the account's audit pseudonym (``account``).
        """
        ...

    async def ip_labels(
        self, tenant: str, accounts: Sequence[str], reader: Reader | None
    ) -> list[bytes | StoredLocation | None]:
        """Each account's label: its wire form, its parts (a label stored without one), or None.

        Records ``reader``'s read (IP location) of the accounts that have a label.
        """
        ...


class AccountFlow:
    """Account reads and IP labels for every tenant."""

    def __init__(
        self,
        store: AccountStore,
        *,
        keyring: Keyring,
        sealer: Sealer,
        locator: IpLocator,
        encode_label: Callable[[Located], bytes],
        today: Callable[[], date],
    ) -> None:
        """Builds the flow.

        Args:
            store: the accounts.
            keyring: the tenants' pseudonyms.
            sealer: opens sealed birth dates.
            locator: resolves login addresses.
            encode_label: a label's wire form, stored beside its parts so that batch reads
                (:meth:`ip_locations`) hand it on without decoding and encoding it again.
            today: the calendar day ages are computed on.
        """
        self._store = store
        self._keyring = keyring
        self._locator = locator
        self._encode_label = encode_label
        self._today = today
        self._ages = AccountAges(sealer)

    async def get_account(self, tenant: str, account_id: str) -> AccountView:
        """The account's derived facts; an unknown account reads as not verified.

        Raises:
            InvalidArgument: on a malformed account id.
        """
        account_id = normalize_identifier(account_id, field="account_id")
        account_ps = self._keyring.pseudonym(tenant, "account", account_id)
        record = await self._store.account(tenant, account_ps) or _NOTHING
        age = self._ages.read(tenant, account_ps, _age_fields(record), self._today())
        return AccountView(
            account_id=account_id,
            verified=bool(record.identity),
            verified_ms=record.verified_ms,
            method_id=record.method,
            assurance=record.assurance,
            subject_kind=record.kind,
            age_band=age.band.value if age.band else "",
            location=record.location,
            erasure_due_ms=record.erase_due_ms,
            superseded_ms=0 if record.identity else record.superseded_ms,
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
        account_id = normalize_identifier(account_id, field="account_id")
        account_ps = self._keyring.pseudonym(tenant, "account", account_id)
        location = await self._locator.locate(ip, field="ip")
        label = LoginLabel(
            display=location.display,
            display_en=location.display_en,
            country_code=location.country_code,
            region_code=location.region_code,
            source=location.source,
            source_build_date=location.source_build_date,
            wire=self._encode_label(location),
        )
        audit = {
            **(info or RequestInfo.internal()).audit_fields(),
            "account": self._keyring.pseudonym(tenant, "audit", account_id),
        }
        await self._store.record_login_label(tenant, account_ps, label, audit)
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
        labels = await self._store.ip_labels(
            tenant, self._keyring.pseudonyms(tenant, "account", unique), reader
        )
        found: list[tuple[str, bytes]] = []
        unknown: list[str] = []
        for account_id, label in zip(unique, labels, strict=True):
            if label is None:
                unknown.append(account_id)
            elif isinstance(label, bytes):
                found.append((account_id, label))
            else:
                found.append((account_id, self._encode_label(label)))
        return found, unknown


_NOTHING = AccountRecord("", 0, "", "", "", "", None, "", None, 0, 0)


def _age_fields(record: AccountRecord) -> dict[str, str]:
    """The fields AccountAges reads, as the account hash holds them."""
    fields = {"identity": record.identity, "age_band": record.age_band, "birth_sealed": record.birth_sealed}
    if record.age_source is not None:
        fields["age_source"] = record.age_source
    return fields

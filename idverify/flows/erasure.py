"""Account cancellation and the erasure of what is stored about a cancelled account.

Cancelling unbinds at once and schedules the erasure for the start of the n-th working day after
the day of cancellation (configurable, at most 15). The queue is a sorted set per tenant, in the
tenant's slot; each erasure is one script that removes its queue entry in the same step, so any
number of workers (every server process runs one) may race for an entry and exactly one erases
it. A global set names the tenants to visit. What the erasure removes: the account record (its
binding facts and IP label), its consent records, its verifications and their wrong-code
counters, and the identity record once no account is bound to it. The audit log keeps the
events, which hold pseudonyms only and never the identity's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from opentelemetry import metrics

from idverify.domain.calendar import WorkingCalendar, erasure_due_at
from idverify.domain.errors import StoreUnavailable
from idverify.domain.normalize import normalize_identifier
from idverify.events.accounts import request_naming_account
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.scripts import Scripts

log = logging.getLogger("idverify.erasure")

ACCOUNT = "a:"
IDENTITY = "i:"
_ATTEMPTS = 5
_PAGE = 100
_meter = metrics.get_meter("idverify")
_erased = _meter.create_counter("idverify.erasures.done", description="erasures performed, by kind")
_overdue_now = 0


def _observe_overdue(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    del options
    return [metrics.Observation(_overdue_now)]


_meter.create_observable_gauge(
    "idverify.erasures.overdue",
    callbacks=[_observe_overdue],
    description="pending erasures past their due time by more than erasure.overdue_after_seconds",
)


@dataclass(frozen=True, slots=True)
class PendingErasure:
    """One scheduled erasure, as ``idverify erasure status`` lists it (pseudonyms only)."""

    tenant: str
    kind: str
    subject: str
    due_ms: int
    overdue: bool


class ErasureFlow:
    """Cancellation, and the erasures it schedules, for every tenant."""

    def __init__(self, deps: FlowDeps) -> None:
        self._d = deps
        settings = deps.settings.erasure
        self._calendar = WorkingCalendar.from_iso(settings.holidays, settings.makeup_working_days)
        self._zone = ZoneInfo(settings.timezone)

    def due_at(self, cancelled_at: datetime) -> datetime:
        """When an account cancelled at ``cancelled_at`` is erased."""
        return erasure_due_at(cancelled_at, self._d.settings.erasure.working_days, self._calendar, self._zone)

    async def cancel(self, tenant: str, account_id: str, info: RequestInfo) -> int:
        """Unbinds an account now and schedules its erasure; returns the due time (epoch ms).

        Cancelling again returns the first due time and changes nothing.

        Raises:
            InvalidArgument: on a malformed account id.
            StoreUnavailable: Redis is down, or the account kept changing.
        """
        d = self._d
        account_id = normalize_identifier(account_id, field="account_id")
        account_ps = d.keyring.pseudonym(tenant, "account", account_id)
        audit_ps = d.keyring.pseudonym(tenant, "audit", account_id)
        keys = TenantKeys(tenant)
        now_ms = await d.scripts.clock.now_ms()
        due_ms = int(self.due_at(datetime.fromtimestamp(now_ms / 1000, UTC)).timestamp() * 1000)
        async with translate_errors():
            # First, so that the worker visits the tenant; a crash before the script leaves only
            # a harmless name in the set.
            await d.redis.sadd(GlobalKeys.erasure_tenants(), tenant)
        for _ in range(_ATTEMPTS):
            async with translate_errors():
                ref = as_text(await d.redis.hget(keys.account(account_ps), "identity") or b"")
                live = _texts(
                    await d.redis.zrangebyscore(
                        keys.account_verifications(account_ps), await d.scripts.clock.now_ms(), "+inf"
                    )
                )
            result = await d.scripts.run(
                "cancel",
                [
                    keys.account(account_ps),
                    keys.account_verifications(account_ps),
                    keys.erasure_due(),
                    keys.audit_log(),
                    keys.identity(ref),
                    keys.identity_accounts(ref),
                    *(keys.verification(v) for v in live),
                ],
                [
                    due_ms,
                    request_naming_account(info.audit_fields(), d.keyring, d.sealer, tenant, account_id),
                    account_ps,
                    audit_ps,
                    ref,
                    json.dumps(live),
                ],
            )
            if result[0] == b"OK":
                return int(result[1])
        raise StoreUnavailable("the account kept changing while it was cancelled; retry", reason="CONTENDED")

    async def erase_due(self, *, now_ms: int | None = None) -> int:
        """Performs every erasure that is due, in every tenant; returns how many this call did.

        Raises:
            StoreUnavailable: Redis is down.
        """
        done = 0
        for tenant in await self.tenants():
            keys = TenantKeys(tenant)
            while True:
                now = await self._d.scripts.clock.now_ms() if now_ms is None else now_ms
                async with translate_errors():
                    members = _texts(
                        await self._d.redis.zrangebyscore(keys.erasure_due(), "-inf", now, start=0, num=_PAGE)
                    )
                if not members:
                    break
                erased = [await self.erase(tenant, member) for member in members]
                done += sum(erased)
                if not any(erased):
                    break  # raced away by other workers, or not due yet by the store's clock
        return done

    async def erase(self, tenant: str, member: str) -> bool:
        """Performs one due erasure; False when another worker did it first (or it is not due).

        Raises:
            StoreUnavailable: Redis is down, or the account kept changing.
        """
        d = self._d
        keys = TenantKeys(tenant)
        kind, subject = member[:2], member[2:]
        for _ in range(_ATTEMPTS):
            account_ps = subject if kind == ACCOUNT else ""
            ref = subject if kind == IDENTITY else ""
            ids: list[str] = []
            extra: list[str] = []
            if kind == ACCOUNT:
                # Counters under the account's pseudonyms would outlive it by up to their window
                # (a day): they go with it.
                extra.append(keys.check_mismatches("acct", account_ps))
                async with translate_errors():
                    ids = _texts(await d.redis.zrange(keys.account_verifications(account_ps), 0, -1))
                    for verification_id in ids:
                        otp_ps = await d.redis.hget(keys.verification(verification_id), "otp_ps")
                        extra.append(keys.verification(verification_id))
                        if otp_ps:
                            extra.append(keys.otp_failures(as_text(otp_ps)))
                            extra.append(keys.rate_limit("phone_locked_audited", as_text(otp_ps)))
            result = await d.scripts.run(
                "erase",
                [
                    keys.erasure_due(),
                    keys.audit_log(),
                    keys.account(account_ps),
                    keys.consent(account_ps),
                    keys.account_verifications(account_ps),
                    keys.identity(ref),
                    keys.identity_accounts(ref),
                    *extra,
                ],
                [member, json.dumps(RequestInfo.internal().audit_fields()), json.dumps(ids)],
            )
            if result[0] == b"OK":
                telemetry_kind = "account" if kind == ACCOUNT else "identity"
                _erased.add(1, {"idverify.event": f"{telemetry_kind}.erased"})
                return True
            if result[0] == b"GONE":
                return False
        raise StoreUnavailable("an account kept changing while it was erased; retry", reason="CONTENDED")

    async def tenants(self) -> list[str]:
        """Tenants that have had erasures scheduled.

        Raises:
            StoreUnavailable: Redis is down.
        """
        return await erasure_tenants(self._d.redis)

    async def pending(self, *, now_ms: int | None = None) -> list[PendingErasure]:
        """Every scheduled erasure, soonest first, with whether it is overdue.

        Raises:
            StoreUnavailable: Redis is down.
        """
        return await pending_erasures(
            self._d.redis,
            self._d.settings.erasure.overdue_after_seconds,
            now_ms=await self._d.scripts.clock.now_ms() if now_ms is None else now_ms,
        )

    async def overdue_count(self) -> int:
        """How many pending erasures are overdue, in every tenant.

        Raises:
            StoreUnavailable: Redis is down.
        """
        limit = await self._d.scripts.clock.now_ms() - int(
            self._d.settings.erasure.overdue_after_seconds * 1000
        )
        total = 0
        for tenant in await self.tenants():
            async with translate_errors():
                total += int(await self._d.redis.zcount(TenantKeys(tenant).erasure_due(), "-inf", limit))
        return total


async def erasure_tenants(redis: RedisClient) -> list[str]:
    """Tenants that have had erasures scheduled.

    Raises:
        StoreUnavailable: Redis is down.
    """
    async with translate_errors():
        return sorted(_texts(await redis.smembers(GlobalKeys.erasure_tenants())))


async def pending_erasures(
    redis: RedisClient, overdue_after_seconds: float, *, now_ms: int | None = None
) -> list[PendingErasure]:
    """Every scheduled erasure of every tenant, soonest first, with whether it is overdue.

    Raises:
        StoreUnavailable: Redis is down.
    """
    now = await Scripts(redis).clock.now_ms() if now_ms is None else now_ms
    late_ms = int(overdue_after_seconds * 1000)
    found: list[PendingErasure] = []
    for tenant in await erasure_tenants(redis):
        async with translate_errors():
            rows = cast(
                "list[tuple[bytes, float]]",
                await redis.zrange(TenantKeys(tenant).erasure_due(), 0, -1, withscores=True),
            )
        for member, score in rows:
            text = as_text(member)
            found.append(
                PendingErasure(
                    tenant=tenant,
                    kind="account" if text.startswith(ACCOUNT) else "identity",
                    subject=text[2:],
                    due_ms=int(score),
                    overdue=now > int(score) + late_ms,
                )
            )
    return sorted(found, key=lambda item: (item.due_ms, item.tenant, item.subject))


class ErasureWorker:
    """Runs due erasures now and then, in every server process; the queue makes it safe."""

    def __init__(self, flow: ErasureFlow, poll_seconds: float) -> None:
        self._flow = flow
        self._poll = poll_seconds

    async def run_once(self) -> int:
        """One round: due erasures performed, and the overdue gauge refreshed."""
        global _overdue_now  # noqa: PLW0603 - the gauge's callback reads the latest count
        done = await self._flow.erase_due()
        if done:
            log.info("erased %d due record(s)", done)
        _overdue_now = await self._flow.overdue_count()
        if _overdue_now:
            log.warning("%d erasure(s) overdue", _overdue_now)
        return done

    async def run(self) -> None:
        """Rounds until cancelled; a round that fails is logged and the next one tries again."""
        while True:
            with contextlib.suppress(StoreUnavailable):
                await self.run_once()
            # Jitter keeps the workers of many replicas from arriving together.
            await asyncio.sleep(self._poll * random.uniform(0.8, 1.2))  # noqa: S311 - not a secret


__all__ = ["ErasureFlow", "ErasureWorker", "PendingErasure", "erasure_tenants", "pending_erasures"]


def _texts(values: Any) -> list[str]:
    """A Redis array reply as text."""
    return [as_text(value) for value in values]

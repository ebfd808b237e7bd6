"""An in-memory ``security.code_sends.CodeSendStore``: the counters of code sends and wrong codes.

Each counter is a count and the time its window ends, kept by name: the tenant's (the account
and phone's wrong codes, its per-phone window, the principal's and tenant's send budgets) and
the phone's shared ones (its wrong codes from every tenant, its hour and day windows). The clock
is a number the test moves (``advance``); ``fail`` stands for the tenant's step counting a wrong
code for the account and phone. ``audit`` lists ``(tenant, limit's name)`` for every
``rate_limit.hit`` entry the scripts would write. ``tests/unit/usecases/test_code_sends_contract.py``
holds it and ``store.code_sends.RedisCodeSends`` to the same assertions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from idverify.security.code_sends import (
    AnswerCount,
    Count,
    PhoneCount,
    SendCounts,
    SendLimits,
    SendToCount,
    TenantCount,
)
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryCodeSends", "send_limits"]

_HOUR_MS, _MINUTE_MS, _DAY_MS = 3_600_000, 60_000, 86_400_000
_ALL_OFF = SendLimits(0, 0, 0, 0, 0, 0, 0, 0, 0)


def send_limits(**limits: int) -> SendLimits:
    """``SendLimits`` with every field 0 (a window off) but those named: a test sets what it counts."""
    return replace(_ALL_OFF, **limits)


@dataclass(slots=True)
class _Counter:
    count: int
    ends_ms: int | None  # None: no window (the account and phone's wrong codes)


class MemoryCodeSends:
    """Code-send counters of every tenant and phone, in memory, under ``limits``."""

    def __init__(self, limits: SendLimits, now_ms: int = 1_760_000_000_000) -> None:
        self.now = now_ms
        self.audit: list[tuple[str, str]] = []
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self._limits = limits
        self._counters: dict[tuple[str, ...], _Counter] = {}

    def _reach(self) -> None:
        refuse_if_down(self.down)

    def advance(self, ms: int) -> None:
        """Moves the clock on; windows that ended are gone."""
        self.now += ms

    def _get(self, name: tuple[str, ...]) -> int:
        counter = self._counters.get(name)
        if counter is None:
            return 0
        if counter.ends_ms is not None and counter.ends_ms <= self.now:
            del self._counters[name]
            return 0
        return counter.count

    def _ttl(self, name: tuple[str, ...]) -> int:
        counter = self._counters.get(name)
        return 0 if counter is None or counter.ends_ms is None else max(counter.ends_ms - self.now, 0)

    def _incr(self, name: tuple[str, ...], window_ms: int | None) -> int:
        count = self._get(name) + 1
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = _Counter(0, None if window_ms is None else self.now + window_ms)
        counter.count = count
        return count

    def _expire(self, name: tuple[str, ...], window_ms: int) -> None:
        self._counters[name].ends_ms = self.now + window_ms

    def fail(self, tenant: str, account_phone: str) -> None:
        """Counts a wrong code for the account and phone, as the tenant's ``submit`` step does."""
        self._incr((tenant, "otpfail", account_phone), None)

    async def count_send(self, send: SendToCount) -> SendCounts:
        """Counts as ``send_budget.lua`` and then, after its OK, ``phone_send.lua`` do."""
        self._reach()
        tenant = self._count_tenant(send)
        if tenant.outcome is not Count.OK:
            return SendCounts(tenant)
        return SendCounts(tenant, self._count_phone(send))

    def _count_tenant(self, send: SendToCount) -> TenantCount:
        limits, names, t = self._limits, send.names, send.tenant
        fails = self._get((t, "otpfail", names.account_phone))
        if fails >= send.max_attempts:
            return TenantCount(Count.LOCKED, failures=fails)
        windows = [
            ("phone", (t, "phone", names.tenant_phone), limits.per_phone_per_hour, _HOUR_MS),
            (
                "principal_sends_minute",
                (t, "pm", send.principal),
                limits.per_principal_per_minute,
                _MINUTE_MS,
            ),
            ("principal_sends_day", (t, "pd", send.principal), limits.per_principal_per_day, _DAY_MS),
            ("tenant_sends_minute", (t, "tm"), limits.per_tenant_per_minute, _MINUTE_MS),
            ("tenant_sends_day", (t, "td"), limits.per_tenant_per_day, _DAY_MS),
        ]
        for window, name, limit, window_ms in windows:
            if limit > 0 and self._get(name) >= limit:
                # Every window is checked before any is spent; the full one counts the refusal.
                if self._incr(name, window_ms) == limit + 1:
                    self.audit.append((t, window))
                return TenantCount(Count.LIMITED, window=window, ttl_ms=self._ttl(name))
        for _, name, limit, window_ms in windows:
            if limit > 0:
                self._incr(name, window_ms)
        return TenantCount(Count.OK, failures=fails)

    def _count_phone(self, send: SendToCount) -> PhoneCount:
        limits, phone = self._limits, send.names.phone
        failures = ("phone", phone, "otpfail")
        if limits.phone_failure_limit > 0 and self._get(failures) >= limits.phone_failure_limit:
            return PhoneCount(Count.LOCKED)
        windows = [
            (("phone", phone, "h"), limits.per_phone_all_tenants_per_hour, _HOUR_MS),
            (("phone", phone, "d"), limits.per_phone_all_tenants_per_day, _DAY_MS),
        ]
        for name, limit, _ in windows:
            if limit > 0 and self._get(name) >= limit:
                return PhoneCount(Count.LIMITED, ttl_ms=self._ttl(name))
        for name, limit, window_ms in windows:
            if limit > 0:
                self._incr(name, window_ms)
        return PhoneCount(Count.OK)

    def _audit_once(self, name: tuple[str, ...], window_ms: int, tenant: str, limit: str) -> None:
        """``rate_limit.lua`` with a limit of 0: the window's first call is audited."""
        if self._incr(name, window_ms) == 1:
            self.audit.append((tenant, limit))

    async def audit_phone_limited(self, send: SendToCount, ttl_ms: int) -> None:
        """Audits the refusal once a window per tenant and phone."""
        self._reach()
        name = (send.tenant, "phone_all_tenants_audited", send.names.tenant_phone)
        self._audit_once(name, ttl_ms, send.tenant, "phone_all_tenants")

    async def count_answer(self, phone_pseudonym: str, *, wrong: bool) -> AnswerCount | None:
        """Counts as ``phone_guess.lua`` does; None while the phone lock is off or there is no phone."""
        limits = self._limits
        if limits.phone_failure_limit <= 0 or not phone_pseudonym:
            return None
        self._reach()
        name = ("phone", phone_pseudonym, "otpfail")
        fails = self._get(name)
        if fails >= limits.phone_failure_limit:
            return AnswerCount(locked=True, ttl_ms=self._ttl(name))
        if wrong:
            fails = self._incr(name, limits.failure_window_ms)
            if fails >= limits.phone_failure_limit:
                # The lock lasts one window from the moment it was reached.
                self._expire(name, limits.failure_window_ms)
        return AnswerCount(locked=False)

    async def audit_phone_locked(
        self, tenant: str, lock_pseudonym: str, ttl_ms: int, request: Mapping[str, str], *, account: str = ""
    ) -> None:
        """Audits the refusal once a window per account and phone."""
        del request, account  # ``audit`` keeps no requests; one memory holds every account
        self._reach()
        self._audit_once((tenant, "phone_locked_audited", lock_pseudonym), ttl_ms, tenant, "phone_locked")

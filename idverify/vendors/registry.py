# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The configured vendors of one server process, each built once and shared by its verifiers.

``server.build_verifiers`` puts one :class:`VendorRegistry` in ``VerifierDeps.extras`` under
:data:`EXTRAS_KEY`; every vendor-backed verifier leases its vendor from it, so the verifiers of
one vendor share one connection pool, one QPS budget and one circuit breaker, and the pool is
closed when the last of them closes at shutdown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from idverify.domain.errors import ConfigError
from idverify.vendors.alibaba import AlibabaCloudauth
from idverify.vendors.api import IdentityVendor
from idverify.vendors.gateway import HttpGateway
from idverify.vendors.tencent import TencentFaceId
from idverify.verifiers.base import VerifierDeps

__all__ = ["EXTRAS_KEY", "KINDS", "VendorLease", "VendorRegistry", "build_vendor", "lease_vendor"]

EXTRAS_KEY: Final = "vendors"
KINDS: Final[Mapping[str, Callable[[str, Mapping[str, Any]], IdentityVendor]]] = {
    "tencent": TencentFaceId,
    "alibaba": AlibabaCloudauth,
    "http": HttpGateway,
}


def build_vendor(name: str, options: Mapping[str, Any]) -> IdentityVendor:
    """Build the adapter a ``[vendors.<name>]`` table describes (``kind`` defaults to the name).

    Raises:
        ConfigError: the kind is unknown or the adapter rejects its options.

    """
    kind = options.get("kind", name)
    if kind not in KINDS:
        raise ConfigError(f"vendors.{name}: unknown kind {kind!r}; available: {', '.join(sorted(KINDS))}")
    return KINDS[kind](name, options)


class VendorLease:
    """One verifier's hold on a shared vendor; :meth:`release` it once at shutdown."""

    def __init__(self, registry: VendorRegistry, vendor: IdentityVendor) -> None:
        self.vendor = vendor
        self._registry: VendorRegistry | None = registry

    async def release(self) -> None:
        """Give the vendor back; the last release closes its connections. Idempotent."""
        registry, self._registry = self._registry, None
        if registry is not None:
            await registry.release(self.vendor.name)


class VendorRegistry:
    """The ``[vendors.*]`` tables of the configuration, built into adapters on first use.

    Args:
        tables: vendor name -> options table.
        build: the adapter factory (tests inject fakes).

    """

    def __init__(
        self,
        tables: Mapping[str, Mapping[str, Any]],
        *,
        build: Callable[[str, Mapping[str, Any]], IdentityVendor] = build_vendor,
    ) -> None:
        self._tables = {name: dict(options) for name, options in tables.items()}
        self._build = build
        self._vendors: dict[str, IdentityVendor] = {}
        self._holders: dict[str, int] = {}

    @property
    def names(self) -> list[str]:
        """The configured vendor names, sorted."""
        return sorted(self._tables)

    def get(self, name: str) -> IdentityVendor:
        """The adapter of a configured vendor, built on first use (without a lease).

        Raises:
            ConfigError: the vendor is not configured (the message lists those that are), or its
                table is invalid.

        """
        if name not in self._vendors:
            if name not in self._tables:
                listing = ", ".join(self.names) or "none configured"
                raise ConfigError(
                    f"vendor {name!r} is not configured ([vendors.{name}]); configured: {listing}"
                )
            self._vendors[name] = self._build(name, self._tables[name])
            self._holders[name] = 0
        return self._vendors[name]

    def acquire(self, name: str) -> VendorLease:
        """Lease a vendor for one verifier.

        Raises:
            ConfigError: as :meth:`get`.

        """
        vendor = self.get(name)
        self._holders[name] += 1
        return VendorLease(self, vendor)

    async def release(self, name: str) -> None:
        """Drop one lease; close the vendor when none is left."""
        self._holders[name] -= 1
        if self._holders[name] <= 0:
            vendor = self._vendors.pop(name)
            del self._holders[name]
            await vendor.aclose()

    async def aclose(self) -> None:
        """Close every vendor built, leased or not."""
        vendors, self._vendors = self._vendors, {}
        self._holders.clear()
        for vendor in vendors.values():
            await vendor.aclose()


def lease_vendor(deps: VerifierDeps, name: str, *, verifier: str) -> VendorLease:
    """Lease the vendor ``name`` from the registry in a verifier's dependencies.

    Raises:
        ConfigError: no registry was provided, or the vendor is not configured.

    """
    registry = deps.extras.get(EXTRAS_KEY)
    if not isinstance(registry, VendorRegistry):
        raise ConfigError(
            f"verifier {verifier!r} needs the vendor registry in VerifierDeps.extras[{EXTRAS_KEY!r}]"
        )
    return registry.acquire(name)

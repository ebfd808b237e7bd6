"""Tenant names: short lower-case names, so that one can sit inside a Redis hash tag."""

from __future__ import annotations

import re

__all__ = ["valid_tenant"]

_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def valid_tenant(tenant: str) -> bool:
    """Whether ``tenant`` is a tenant name."""
    return bool(_TENANT.match(tenant))

"""What the HTTP vendor adapters share: the pooled link, how they show themselves, what they check.

Tencent FaceID, Alibaba Cloudauth and an operator's gateway each speak to their vendor over one
:class:`~idverify.vendors.transport.VendorTransport`; the parts of them that do not depend on
the vendor's protocol are here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from idverify.domain.errors import ConfigError
from idverify.domain.subjects import DocumentType
from idverify.vendors.api import Check, LivenessSession
from idverify.vendors.transport import PreparedRequest, TransportSettings, VendorTransport, check_endpoint
from idverify.vendors.verdicts import VendorUnavailable

__all__ = ["PooledVendor", "liveness_session", "shown"]


def shown(request: PreparedRequest) -> str:
    """A signed request as ``vendors probe --dry-run`` shows it: what would go out (no secret)."""
    headers = "\n".join(f"  {name}: {value}" for name, value in request.headers.items())
    return f"POST {request.url}\n{headers}\n  body: {request.body.decode()}"


def liveness_session(
    answer: Mapping[str, Any], *, id_field: str, url_field: str, missing: str
) -> LivenessSession:
    """The liveness session a vendor's answer opened: its id and URL, in the fields named.

    Raises:
        VendorUnavailable: ``VENDOR_ERROR`` with the vendor code ``missing`` when there is no token.

    """
    token, url = answer.get(id_field), answer.get(url_field)
    if not isinstance(token, str) or not token:
        raise VendorUnavailable("VENDOR_ERROR", missing)
    return LivenessSession(url=url if isinstance(url, str) else "", token=token)


class PooledVendor:
    """The common part of an adapter that speaks to its vendor over one pooled link.

    A subclass sets ``name``, ``_url`` and ``_transport`` when built, and on the class
    ``_supported``, the document types each check takes (or overrides :meth:`supports`), and
    ``_url_option``, the option its URL comes from (shown by ``repr``).
    """

    name: str
    _url: httpx.URL
    _transport: VendorTransport
    _supported: ClassVar[Mapping[Check, frozenset[DocumentType]]] = {}
    _url_option: ClassVar[str] = "endpoint"

    def _configure(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        where: str,
        known: frozenset[str],
        default_url: str | None,
    ) -> TransportSettings:
        """Checks the options' names, keeps the name and the checked URL; the link's settings.

        The subclass builds its ``VendorTransport`` from them once its own options are read.

        Raises:
            ConfigError: an unknown option, a bad transport option or URL.

        """
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown options {unknown}; known: {sorted(known)}")
        self.name = name
        settings = TransportSettings.from_options(where, options)
        self._url = check_endpoint(
            f"{where}.{self._url_option}",
            options.get(self._url_option, default_url),
            allow_plain_http=settings.allow_plain_http,
        )
        return settings

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, {self._url_option}={str(self._url)!r})"

    @property
    def transport(self) -> VendorTransport:
        """The pooled link (its breaker is visible to tests and the CLI)."""
        return self._transport

    def supports(self, check: Check, document_type: DocumentType) -> bool:
        """Whether the vendor offers ``check`` for this document type."""
        return document_type in self._supported[check]

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._transport.aclose()

"""What the HTTP vendor adapters share: the pooled link, how they show themselves, what they check.

Tencent FaceID, Alibaba Cloudauth and an operator's gateway each speak to their vendor over one
:class:`~idverify.vendors.transport.VendorTransport`; the parts of them that do not depend on
the vendor's protocol are here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import httpx

from idverify.domain.subjects import DocumentType
from idverify.vendors.api import Check
from idverify.vendors.transport import PreparedRequest, VendorTransport

__all__ = ["PooledVendor", "shown"]


def shown(request: PreparedRequest) -> str:
    """A signed request as ``vendors probe --dry-run`` shows it: what would go out (no secret)."""
    headers = "\n".join(f"  {name}: {value}" for name, value in request.headers.items())
    return f"POST {request.url}\n{headers}\n  body: {request.body.decode()}"


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

"""Which principal a client certificate (mutual TLS) acts as, by the typed names it carries.

A certificate's names are typed before they are compared: ``cn:`` for the subject's common name,
``uri:``, ``dns:`` and ``email:`` for subject alternative names of those types. Untyped, a URI
SAN reading ``CN=admin-svc`` passed for the common name ``admin-svc``. A subject with more than
one common name names no one: TLS libraries and CAs disagree on which of them counts.
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography import x509
from cryptography.x509.oid import NameOID

from idverify.domain.errors import Unauthenticated
from idverify.security.principals import Principal, Role

# Certificates seen recently and what they named: a client's connection presents the same one on
# every call, and parsing it costs more than the call's own checks.
_REMEMBERED_CERTIFICATES = 1024


def certificate_names(pem: bytes) -> frozenset[str]:
    """The typed names a client certificate carries: ``cn:...``, ``uri:...``, ``dns:...``, ``email:...``.

    DNS names are compared in lower case (they are case-insensitive); the others exactly.

    Raises:
        Unauthenticated: when the certificate cannot be read or its subject has more than one
            common name.
    """
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        try:
            alternatives = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            alternatives = None
    except ValueError:
        raise Unauthenticated("the client certificate cannot be read", reason="BAD_CERTIFICATE") from None
    if len(common_names) > 1:
        raise Unauthenticated(
            "a client certificate with more than one common name names no principal",
            reason="AMBIGUOUS_CERTIFICATE",
        )
    names = {f"cn:{attribute.value}" for attribute in common_names if isinstance(attribute.value, str)}
    if alternatives is not None:
        names.update(f"uri:{uri}" for uri in alternatives.get_values_for_type(x509.UniformResourceIdentifier))
        names.update(f"dns:{dns.lower()}" for dns in alternatives.get_values_for_type(x509.DNSName))
        names.update(f"email:{email}" for email in alternatives.get_values_for_type(x509.RFC822Name))
    return frozenset(names)


def _normalized_key(key: str) -> str:
    kind, _, name = key.partition(":")
    return f"dns:{name.lower()}" if kind == "dns" else key


class CertificatePrincipals:
    """Maps verified client certificates to principals through ``tls.client_principals``.

    Keys are typed names (validated at start-up by the configuration); each entry acts as a
    client of its own (``cert:<n>``) for rate limits and audit entries.
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping: dict[str, Principal] = {}
        for name, target in mapping.items():
            tenant, role = target.split("/")
            self._mapping[_normalized_key(name)] = Principal(tenant, Role(role), f"cert:{len(self._mapping)}")
        self._remembered: dict[bytes, Principal | Unauthenticated | None] = {}

    def __bool__(self) -> bool:
        return bool(self._mapping)

    def principal(self, pem: bytes) -> Principal | None:
        """The principal a certificate (PEM) is mapped to, or None when none of its names is.

        Raises:
            Unauthenticated: when the certificate is ambiguous: several common names, or names
                mapped to different principals.
        """
        if pem in self._remembered:
            answer = self._remembered[pem]
        else:
            answer = self._judge(pem)
            if len(self._remembered) >= _REMEMBERED_CERTIFICATES:
                self._remembered.clear()
            self._remembered[pem] = answer
        if isinstance(answer, Unauthenticated):
            # A fresh exception each time: a remembered one would gather every raise's traceback.
            raise Unauthenticated(answer.message, reason=answer.reason)
        return answer

    def _judge(self, pem: bytes) -> Principal | Unauthenticated | None:
        try:
            names = certificate_names(pem)
        except Unauthenticated as refusal:
            return refusal
        matches = sorted(
            (self._mapping[name] for name in names if name in self._mapping),
            key=lambda match: match.client_id,
        )
        if len({(match.tenant, match.role) for match in matches}) > 1:
            return Unauthenticated(
                "the client certificate's names map to different principals",
                reason="AMBIGUOUS_CERTIFICATE",
            )
        return matches[0] if matches else None

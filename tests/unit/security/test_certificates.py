"""Client certificates name principals by typed names only, and never when they are ambiguous."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idverify.domain.errors import Unauthenticated
from idverify.security.certificates import CertificatePrincipals, certificate_names
from idverify.security.principals import Role

_KEY = ec.generate_private_key(ec.SECP256R1())


def certificate(common_names: list[str], alternatives: list[x509.GeneralName] | None = None) -> bytes:
    """A self-signed PEM certificate with these subject common names and SANs."""
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name) for name in common_names])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if alternatives:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    return builder.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


MAPPING = {
    "cn:admin-svc": "default/admin",
    "uri:spiffe://prod/ns/chat/sa/signup": "default/registrar",
    "dns:Platform.Internal": "default/platform",
    "email:audit@example.com": "default/auditor",
}


class TestCertificateNames:
    def test_names_are_typed(self) -> None:
        """Each name carries its kind; DNS names are lower-cased."""
        pem = certificate(
            ["svc"],
            [
                x509.UniformResourceIdentifier("spiffe://x/y"),
                x509.DNSName("Host.Example"),
                x509.RFC822Name("a@example.com"),
            ],
        )
        assert certificate_names(pem) == {
            "cn:svc",
            "uri:spiffe://x/y",
            "dns:host.example",
            "email:a@example.com",
        }

    @pytest.mark.parametrize("common_names", [["admin-svc", "other"], ["other", "admin-svc"]])
    def test_two_common_names_are_refused(self, common_names: list[str]) -> None:
        """A subject with more than one CN names nothing, whichever comes first."""
        with pytest.raises(Unauthenticated) as refused:
            certificate_names(certificate(common_names))
        assert refused.value.reason == "AMBIGUOUS_CERTIFICATE"

    def test_unreadable_certificate_is_refused(self) -> None:
        """Bytes that are no certificate are UNAUTHENTICATED, not an internal error."""
        with pytest.raises(Unauthenticated):
            certificate_names(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


class TestCertificatePrincipals:
    @pytest.mark.parametrize(
        ("common_names", "alternatives", "role"),
        [
            (["admin-svc"], [], Role.ADMIN),
            (["x"], [x509.UniformResourceIdentifier("spiffe://prod/ns/chat/sa/signup")], Role.REGISTRAR),
            (["x"], [x509.DNSName("platform.internal")], Role.PLATFORM),
            ([], [x509.RFC822Name("audit@example.com")], Role.AUDITOR),
        ],
    )
    def test_each_kind_matches_its_own_key(
        self, common_names: list[str], alternatives: list[x509.GeneralName], role: Role
    ) -> None:
        """cn:, uri:, dns: (any case) and email: keys match names of their own kind."""
        principal = CertificatePrincipals(MAPPING).principal(certificate(common_names, alternatives))
        assert principal is not None
        assert (principal.tenant, principal.role) == ("default", role)

    @pytest.mark.parametrize(
        "alternative",
        [
            x509.UniformResourceIdentifier("CN=admin-svc"),
            x509.UniformResourceIdentifier("cn:admin-svc"),
            x509.DNSName("admin-svc"),
            x509.DNSName("CN=admin-svc"),
            x509.RFC822Name("CN=admin-svc"),
        ],
    )
    def test_a_san_never_passes_for_a_common_name(self, alternative: x509.GeneralName) -> None:
        """A SAN whose text is, or looks like, the mapped common name maps to nothing."""
        assert CertificatePrincipals(MAPPING).principal(certificate(["nobody"], [alternative])) is None

    def test_names_of_two_principals_name_none(self) -> None:
        """A certificate whose CN and SAN map to different principals is refused, every time."""
        principals = CertificatePrincipals(MAPPING)
        pem = certificate(["admin-svc"], [x509.DNSName("platform.internal")])
        for _ in range(2):  # the second answer comes from the remembered certificates
            with pytest.raises(Unauthenticated, match="different principals"):
                principals.principal(pem)

    def test_two_names_of_one_principal_are_fine(self) -> None:
        """A CN and a SAN mapped to the same tenant and role act as that principal."""
        principals = CertificatePrincipals(
            {"cn:svc": "default/registrar", "dns:svc.internal": "default/registrar"}
        )
        principal = principals.principal(certificate(["svc"], [x509.DNSName("svc.internal")]))
        assert principal is not None
        assert principal.role is Role.REGISTRAR

"""TLS and mutual TLS on the gRPC port, with certificates the suite generates itself."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idverify.client import Client
from idverify.testing import ServerProcess, free_port
from idverify.v1 import account_pb2, admin_pb2, verification_pb2

pytestmark = pytest.mark.e2e


class Authority:
    """A throwaway certificate authority."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idverify test CA")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, *, server: bool = False, uri: str = "") -> tuple[bytes, bytes, int]:
        """A leaf certificate and key (PEM) and its serial number."""
        names: list[x509.GeneralName] = []
        if server:
            names += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        if uri:
            names.append(x509.UniformResourceIdentifier(uri))
        return self.issue_names([common_name], names)

    def issue_names(
        self, common_names: list[str], alternatives: list[x509.GeneralName]
    ) -> tuple[bytes, bytes, int]:
        """A leaf certificate with these subject common names (in order) and SANs, its key, its serial."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        serial = x509.random_serial_number()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name) for name in common_names])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if alternatives:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem, serial


def served_serial(port: int, ca: Authority, client: tuple[Path, Path]) -> int:
    """The serial number of the certificate the server presents to a new connection."""
    context = ssl.create_default_context(cadata=ca.pem.decode())
    context.load_cert_chain(str(client[0]), str(client[1]))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


# Client certificates by file name: (subject common names, subject alternative names). The
# server maps cn:admin-svc to an admin and dns:platform.test to a platform (tls_config).
CLIENT_CERTIFICATES: dict[str, tuple[list[str], list[x509.GeneralName]]] = {
    "admin-svc": (["admin-svc"], []),
    "platform": (["platform client"], [x509.DNSName("Platform.Test")]),
    "uri-spoof": (["nobody"], [x509.UniformResourceIdentifier("CN=admin-svc")]),
    "dns-spoof": (["nobody"], [x509.DNSName("CN=admin-svc"), x509.DNSName("admin-svc")]),
    "email-spoof": (["nobody"], [x509.RFC822Name("CN=admin-svc")]),
    "no-cn-spoof": ([], [x509.UniformResourceIdentifier("CN=admin-svc"), x509.DNSName("spoof.test")]),
    "two-cns-admin-first": (["admin-svc", "nobody"], []),
    "two-cns-admin-last": (["nobody", "admin-svc"], []),
    "two-principals": (["admin-svc"], [x509.DNSName("platform.test")]),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Path]:
    ca = Authority()
    directory = tmp_path_factory.mktemp("pki")
    (directory / "ca.pem").write_bytes(ca.pem)
    cert, key, _ = ca.issue("idverify server", server=True)
    (directory / "server.pem").write_bytes(cert)
    (directory / "server.key").write_bytes(key)
    for name, uri in (("registrar-client", "spiffe://test/registrar"), ("stranger", "")):
        cert, key, _ = ca.issue(name, uri=uri)
        (directory / f"{name}.pem").write_bytes(cert)
        (directory / f"{name}.key").write_bytes(key)
    for name, (common_names, alternatives) in CLIENT_CERTIFICATES.items():
        cert, key, _ = ca.issue_names(common_names, alternatives)
        (directory / f"{name}.pem").write_bytes(cert)
        (directory / f"{name}.key").write_bytes(key)
    return ca, directory


def credentials(ca: Authority, directory: Path, client: str | None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca.pem)
    return grpc.ssl_channel_credentials(
        root_certificates=ca.pem,
        private_key=(directory / f"{client}.key").read_bytes(),
        certificate_chain=(directory / f"{client}.pem").read_bytes(),
    )


def tls_config(directory: Path, *, mutual: bool) -> str:
    lines = ["[tls]", f'cert_file = "{directory / "server.pem"}"', f'key_file = "{directory / "server.key"}"']
    if mutual:
        lines += [
            f'client_ca_file = "{directory / "ca.pem"}"',
            "[tls.client_principals]",
            '"uri:spiffe://test/registrar" = "default/registrar"',
            '"cn:admin-svc" = "default/admin"',
            '"dns:platform.test" = "default/platform"',
        ]
    return "\n".join(lines) + "\n"


class TestTls:
    def test_tls_serves_and_plaintext_is_refused(self, pki: tuple[Authority, Path], tmp_path: Path) -> None:
        """With a certificate configured, TLS clients work and plaintext clients cannot connect."""
        ca, directory = pki
        server = ServerProcess(
            tmp_path, config=tls_config(directory, mutual=False), credentials=credentials(ca, directory, None)
        )
        with server, server.client() as registrar:
            assert registrar.verification.ListMethods(verification_pb2.ListMethodsRequest()).methods
            with (
                Client(server.target, server.token("registrar"), timeout=3) as plain,
                pytest.raises(grpc.RpcError) as refused,
            ):
                plain.verification.ListMethods(verification_pb2.ListMethodsRequest())
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


class TestMutualTls:
    def test_client_certificates_map_to_principals(self, pki: tuple[Authority, Path], tmp_path: Path) -> None:
        """A mapped client certificate authenticates without a token; unmapped or missing ones do not."""
        ca, directory = pki
        server = ServerProcess(
            tmp_path,
            config=tls_config(directory, mutual=True),
            credentials=credentials(ca, directory, "registrar-client"),
        )
        with server:
            with Client(server.target, credentials=credentials(ca, directory, "registrar-client")) as by_cert:
                methods = by_cert.verification.ListMethods(verification_pb2.ListMethodsRequest()).methods
                assert methods
            with (
                Client(server.target, credentials=credentials(ca, directory, "stranger")) as stranger,
                pytest.raises(grpc.RpcError) as unmapped,
            ):
                stranger.verification.ListMethods(verification_pb2.ListMethodsRequest())
            assert unmapped.value.code() is grpc.StatusCode.UNAUTHENTICATED
            with (
                Client(server.target, credentials=credentials(ca, directory, None), timeout=3) as no_cert,
                pytest.raises(grpc.RpcError) as missing,
            ):
                no_cert.verification.ListMethods(verification_pb2.ListMethodsRequest())
            assert missing.value.code() is grpc.StatusCode.UNAVAILABLE

    def test_certificate_files_reload_without_restart(
        self, pki: tuple[Authority, Path], tmp_path: Path
    ) -> None:
        """Replacing the certificate files switches new connections to the new certificate."""
        ca, shared = pki
        directory = tmp_path / "pki"
        directory.mkdir()
        for name in ("ca.pem", "server.pem", "server.key", "registrar-client.pem", "registrar-client.key"):
            (directory / name).write_bytes((shared / name).read_bytes())
        client_files = (directory / "registrar-client.pem", directory / "registrar-client.key")
        server = ServerProcess(
            tmp_path / "server",
            config=tls_config(directory, mutual=True),
            credentials=credentials(ca, directory, "registrar-client"),
        )
        with server:
            before = served_serial(server.port, ca, client_files)
            cert, key, serial = ca.issue("idverify server renewed", server=True)
            (directory / "server.key.new").write_bytes(key)
            (directory / "server.pem.new").write_bytes(cert)
            (directory / "server.key.new").replace(directory / "server.key")
            (directory / "server.pem.new").replace(directory / "server.pem")
            deadline = time.monotonic() + 10
            seen = before
            while seen != serial and time.monotonic() < deadline:
                time.sleep(0.5)
                seen = served_serial(server.port, ca, client_files)
            with Client(server.target, credentials=credentials(ca, directory, "registrar-client")) as client:
                assert client.verification.ListMethods(verification_pb2.ListMethodsRequest()).methods
        assert before != serial
        assert seen == serial


@pytest.fixture(scope="module")
def mutual_server(
    pki: tuple[Authority, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server that requires client certificates and maps some of them to principals."""
    ca, directory = pki
    with ServerProcess(
        tmp_path_factory.mktemp("mtls"),
        config=tls_config(directory, mutual=True),
        credentials=credentials(ca, directory, "registrar-client"),
    ) as server:
        yield server


def list_clients(server: ServerProcess, ca: Authority, directory: Path, client: str) -> grpc.StatusCode:
    """The status of an admin-only call made with a client certificate and no token."""
    with Client(server.target, credentials=credentials(ca, directory, client), timeout=5) as by_cert:
        try:
            by_cert.admin.ListClients(admin_pb2.ListClientsRequest())
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


class TestCertificateNames:
    def test_each_typed_name_maps_its_own_kind(
        self, pki: tuple[Authority, Path], mutual_server: ServerProcess
    ) -> None:
        """cn:admin-svc matches the common name; dns:platform.test matches a DNS SAN in any case."""
        ca, directory = pki
        assert list_clients(mutual_server, ca, directory, "admin-svc") is grpc.StatusCode.OK
        assert list_clients(mutual_server, ca, directory, "platform") is grpc.StatusCode.PERMISSION_DENIED
        with Client(mutual_server.target, credentials=credentials(ca, directory, "platform")) as platform:
            platform.account.GetAccount(account_pb2.GetAccountRequest(account_id="nobody-yet"))

    @pytest.mark.parametrize(
        "client",
        ["uri-spoof", "dns-spoof", "email-spoof", "no-cn-spoof", "two-cns-admin-first", "two-cns-admin-last"],
    )
    def test_a_san_or_second_common_name_never_passes_for_a_common_name(
        self, pki: tuple[Authority, Path], mutual_server: ServerProcess, client: str
    ) -> None:
        """A SAN reading CN=admin-svc, or a subject with two CNs, is not the admin-svc principal."""
        ca, directory = pki
        assert list_clients(mutual_server, ca, directory, client) is grpc.StatusCode.UNAUTHENTICATED

    def test_names_mapped_to_different_principals_name_none(
        self, pki: tuple[Authority, Path], mutual_server: ServerProcess
    ) -> None:
        """A certificate whose CN maps to an admin and whose DNS SAN maps to a platform is refused."""
        ca, directory = pki
        assert list_clients(mutual_server, ca, directory, "two-principals") is grpc.StatusCode.UNAUTHENTICATED

    def test_untyped_principal_keys_stop_start_up_with_one_line(
        self, pki: tuple[Authority, Path], tmp_path: Path
    ) -> None:
        """A configuration written before typed keys fails at once, naming each key's new form."""
        _, directory = pki
        config = tls_config(directory, mutual=True).replace('"cn:admin-svc"', '"CN=admin-svc"')
        (tmp_path / "idverify.toml").write_text(config, encoding="utf-8")
        command = [sys.executable, "-m", "idverify", "serve", "--config", str(tmp_path / "idverify.toml")]
        command += ["--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{free_port()}"]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert finished.returncode != 0
        lines = finished.stderr.strip().splitlines()
        assert len(lines) == 1, finished.stderr
        assert '"cn:admin-svc"' in lines[0]
        assert "Traceback" not in finished.stderr

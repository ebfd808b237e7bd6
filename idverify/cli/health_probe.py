"""``idverify health``: asks a server's gRPC health service, for probes that cannot speak TLS.

Kubernetes' built-in gRPC probe connects in plaintext only; with TLS on, the Helm chart runs this
command instead. It exits 0 when the server answers SERVING and 1 otherwise (including no
answer within the timeout), and prints the status for people running it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """Where and how to ask.

    Attributes:
        server: HOST:PORT.
        service: the service name to ask about ("" for the whole server).
        tls_ca: a CA bundle to verify the server with; empty for plaintext.
        tls_server_name: the name the certificate must carry (the address when empty).
        tls_cert: a client certificate, for servers that require mutual TLS.
        tls_key: its private key.
        timeout: seconds to wait for the answer.
    """

    server: str
    service: str = ""
    tls_ca: str = ""
    tls_server_name: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    timeout: float = 2.0


def _channel(target: ProbeTarget) -> grpc.Channel:
    if not target.tls_ca:
        return grpc.insecure_channel(target.server)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(target.tls_ca).read_bytes(),
        private_key=Path(target.tls_key).read_bytes() if target.tls_key else None,
        certificate_chain=Path(target.tls_cert).read_bytes() if target.tls_cert else None,
    )
    options = [("grpc.ssl_target_name_override", target.tls_server_name)] if target.tls_server_name else []
    return grpc.secure_channel(target.server, credentials, options=options)


def check(target: ProbeTarget) -> str:
    """The health status name the server gives (``SERVING``, ``NOT_SERVING``...) or the error code.

    Raises:
        OSError: when a certificate file cannot be read.
    """
    with _channel(target) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=target.service), timeout=target.timeout
            )
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

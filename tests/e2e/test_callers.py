"""What a caller in any language meets: reflection v1 and v1alpha, and clients built from the contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as v1alpha_grpc

from idverify.services.reflection import V1_FILE_NAME, V1_SERVICE_NAME, v1_file_descriptor
from idverify.testing import ServerProcess

pytestmark = pytest.mark.e2e

V1_METHOD = f"/{V1_SERVICE_NAME}/ServerReflectionInfo"
OUR_SERVICES = {
    "idverify.v1.VerificationService",
    "idverify.v1.AccountService",
    "idverify.v1.ConsentService",
    "idverify.v1.AuditService",
    "idverify.v1.AdminService",
    "grpc.health.v1.Health",
}


class V1Client:
    """A reflection v1 client whose messages come from a pool of its own, as grpcurl's do."""

    def __init__(self, channel: grpc.Channel) -> None:
        pool = descriptor_pool.DescriptorPool()
        pool.Add(v1_file_descriptor())
        self.request_class: Any = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
        )
        response_class: Any = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
        )
        self._call = channel.stream_stream(
            V1_METHOD,
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )

    def ask(self, **request: Any) -> Any:
        """One request on a stream of its own, and its answer."""
        return next(iter(self._call(iter([self.request_class(**request)]), timeout=10)))


@pytest.fixture(scope="module")
def v1(server: ServerProcess) -> Iterator[V1Client]:
    with grpc.insecure_channel(server.target) as channel:
        yield V1Client(channel)


class TestReflection:
    def test_v1_lists_every_service(self, v1: V1Client) -> None:
        """A v1 client (grpcurl and Postman try v1 first) lists the services, without a token."""
        names = {s.name for s in v1.ask(list_services="").list_services_response.service}
        assert OUR_SERVICES | {V1_SERVICE_NAME, "grpc.reflection.v1alpha.ServerReflection"} <= names

    def test_v1_resolves_a_service_to_its_file_and_the_files_it_imports(self, v1: V1Client) -> None:
        """A symbol resolves to the file that defines it, with the files it imports, parseable."""
        answer = v1.ask(file_containing_symbol="idverify.v1.VerificationService")
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in answer.file_descriptor_response.file_descriptor_proto
        ]
        by_name = {f.name: f for f in files}
        assert "idverify/v1/verification.proto" in by_name
        defined = by_name["idverify/v1/verification.proto"]
        assert "VerificationService" in {s.name for s in defined.service}
        methods = {m.name for s in defined.service for m in s.method}
        assert {"ListMethods", "StartVerification", "SubmitChallenge", "GetVerification"} <= methods
        assert set(defined.dependency) <= set(by_name)  # every import comes along

    def test_v1_resolves_its_own_service_and_files_by_name(self, v1: V1Client) -> None:
        """The v1 reflection service is itself resolvable, as clients check before using it."""
        own = v1.ask(file_containing_symbol=V1_SERVICE_NAME).file_descriptor_response
        names = {descriptor_pb2.FileDescriptorProto.FromString(raw).name for raw in own.file_descriptor_proto}
        assert V1_FILE_NAME in names
        common = v1.ask(file_by_filename="idverify/v1/common.proto").file_descriptor_response
        parsed = descriptor_pb2.FileDescriptorProto.FromString(common.file_descriptor_proto[0])
        assert "IpLocation" in {m.name for m in parsed.message_type}

    def test_v1_names_an_unknown_symbol_not_found(self, v1: V1Client) -> None:
        """A symbol no file defines gets NOT_FOUND in the answer, the stream stays healthy."""
        answer = v1.ask(file_containing_symbol="idverify.v1.NoSuchService")
        assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]

    def test_v1alpha_still_answers(self, server: ServerProcess) -> None:
        """Older tools keep v1alpha: the same answers under the old package."""
        with grpc.insecure_channel(server.target) as channel:
            stub = v1alpha_grpc.ServerReflectionStub(channel)
            request = v1alpha_pb2.ServerReflectionRequest(list_services="")
            answer = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
        assert {s.name for s in answer.list_services_response.service} >= OUR_SERVICES

"""gRPC Server Reflection, v1 as well as v1alpha (grpcurl and Postman ask v1 first).

grpcio-reflection serves v1alpha only. The two versions differ in their package name alone:
every message has the same fields under the same numbers, so their bytes on the wire are the
same. v1 is therefore served by the same servicer as v1alpha, its requests parsed and its answers
written by the v1alpha classes, and its file descriptor is the v1alpha one renamed into
``grpc.reflection.v1`` and added to the descriptor pool the servicer reads, so that a v1 client
resolving ``grpc.reflection.v1.ServerReflection`` finds it there.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

V1ALPHA_SERVICE_NAME = "grpc.reflection.v1alpha.ServerReflection"
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
V1_FILE_NAME = "grpc/reflection/v1/reflection.proto"
_V1ALPHA_PREFIX = ".grpc.reflection.v1alpha."
_V1_PREFIX = ".grpc.reflection.v1."


def _renamed(type_name: str) -> str:
    return (
        _V1_PREFIX + type_name.removeprefix(_V1ALPHA_PREFIX)
        if type_name.startswith(_V1ALPHA_PREFIX)
        else type_name
    )


def _rename_messages(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    for message in messages:
        for field in message.field:
            if field.HasField("type_name"):  # set on a scalar, it would make the file invalid
                field.type_name = _renamed(field.type_name)
        _rename_messages(message.nested_type)


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The v1 reflection file: v1alpha's, in package ``grpc.reflection.v1``."""
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = V1_FILE_NAME
    proto.package = "grpc.reflection.v1"
    proto.ClearField("options")  # language packages named after v1alpha
    _rename_messages(proto.message_type)
    for service in proto.service:
        for method in service.method:
            method.input_type = _renamed(method.input_type)
            method.output_type = _renamed(method.output_type)
    return proto


def add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """Adds the v1 reflection file to ``pool`` unless it holds one already."""
    try:
        pool.FindFileByName(V1_FILE_NAME)
    except KeyError:
        pool.Add(v1_file_descriptor())


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serves reflection v1 and v1alpha for ``service_names`` (both reflection services added)."""
    pool = descriptor_pool.Default()
    add_v1_descriptor(pool)
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = ReflectionServicer(names, pool=pool)
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=v1alpha_pb2.ServerReflectionRequest.FromString,
        response_serializer=v1alpha_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": method})
            for name in (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
        )
    )

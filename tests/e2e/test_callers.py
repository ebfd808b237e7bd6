"""What a caller in any language meets: reflection v1 and v1alpha, and clients built from the contract."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as v1alpha_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_tools import protoc

from idverify.services.reflection import V1_FILE_NAME, V1_SERVICE_NAME, v1_file_descriptor
from idverify.testing import ServerProcess

from .conftest import Identity, person

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_TIMEOUT = 120.0
# gRPC's own reflection v1 definition, as Debian's grpc-proto ships it (.ci/run installs it).
OFFICIAL_V1_PROTO = Path("/usr/share/grpc-proto/grpc/reflection/v1/reflection.proto")

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


class OfficialV1:
    """Reflection v1 as gRPC publishes it (Debian's grpc-proto), compiled here with grpcio-tools."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        self.file = file
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file)
        (service,) = file.service
        (method,) = service.method
        self.method = f"/{file.package}.{service.name}/{method.name}"
        self.request_class: Any = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(method.input_type.lstrip("."))
        )
        self.response_class: Any = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(method.output_type.lstrip("."))
        )

    def ask(self, channel: grpc.Channel, **request: Any) -> Any:
        call = channel.stream_stream(
            self.method,
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=self.response_class.FromString,
        )
        return next(iter(call(iter([self.request_class(**request)]), timeout=10)))


@pytest.fixture(scope="module")
def official_v1(tmp_path_factory: pytest.TempPathFactory) -> OfficialV1:
    if not OFFICIAL_V1_PROTO.exists():
        # Loud on purpose: .ci/run installs grpc-proto; without it v1 is checked only against
        # the server's own descriptor.
        pytest.skip(
            f"NO {OFFICIAL_V1_PROTO}: reflection v1 NOT checked against gRPC's own proto "
            "(apt-get install grpc-proto)"
        )
    out = tmp_path_factory.mktemp("official-v1") / "reflection.pb"
    include = OFFICIAL_V1_PROTO.parents[3]
    status = protoc.main(["protoc", f"-I{include}", f"--descriptor_set_out={out}", str(OFFICIAL_V1_PROTO)])
    assert status == 0
    (file,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return OfficialV1(file)


def _layout(file: descriptor_pb2.FileDescriptorProto) -> object:
    """What the wire depends on: services, methods, and every message's fields (nested too)."""

    def fields(messages: Iterable[descriptor_pb2.DescriptorProto], prefix: str) -> dict[str, object]:
        layout: dict[str, object] = {}
        for message in messages:
            name = f"{prefix}{message.name}"
            layout[name] = sorted(
                (
                    f.number,
                    f.name,
                    f.type,
                    f.label,
                    f.type_name,
                    f.oneof_index if f.HasField("oneof_index") else -1,
                )
                for f in message.field
            )
            layout.update(fields(message.nested_type, f"{name}."))
        return layout

    services = {
        service.name: sorted(
            (m.name, m.input_type, m.output_type, m.client_streaming, m.server_streaming)
            for m in service.method
        )
        for service in file.service
    }
    return services, fields(file.message_type, "")


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

    def test_v1_streams_share_the_connection_budget_of_anonymous_calls(
        self, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """An anonymous network client gets no more v1 streams than v1alpha or Health/Watch ones."""
        config = "[grpc]\npublic_streams_per_connection = 2\n"
        with (
            ServerProcess(
                tmp_path_factory.mktemp("v1-budget"), config=config, extra_args=["--workers", "1"]
            ) as other,
            grpc.insecure_channel(other.target) as channel,
        ):
            client = V1Client(channel)
            assert client.ask(list_services="").list_services_response.service
            watches = [
                health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
                for _ in range(2)
            ]
            for watch in watches:
                next(watch)
            with pytest.raises(grpc.RpcError) as refused:
                client.ask(list_services="")
            for watch in watches:
                watch.cancel()
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    def test_the_official_v1_proto_speaks_to_it(self, server: ServerProcess, official_v1: OfficialV1) -> None:
        """A client built from gRPC's own v1 reflection.proto (not the server's renamed copy).

        Its service path and message layouts come from that file alone, as grpcurl's compiled-in
        ones do: it lists the services and resolves a symbol to a parseable file.
        """
        with grpc.insecure_channel(server.target) as channel:
            names = {
                s.name for s in official_v1.ask(channel, list_services="").list_services_response.service
            }
            assert OUR_SERVICES | {"grpc.reflection.v1.ServerReflection"} <= names
            answer = official_v1.ask(channel, file_containing_symbol="idverify.v1.AccountService")
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in answer.file_descriptor_response.file_descriptor_proto
        ]
        assert "AccountService" in {service.name for f in files for service in f.service}

    def test_the_served_v1_file_has_the_official_layout(self, v1: V1Client, official_v1: OfficialV1) -> None:
        """The v1 file the server describes itself with: the official one's package, service and fields."""
        own = v1.ask(file_containing_symbol=V1_SERVICE_NAME).file_descriptor_response
        (served,) = [
            parsed
            for raw in own.file_descriptor_proto
            if (parsed := descriptor_pb2.FileDescriptorProto.FromString(raw)).name == V1_FILE_NAME
        ]
        assert served.package == official_v1.file.package
        assert _layout(served) == _layout(official_v1.file)

    def test_a_grpcio_reflection_client_resolves_every_service(self, server: ServerProcess) -> None:
        """grpcio-reflection's own client (a descriptor database over reflection) finds each method."""
        with grpc.insecure_channel(server.target) as channel:
            pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
            for name in OUR_SERVICES - {"grpc.health.v1.Health"}:
                assert pool.FindServiceByName(name).methods, name
            start = pool.FindMethodByName("idverify.v1.VerificationService.StartVerification")
            assert start.input_type.fields_by_name["subject"].message_type.full_name == "idverify.v1.Subject"

    def test_v1alpha_still_answers(self, server: ServerProcess) -> None:
        """Older tools keep v1alpha: the same answers under the old package."""
        with grpc.insecure_channel(server.target) as channel:
            stub = v1alpha_grpc.ServerReflectionStub(channel)
            request = v1alpha_pb2.ServerReflectionRequest(list_services="")
            answer = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
        assert {s.name for s in answer.list_services_response.service} >= OUR_SERVICES


def _run_signup(
    server: ServerProcess, command: list[str], cwd: Path, env: dict[str, str], *, code: bool = True
) -> str:
    """Runs an example's signup as a caller would, typing the logged SMS code; its output."""
    with subprocess.Popen(
        command,
        cwd=cwd,
        env={
            **_plain_env(),
            "IDVERIFY_TARGET": server.target,
            "IDVERIFY_TOKEN": server.token("registrar"),
            "IDVERIFY_PLATFORM_TOKEN": server.token("platform"),
            **env,
        },
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        lines: list[str] = []
        try:
            for line in process.stdout:
                lines.append(line)
                started = re.match(r"verification ([0-9a-f]{32}) VERIFICATION_STATUS_CHALLENGE_SENT", line)
                if started and code:
                    process.stdin.write(server.sms_code(started.group(1)) + "\n")
                    process.stdin.flush()
            process.wait(timeout=EXAMPLE_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
        output = "".join(lines)
        if code:
            assert process.returncode == 0, output
        else:
            assert process.returncode == 1, output
        return output


def _plain_env() -> dict[str, str]:
    """The environment without the server's own settings or a Python path into this repository."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("IDVERIFY_", "PYTHON"))}


def _assert_signed_up(output: str, account_id: str) -> None:
    assert re.search(r"methods: .*\bsms\b", output), output
    assert re.search(r"CHALLENGE_SENT to 1\d\d\*\*\*\*\d{4}", output), output
    assert "submitted: VERIFICATION_STATUS_VERIFIED" in output, output
    assert "verification: VERIFICATION_STATUS_VERIFIED method=sms" in output, output
    assert f"account {account_id}: verified=" in output, output
    assert "binding=BINDING_STATE_BOUND" in output, output


def _bad_document(identity: Identity) -> str:
    """The identity's document number with a wrong check character."""
    number = identity.number
    return number[:-1] + ("0" if number[-1] != "0" else "1")


class TestPythonExample:
    """examples/python: plain grpcio, stubs generated from proto/ at run time, no idverify import."""

    def test_it_imports_nothing_of_idverify(self) -> None:
        """Only the standard library, grpc and grpc_tools: a caller has no idverify package."""
        tree = ast.parse((EXAMPLES / "python" / "signup.py").read_text(encoding="utf-8"))
        imported = {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        roots = {name.split(".")[0] for name in imported}
        assert roots <= set(sys.stdlib_module_names) | {"grpc", "grpc_tools"}, roots

    def test_it_signs_up(self, server: ServerProcess, tmp_path: Path) -> None:
        """ListMethods, StartVerification, SubmitChallenge, GetVerification, GetAccount, as printed.

        Run from outside the repository through a wrapper that reports where ``idverify`` came
        from: the generated stubs, never the server's package installed beside them.
        """
        identity = person()
        wrapper = (
            "import runpy, sys\n"
            "try:\n"
            f"    runpy.run_path({str(EXAMPLES / 'python' / 'signup.py')!r}, run_name='__main__')\n"
            "finally:\n"
            "    print('idverify from', sys.modules['idverify'].__file__)\n"
        )
        output = _run_signup(
            server, [sys.executable, "-c", wrapper], tmp_path, _person_env(identity, "py-example")
        )
        _assert_signed_up(output, "py-example")
        origin = re.search(r"idverify from (\S+)", output)
        assert origin is not None, output
        assert not Path(origin.group(1)).is_relative_to(ROOT), output

    def test_a_refusal_prints_its_reason_and_field(self, server: ServerProcess, tmp_path: Path) -> None:
        """A wrong check character: the reason from ErrorInfo and the field from BadRequest."""
        identity = person()
        env = _person_env(identity, "py-refused") | {"IDVERIFY_DOCUMENT_NUMBER": _bad_document(identity)}
        output = _run_signup(
            server, [sys.executable, str(EXAMPLES / "python" / "signup.py")], tmp_path, env, code=False
        )
        assert "refused: status=INVALID_ARGUMENT" in output, output
        assert "reason=CHECKSUM_MISMATCH domain=idverify.dev" in output, output
        assert "field=subject.document_number" in output, output


@pytest.fixture(scope="module")
def node_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/node installed with ``npm ci`` from its lockfile, in a copy (the tree stays clean)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        # Loud on purpose: CI machines have node; a skip here means the example went unchecked.
        pytest.skip("NODE IS NOT INSTALLED: examples/node was NOT exercised (apt-get install nodejs npm)")
    copy = tmp_path_factory.mktemp("node-example")
    for name in ("package.json", "package-lock.json", "signup.js"):
        shutil.copy(EXAMPLES / "node" / name, copy / name)
    installed = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return copy


class TestNodeExample:
    """examples/node: grpc-js and proto-loader loading the shipped protos at run time."""

    def test_it_signs_up(self, server: ServerProcess, node_example: Path) -> None:
        """The same five calls from Node, the SMS code typed on its standard input."""
        identity = person()
        env = _person_env(identity, "node-example") | {"IDVERIFY_PROTO_DIR": str(ROOT / "proto")}
        output = _run_signup(server, ["node", "signup.js"], node_example, env)
        _assert_signed_up(output, "node-example")

    def test_a_refusal_prints_its_reason_and_field(self, server: ServerProcess, node_example: Path) -> None:
        """grpc-status-details-bin decoded with the shipped google/rpc protos."""
        identity = person()
        env = _person_env(identity, "node-refused") | {
            "IDVERIFY_PROTO_DIR": str(ROOT / "proto"),
            "IDVERIFY_DOCUMENT_NUMBER": _bad_document(identity),
        }
        output = _run_signup(server, ["node", "signup.js"], node_example, env, code=False)
        assert "refused: StartVerification status=INVALID_ARGUMENT" in output, output
        assert "reason=CHECKSUM_MISMATCH domain=idverify.dev" in output, output
        assert "field=subject.document_number" in output, output


def _person_env(identity: Identity, account_id: str) -> dict[str, str]:
    return {
        "IDVERIFY_ACCOUNT_ID": account_id,
        "IDVERIFY_NAME": identity.name,
        "IDVERIFY_DOCUMENT_NUMBER": identity.number,
        "IDVERIFY_PHONE": identity.phone,
    }

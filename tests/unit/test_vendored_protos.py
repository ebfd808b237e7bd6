"""The google.rpc protos shipped under proto/ for callers: unchanged, complete, compilable."""

from __future__ import annotations

from pathlib import Path

import google.rpc
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "proto" / "google" / "rpc"
NEEDED = ("status.proto", "error_details.proto", "code.proto")


def test_shipped_protos_are_the_locked_packages_copies() -> None:
    """Vendored as published (googleapis-common-protos of the lock), licence header and all."""
    published = Path(next(iter(google.rpc.__path__)))
    for name in NEEDED:
        shipped = (SHIPPED / name).read_text(encoding="utf-8")
        assert shipped == (published / name).read_text(encoding="utf-8"), name
        assert "Licensed under the Apache License, Version 2.0" in shipped


def test_they_hold_every_detail_the_server_sends() -> None:
    """ErrorInfo, BadRequest and RetryInfo: what the interceptor packs into a status."""
    details = (SHIPPED / "error_details.proto").read_text(encoding="utf-8")
    for message in ("ErrorInfo", "BadRequest", "RetryInfo"):
        assert f"message {message} {{" in details
    assert "message Status {" in (SHIPPED / "status.proto").read_text(encoding="utf-8")


def test_the_contract_compiles_from_proto_alone(tmp_path: Path) -> None:
    """A caller's protoc needs proto/ and the well-known types, and nothing fetched."""
    well_known = Path(protoc.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    assert any(f.startswith("google/rpc/") for f in files)
    code = protoc.main(
        [
            "protoc",
            f"--proto_path={ROOT / 'proto'}",
            f"--proto_path={well_known}",
            f"--python_out={tmp_path}",
            *files,
        ]
    )
    assert code == 0
    assert (tmp_path / "google" / "rpc" / "error_details_pb2.py").exists()

"""Generates idverify/v1 (protobuf, gRPC and mypy stubs) from proto/idverify/v1.

Run from anywhere: ``python scripts/gen_protos.py``. ``--check`` regenerates into a scratch
directory and exits non-zero when the committed code differs, which is what CI runs.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("idverify") / "v1"
INIT_TEXT = '"""Generated protobuf and gRPC code for idverify.v1. Never edit by hand."""\n'


def generate(out_root: Path) -> None:
    """Runs protoc for every .proto file of the package into ``out_root``."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        msg = "protoc failed"
        raise SystemExit(msg)
    (out_root / PACKAGE_DIR / "__init__.py").write_text(INIT_TEXT)
    (out_root / PACKAGE_DIR / "py.typed").write_text("")


def main() -> int:
    """Generates, or with --check compares; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when committed code is stale")
    options = parser.parse_args()
    if not options.check:
        target = ROOT / PACKAGE_DIR
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        generate(ROOT)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        fresh = Path(scratch) / PACKAGE_DIR
        committed = ROOT / PACKAGE_DIR
        names = sorted(
            {p.name for p in fresh.iterdir()} | {p.name for p in committed.iterdir() if p.is_file()}
        )
        stale = [
            n
            for n in names
            if not (fresh / n).exists()
            or not (committed / n).exists()
            or not filecmp.cmp(fresh / n, committed / n, shallow=False)
        ]
        if stale:
            print("generated code is stale; run scripts/gen_protos.py:", *stale, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

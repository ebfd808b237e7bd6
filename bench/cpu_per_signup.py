"""Server CPU per signup, this tree against another revision, side by side.

    git worktree add /tmp/baseline <rev>
    .venv/bin/python bench/cpu_per_signup.py --baseline /tmp/baseline [--signups 300] [--rounds 3] [--json]

Each round starts one ``idverify serve --workers 1`` of each tree on a Redis of its own (the
baseline's code comes first on ``PYTHONPATH``), waits until it is quiet, drives the same number
of real signups through it, and reads the CPU seconds of the server's processes (supervisor and
worker, from /proc) before and after. The trees take turns, so both see the machine's drift
alike; the figure is the median of the rounds, with their spread. Throughput on this machine is
too noisy to show a few per cent; CPU time is not (it counts only what the server itself ran).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import grpc

from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary
from idverify.v1 import admin_pb2, admin_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import print_figures, ratio_spread, side_by_side
from verify import BENCH_CONFIG, CodeReader, drive, install_bench_sender

CONCURRENCY = 16


def registrar_token(server: ServerProcess) -> str:
    """A registrar's token, on a tree with the operator role and on one from before it."""
    with grpc.insecure_channel(server.target) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        bootstrap = (("authorization", f"Bearer {server.bootstrap_token()}"),)
        try:
            operator = admin.CreateClient(
                admin_pb2.CreateClientRequest(tenant="default", role="operator"), metadata=bootstrap
            ).token
        except grpc.RpcError:  # a tree from before the operator role: the bootstrap token is an admin
            operator = server.bootstrap_token()
        creator = (("authorization", f"Bearer {operator}"),)
        try:
            return admin.CreateClient(
                admin_pb2.CreateClientRequest(tenant="default", role="registrar"), metadata=creator
            ).token
        except grpc.RpcError:  # an operator may not be a tenant's admin: make one first
            made = admin.CreateClient(
                admin_pb2.CreateClientRequest(tenant="default", role="admin"), metadata=creator
            )
            tenant_admin = (("authorization", f"Bearer {made.token}"),)
            return admin.CreateClient(
                admin_pb2.CreateClientRequest(tenant="default", role="registrar"), metadata=tenant_admin
            ).token


def one_round(root: Path, source: Path | None, signups: range) -> float:
    """CPU milliseconds per signup of one server running ``source`` (None: this tree)."""
    install_bench_sender(root / "site")
    codes = root / "codes.txt"
    path = str(root / "site") if source is None else f"{source}:{root / 'site'}"
    with RedisProcess(
        root / "redis", port=free_port(), binary=redis_server_binary(prefer_system=True)
    ) as store:
        server = ServerProcess(
            root / "server",
            config=BENCH_CONFIG.format(codes=codes),
            redis_url=store.url,
            extra_args=["--workers", "1"],
            env={"PYTHONPATH": path, "BENCH_CODE_SENDER_ACK": "codes-leave-the-server"},
            development=False,
        )
        with server:
            server.wait_quiet()
            token = registrar_token(server)
            asyncio.run(drive(server.target, token, CodeReader(codes), range(10**6, 10**6 + 30), 8))
            server.wait_quiet()
            before = server.cpu_seconds()
            asyncio.run(drive(server.target, token, CodeReader(codes), signups, CONCURRENCY))
            used = server.cpu_seconds() - before
    return 1000 * used / len(signups)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", required=True, type=Path, help="a checkout of the other revision")
    parser.add_argument("--signups", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    if not (options.baseline / "idverify" / "__init__.py").exists():
        print(f"cpu_per_signup: {options.baseline} holds no idverify tree", file=sys.stderr)
        return 2
    sources = {"baseline": options.baseline.resolve(), "this": None}
    with tempfile.TemporaryDirectory(prefix="idverify-cpu-") as scratch:

        def measure(turn: int, name: str) -> float:
            signups = range(turn * 100_000, turn * 100_000 + options.signups)
            return one_round(Path(scratch) / f"{name}-{turn}", sources[name], signups)

        figures = side_by_side(options.rounds, ("baseline", "this"), measure)
    result = {
        "signups_per_round": options.signups,
        "rounds": options.rounds,
        "baseline_ms_per_signup": [round(v, 2) for v in figures["baseline"]],
        "this_ms_per_signup": [round(v, 2) for v in figures["this"]],
        **ratio_spread("ratio", figures["this"], figures["baseline"]),
    }
    print_figures(result, as_json=options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Server CPU of CheckDisplayName, beside the empty call and GetAccount measured in the same run.

Usage: python bench/display_name.py [--seconds S] [--rounds N] [--organizations N] [--json]

One server (one worker, pinned to a core by the supervisor, its embedded Redis counted with it)
holds ``--organizations`` organizations verified through ``org_registry`` (against the Cloudauth
fake), each with two approved brands. Each round measures, side by side, the server's CPU per
call (from /proc) of:

- the floor: the empty call (Health/Check: no credentials, no work);
- GetAccount, the cheapest authenticated read (one HGETALL), for scale;
- CheckDisplayName over the display names of tests/e2e/display_name_table.py (a realistic mix:
  2 to 24 characters, median 4; every substring of each is hashed and looked up);
- CheckDisplayName of a 64-character name, the longest accepted (2,016 substrings): the bound.

The target is CheckDisplayName's median under 1 ms of server CPU. In-process figures beside
them: the folding (NFKC, OpenCC t2s, category filter) and the hashing of the substrings, per name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stdnum.cn import uscc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from idverify.domain.consent import text_version_of
from idverify.domain.display_names import fold, substrings
from idverify.flows.display_names import name_hashes
from idverify.privacy.keyring import Keyring
from idverify.testing import ServerProcess
from idverify.v1 import (
    account_pb2,
    account_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    verification_pb2,
    verification_pb2_grpc,
)
from idverify.vendors.fakes import FakeAlibaba, Organization
from tests.e2e.display_name_table import ROWS

CONFIG = """
[rate_limits]
per_principal_per_minute = 1000000000
per_identity_per_hour = 1000000000
display_name_checks_per_principal_per_day = 1000000000

[vendors.alibaba]
kind = "alibaba"
endpoint = "{url}"
secret_id_env = "BENCH_ALI_ID"
secret_key_env = "BENCH_ALI_KEY"

[verifiers.org_registry]
vendor = "alibaba"
"""
REPRESENTATIVE = ("王伟", "44010619900307001X")
LONGEST = "北京字节跳动科技有限公司官方旗舰店" + "星" * 47  # 64 characters once folded
CITIES = ("北京市", "上海市", "深圳市", "杭州市", "成都市", "武汉市", "南京市", "西安市")
TRADES = ("网络科技", "文化传媒", "信息技术", "电子商务", "餐饮管理", "物流", "教育科技", "生物医药")


async def _load(call: Callable[[], Awaitable[Any]], seconds: float, concurrency: int = 16) -> int:
    """Calls as fast as ``concurrency`` workers can for ``seconds``; how many were made."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


class _Target:
    def __init__(self, server: ServerProcess, channel: grpc.aio.Channel, registry: FakeAlibaba) -> None:
        self.server = server
        self.registry = registry
        self.platform = (("authorization", f"Bearer {server.token('platform')}"),)
        self.registrar = (("authorization", f"Bearer {server.token('registrar')}"),)
        self.admin = (("authorization", f"Bearer {server.token('admin')}"),)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.accounts = account_pb2_grpc.AccountServiceStub(channel)
        self.verifications = verification_pb2_grpc.VerificationServiceStub(channel)
        self.admin_stub = admin_pb2_grpc.AdminServiceStub(channel)
        self.names = [display for _, display, _ in ROWS]
        self.accounts_asked = [account for account, _, _ in ROWS]
        self.next = 0

    async def prepare(self, organizations: int) -> None:
        for n in range(organizations):
            body = f"91110000{n:09d}"
            code = body + uscc.calc_check_digit(body)
            name = f"{CITIES[n % len(CITIES)]}星{n:04d}{TRADES[n % len(TRADES)]}有限公司"
            account = f"org-{n}"
            self.registry.organizations[code] = Organization(name, code, *REPRESENTATIVE, "1")
            answer = await self.verifications.StartVerification(
                verification_pb2.StartVerificationRequest(
                    request_id=f"bench-{n}",
                    account_id=account,
                    method_id="org_registry",
                    consents=["identity"],
                    consent_text_versions={"identity": text_version_of("bench consent text")},
                    subject=common_pb2.Subject(
                        kind=common_pb2.SUBJECT_KIND_ORGANIZATION,
                        name=name,
                        document_type=common_pb2.DOCUMENT_TYPE_CN_USCC,
                        document_number=code,
                        legal_representative_name=REPRESENTATIVE[0],
                    ),
                ),
                metadata=self.registrar,
            )
            if answer.verification.status != verification_pb2.VERIFICATION_STATUS_VERIFIED:
                raise RuntimeError(f"organization {n} was not verified: {answer}")
            await self.admin_stub.SetApprovedNames(
                admin_pb2.SetApprovedNamesRequest(account_id=account, names=[f"星{n:04d}", f"品牌{n:05d}"]),
                metadata=self.admin,
            )
        self.accounts_asked = [f"org-{n % organizations}" for n in range(len(self.names))]
        await asyncio.to_thread(self.server.wait_quiet)

    async def cpu_us_per_call(self, call: Callable[[], Awaitable[Any]], seconds: float) -> float:
        before = self.server.cpu_seconds()
        calls = await _load(call, seconds)
        return (self.server.cpu_seconds() - before) / calls * 1e6

    def empty(self) -> Awaitable[Any]:
        call: Awaitable[Any] = self.health.Check(health_pb2.HealthCheckRequest())
        return call

    def get_account(self) -> Awaitable[Any]:
        return self.accounts.GetAccount(
            account_pb2.GetAccountRequest(account_id="org-0"), metadata=self.platform
        )

    def check_table(self) -> Awaitable[Any]:
        self.next = (self.next + 1) % len(self.names)
        request = account_pb2.CheckDisplayNameRequest(
            account_id=self.accounts_asked[self.next], display_name=self.names[self.next]
        )
        return self.accounts.CheckDisplayName(request, metadata=self.platform)

    def check_longest(self) -> Awaitable[Any]:
        request = account_pb2.CheckDisplayNameRequest(account_id="org-1", display_name=LONGEST)
        return self.accounts.CheckDisplayName(request, metadata=self.platform)


async def _measure(
    server: ServerProcess, registry: FakeAlibaba, organizations: int, seconds: float, rounds: int
) -> dict[str, Any]:
    samples: dict[str, list[float]] = {}
    async with grpc.aio.insecure_channel(server.target) as channel:
        target = _Target(server, channel, registry)
        await target.prepare(organizations)
        for _ in range(rounds):
            empty = await target.cpu_us_per_call(target.empty, seconds)
            read = await target.cpu_us_per_call(target.get_account, seconds)
            table = await target.cpu_us_per_call(target.check_table, seconds)
            longest = await target.cpu_us_per_call(target.check_longest, seconds)
            for name, value in (
                ("empty_call_cpu_us", empty),
                ("get_account_cpu_us", read),
                ("check_display_name_cpu_us", table),
                ("check_display_name_64_chars_cpu_us", longest),
                ("check_ratio_to_empty_call", table / empty),
                ("check_ratio_to_get_account", table / read),
                ("check_64_chars_ratio_to_empty_call", longest / empty),
            ):
                samples.setdefault(name, []).append(value)
    return {name: round(statistics.median(values), 3) for name, values in samples.items()}


def measure_in_process(repeat: int = 2000) -> dict[str, float]:
    """CPU microseconds (this process's) per display name for folding, and for hashing its substrings."""
    keyring = Keyring.generate()
    names = [display for _, display, _ in ROWS]
    folded = [fold(name) for name in names]
    began = time.process_time()
    for _ in range(repeat // 10):
        for name in names:
            fold(name)
    fold_us = (time.process_time() - began) / (repeat // 10 * len(names)) * 1e6
    began = time.process_time()
    for _ in range(repeat // 10):
        for text in folded:
            name_hashes(keyring, "default", [text[s:e] for s, e in substrings(text)])
    hash_us = (time.process_time() - began) / (repeat // 10 * len(names)) * 1e6
    longest = fold(LONGEST)
    began = time.process_time()
    for _ in range(repeat // 20):
        name_hashes(keyring, "default", [longest[s:e] for s, e in substrings(longest)])
    longest_us = (time.process_time() - began) / (repeat // 20) * 1e6
    lengths = sorted(len(text) for text in folded)
    return {
        "table_names": len(names),
        "table_median_folded_length": float(statistics.median(lengths)),
        "fold_us": round(fold_us, 2),
        "substring_hashes_us": round(hash_us, 2),
        "substring_hashes_64_chars_us": round(longest_us, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each load")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are kept")
    parser.add_argument("--organizations", type=int, default=200, help="verified organizations indexed")
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"in_process": measure_in_process()}
    with (
        tempfile.TemporaryDirectory(prefix="idverify-display-name-bench-") as scratch,
        FakeAlibaba() as registry,
        ServerProcess(
            Path(scratch),
            config=CONFIG.replace("{url}", registry.url),
            extra_args=["--workers", "1"],
            env={"BENCH_ALI_ID": registry.key_id, "BENCH_ALI_KEY": registry.secret},
        ) as server,
    ):
        figures["grpc"] = asyncio.run(
            _measure(server, registry, args.organizations, args.seconds, args.rounds)
        )
    figures["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }
    figures["rounds"] = args.rounds
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
        return 0
    grpc_figures, local = figures["grpc"], figures["in_process"]
    print(
        f"{args.organizations} organizations indexed, {local['table_names']} display names (median length "
        f"{local['table_median_folded_length']:.0f}), medians of {args.rounds} rounds, "
        f"load {figures['machine']['load_average']}"
    )
    print(f"  empty call           {grpc_figures['empty_call_cpu_us']:8.1f} us server CPU")
    print(f"  GetAccount           {grpc_figures['get_account_cpu_us']:8.1f} us")
    print(
        f"  CheckDisplayName     {grpc_figures['check_display_name_cpu_us']:8.1f} us "
        f"({grpc_figures['check_ratio_to_empty_call']:.2f}x the empty call, "
        f"{grpc_figures['check_ratio_to_get_account']:.2f}x GetAccount; target < 1000 us)"
    )
    print(
        f"  ... of 64 characters {grpc_figures['check_display_name_64_chars_cpu_us']:8.1f} us "
        f"({grpc_figures['check_64_chars_ratio_to_empty_call']:.2f}x the empty call)"
    )
    print(
        f"  in process: folding {local['fold_us']} us, substring hashes {local['substring_hashes_us']} us "
        f"a name ({local['substring_hashes_64_chars_us']} us for 64 characters)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Redis's time a call of the one-node read scripts (``get``, ``reads``, ``ip_labels``), beside a base's.

Usage: python bench/read_scripts.py [--base COMMIT] [--accounts N] [--calls N] [--rounds N] [--json]

Each script's full source at ``--base`` comes from that commit's own ``Scripts`` (its ``idverify``
package from ``git archive``, asked in a process of its own), and this tree's from this one. Both
run in one throwaway redis-server over the same records: accounts bound with a label, and a
finished verification. The figure is Redis's own ``usec_per_call`` of ``EVALSHA`` (``INFO
commandstats``, reset before each side), so the script's time in Redis alone, the sides taken in
turn round after round, the order reversed every other round.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import redis
from report import print_figures, ratio_spread, side_by_side

from idverify.flows.read_accounting import Category, Reader, read_spec
from idverify.store.keys import TenantKeys
from idverify.store.scripts import script_source
from idverify.testing import RedisProcess

SCRIPTS = ("get", "reads", "ip_labels")
_IP_FIELDS = ("ip_display", "ip_display_en", "ip_country", "ip_region", "ip_source", "ip_build", "ip_ms")
_ASK = (
    "import sys\n"
    "from idverify.store.scripts import script_source\n"
    "sys.stdout.write(script_source(sys.argv[1]))"
)
_REPOSITORY = Path(__file__).resolve().parent.parent


def base_sources(commit: str) -> dict[str, str]:
    """Each script's full source as ``commit``'s ``Scripts`` loads it."""
    archive = subprocess.run(
        ["git", "archive", commit, "idverify"], check=True, capture_output=True, cwd=_REPOSITORY
    ).stdout
    with tempfile.TemporaryDirectory() as tree:
        with tarfile.open(fileobj=BytesIO(archive)) as files:
            files.extractall(tree, filter="data")
        environment = {**os.environ, "PYTHONPATH": tree}
        ask = [sys.executable, "-c", _ASK]
        return {
            name: subprocess.run(
                [*ask, name], capture_output=True, text=True, env=environment, check=True
            ).stdout
            for name in SCRIPTS
        }


def calls(tenant: str, accounts: int) -> dict[str, tuple[list[str], list[str]]]:
    """Each script's keys and arguments, over ``accounts`` accounts (the read spec a platform's)."""
    keys = TenantKeys(tenant)
    pseudonyms = [f"{n:032x}" for n in range(accounts)]
    spec = read_spec(Reader("c1", "t/platform/c1", "GetIpLocations"), (Category.VERIFICATION,), 1)
    request = '{"principal": "t/platform/c1", "request_id": "r1", "trace_id": ""}'
    return {
        "get": ([keys.verification("vf-bench"), keys.audit_log()], [request, *spec]),
        "reads": ([keys.reads_open(), *keys.accounts(pseudonyms)], [*spec, "1"]),
        "ip_labels": (keys.accounts(pseudonyms), [*spec, *_IP_FIELDS]),
    }


def main() -> None:
    """Print each script's µs a call in Redis, this tree's and the base's, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", default="HEAD~1")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    options = parser.parse_args()
    sources = {"base": base_sources(options.base), "tree": {name: script_source(name) for name in SCRIPTS}}
    tenant = "bench"
    keys = TenantKeys(tenant)
    figures: dict[str, object] = {
        "base": options.base,
        "accounts": options.accounts,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    with tempfile.TemporaryDirectory() as data, RedisProcess(Path(data)) as server:
        client = redis.Redis.from_url(server.url)
        for n in range(options.accounts):
            client.hset(keys.account(f"{n:032x}"), "ip_wire", b"\x0a\x06wire")
            client.hset(keys.account(f"{n:032x}"), "identity", f"ref:{n}")
        client.hset(
            keys.verification("vf-bench"),
            mapping={"id": "vf-bench", "status": "VERIFIED", "acct": f"{0:032x}", "method": "sms"},
        )
        for name, (script_keys, args) in calls(tenant, options.accounts).items():
            loaded = {side: client.register_script(sources[side][name]) for side in sources}

            def measure(
                _: int, side: str, script_keys: list[str] = script_keys, args: list[str] = args
            ) -> float:
                client.config_resetstat()
                for _ in range(options.calls):
                    loaded[side](keys=script_keys, args=args)  # noqa: B023 - run before the loop moves on
                return float(client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])

            rounds = side_by_side(options.rounds, ["base", "tree"], measure, alternate=True)
            figures[f"{name}_base_us"] = round(statistics.median(rounds["base"]), 1)
            figures[f"{name}_tree_us"] = round(statistics.median(rounds["tree"]), 1)
            figures |= ratio_spread(f"{name}_ratio", rounds["tree"], rounds["base"])
        client.close()
    print_figures(figures, as_json=options.json)


if __name__ == "__main__":
    main()

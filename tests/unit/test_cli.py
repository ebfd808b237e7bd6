"""The ``idverify`` command line as a person meets it: version, help, option order, bad input."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from idverify.cli.app import COMMANDS, _client_table, build_parser
from idverify.cli.client_options import is_loopback
from idverify.v1 import admin_pb2

REPO = Path(__file__).resolve().parents[2]


def idverify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command in a process of its own, with no IDVERIFY_* setting of the test's."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "idverify", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
        check=False,
    )


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every subcommand's parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from parsers(child)


def test_version_is_the_packages() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    done = idverify("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"idverify {project['version']}\n"


def test_every_option_and_argument_has_help() -> None:
    """Walks every subcommand of the complete parser: no option without a help text."""
    missing = [
        f"{parser.prog} {action.option_strings or action.dest}"
        for parser in parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not (action.help or "").strip()
    ]
    assert missing == []


def test_commands_listed_without_import_carry_their_modules_help() -> None:
    """``idverify --help`` shows COMMANDS' help without importing them: it must be theirs."""
    (full,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    shown = {choice.dest: choice.help for choice in full._choices_actions}
    assert {name: shown[name] for name in COMMANDS} == {
        name: help_text for name, (_, _, help_text) in COMMANDS.items()
    }


def test_help_lists_every_command() -> None:
    done = idverify("--help")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    listed = {line.split()[0] for line in lines if line.startswith("    ") and line[4] != " "}
    assert listed == set(COMMANDS)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            ["clients", "--server", "h:1", "--data-dir", "d", "list"],
            ["clients", "list", "--server", "h:1", "--data-dir", "d"],
        ),
        (
            ["clients", "--tls-ca", "ca.pem", "revoke", "c1"],
            ["clients", "revoke", "c1", "--tls-ca", "ca.pem"],
        ),
        (["keys", "--data-dir", "d", "status"], ["keys", "status", "--data-dir", "d"]),
        (
            ["erasure", "--redis-url", "redis://r", "status"],
            ["erasure", "status", "--redis-url", "redis://r"],
        ),
        (["tenants", "--data-dir", "d", "status"], ["tenants", "status", "--data-dir", "d"]),
        (
            ["audit", "--token", "t", "export", "--out", "-"],
            ["audit", "export", "--out", "-", "--token", "t"],
        ),
    ],
)
def test_options_are_accepted_after_the_subcommand(before: list[str], after: list[str]) -> None:
    parser = build_parser()
    assert vars(parser.parse_args(before)) == vars(parser.parse_args(after))


def test_an_option_after_the_subcommand_wins_and_one_left_out_keeps_the_groups() -> None:
    parser = build_parser()
    both = parser.parse_args(["clients", "--server", "before:1", "list", "--server", "after:2"])
    assert both.server == "after:2"
    kept = parser.parse_args(["clients", "--token", "t", "list", "--tenant", "x"])
    assert (kept.token, kept.tenant, kept.data_dir) == ("t", "x", None)


def test_the_parser_of_one_command_is_the_complete_ones() -> None:
    """main() builds only the command's module; what it parses is what the complete parser does."""
    for argv in (
        ["geo", "lookup", "--json", "1.1.1.1"],
        ["keys", "status", "--data-dir", "d"],
        ["erasure", "status", "--data-dir", "d"],
        ["tenants", "status"],
    ):
        assert vars(build_parser(argv[0]).parse_args(argv)) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_alone_has_every_option_of_the_complete_parser(name: str) -> None:
    """Also a command that shares its module with another (erasure after keys)."""

    def options(parser: argparse.ArgumentParser) -> set[str]:
        return {
            f"{child.prog} {string}"
            for child in parsers(parser)
            if child.prog.split()[1:2] == [name]
            for string in child._option_string_actions
        }

    alone = options(build_parser(name))
    assert alone
    assert alone == options(build_parser())


def test_geo_lookup_and_version_leave_redis_grpc_and_the_server_unimported(tmp_path: Path) -> None:
    """The CLI's start time: a command imports its own module only."""
    code = (
        "import sys; from idverify.cli import main\n"
        "for argv in (['--version'], ['geo', 'lookup', '8.8.8.8']):\n"
        "    try: main(argv)\n"
        "    except SystemExit: pass\n"
        "print(sorted(m for m in ('redis', 'grpc', 'idverify.server', 'idverify.cli.audit',"
        " 'idverify.store.connection') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
        check=False,
    )
    assert "8.8.8.8\t美国" in done.stdout
    assert done.stdout.splitlines()[-1] == "[]", done.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["nosuch"], "invalid choice: 'nosuch'"),
        (["clients", "lst"], "invalid choice: 'lst'"),
        (["serve", "--workers", "two"], "--workers: invalid int value: 'two'"),
        (["serve", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["health", "--timeout", "soon"], "--timeout: invalid float value"),
        (["clients", "create"], "--role"),
        (["geo", "lookup"], "IP"),
        (["clients", "create", "--role", "king"], "invalid choice: 'king'"),
    ],
)
def test_bad_flags_get_one_line(args: list[str], named: str) -> None:
    done = idverify(*args)
    assert done.returncode == 2
    assert named in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "--help" in done.stderr


def test_negative_workers_are_refused_in_one_line(tmp_path: Path) -> None:
    done = idverify("serve", "--dev", "--workers", "-1", "--data-dir", str(tmp_path / "d"))
    assert done.returncode == 2
    assert done.stderr == "idverify: configuration error: workers: 0 (one per available core) or more\n"
    assert not (tmp_path / "d").exists()


def test_workers_zero_is_documented_as_one_per_core() -> None:
    """--workers 0 is accepted: the config file's and IDVERIFY_WORKERS' "one per core", said in the help."""
    done = idverify("serve", "--help")
    assert "0 or unset: one per available" in " ".join(done.stdout.split())


class TestAdminToken:
    def test_no_token_names_the_file_it_looked_for(self, tmp_path: Path) -> None:
        for args, env in (
            (["clients", "list", "--data-dir", str(tmp_path)], {}),
            (["clients", "list"], {"IDVERIFY_DATA_DIR": str(tmp_path)}),
        ):
            done = idverify(*args, env=env)
            assert done.returncode == 2
            assert done.stderr.startswith("idverify: no admin token: give --token or IDVERIFY_TOKEN")
            assert f"(no {tmp_path / 'bootstrap-token'})" in done.stderr
            assert len(done.stderr.splitlines()) == 1

    def test_the_default_data_directory_is_named_absolute(self, tmp_path: Path) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "idverify", "clients", "list"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            # This checkout's package, not whichever one the venv installed.
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")},
                "PYTHONPATH": str(REPO),
            },
            check=False,
        )
        assert f"(no {tmp_path / 'idverify-data' / 'bootstrap-token'})" in done.stderr

    def test_an_empty_or_unreadable_file_is_named(self, tmp_path: Path) -> None:
        (tmp_path / "bootstrap-token").write_text("\n", encoding="utf-8")
        done = idverify("clients", "list", "--data-dir", str(tmp_path))
        assert done.stderr == f"idverify: the bootstrap token file {tmp_path / 'bootstrap-token'} is empty\n"
        (tmp_path / "bootstrap-token").unlink()
        (tmp_path / "bootstrap-token").mkdir()
        done = idverify("clients", "list", "--data-dir", str(tmp_path))
        assert done.returncode == 2
        assert done.stderr.startswith(
            f"idverify: cannot read the bootstrap token {tmp_path / 'bootstrap-token'}"
        )


class TestTlsOptions:
    @pytest.mark.parametrize("command", [["clients", "list"], ["audit", "export", "--out", "-"]])
    def test_unreadable_certificate_files_are_named(self, tmp_path: Path, command: list[str]) -> None:
        missing = tmp_path / "ca.pem"
        done = idverify(*command, "--token", "t", "--tls-ca", str(missing))
        assert done.returncode == 2
        assert done.stderr.endswith(f"--tls-ca: cannot read {missing}: No such file or directory\n")
        assert len(done.stderr.splitlines()) == 1

    def test_half_a_client_certificate_is_refused(self, tmp_path: Path) -> None:
        ca = tmp_path / "ca.pem"
        ca.write_text("x", encoding="utf-8")
        done = idverify("clients", "list", "--token", "t", "--tls-ca", str(ca), "--tls-cert", str(ca))
        assert done.stderr == "idverify: --tls-cert and --tls-key: give both (mutual TLS) or neither\n"
        done = idverify("clients", "list", "--token", "t", "--tls-server-name", "x")
        assert done.stderr == "idverify: --tls-cert and --tls-server-name need --tls-ca (TLS)\n"


def test_clients_list_shows_what_a_server_sent_as_one_line_each() -> None:
    """A hostile server (or a plaintext path) cannot forge rows or drive the terminal."""
    made = Timestamp(seconds=1_796_000_000)
    forged = "x\nc9  t  operator"
    clients = [
        admin_pb2.Client(client_id="c2", tenant="t", role="admin", description=forged, created_at=made),
        admin_pb2.Client(
            client_id="c1", tenant="t", role="platform", description="\x1b[2Jgone", revoked=True
        ),
    ]
    lines = _client_table(clients).splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["CLIENT", "ID", "TENANT", "ROLE", "STATE", "CREATED", "(UTC)", "DESCRIPTION"]
    assert lines[1].split()[:5] == ["c1", "t", "platform", "revoked", "-"]  # no creation time: first
    assert lines[1].endswith("\\x1b[2Jgone")
    assert lines[2].split()[:6] == ["c2", "t", "admin", "active", "2026-11-30", "00:53:20"]
    assert lines[2].endswith("x\\nc9  t  operator")


class TestTokenInTheClear:
    """A leaked token is a bearer's: the CLI never sends one unencrypted off this host unasked."""

    @pytest.mark.parametrize(
        ("server", "loopback"),
        [
            ("127.0.0.1:50051", True),
            ("127.9.9.9:1", True),
            ("localhost:50051", True),
            ("[::1]:50051", True),
            ("::1", True),
            ("unix:/run/idverify.sock", True),
            ("10.0.0.5:50051", False),
            ("[2001:db8::1]:50051", False),
            ("idverify.example:50051", False),
            ("localhost.attacker.example:50051", False),
            ("dns:///localhost:50051", False),
        ],
    )
    def test_only_what_cannot_leave_the_machine_is_loopback(self, server: str, loopback: bool) -> None:
        assert is_loopback(server) is loopback

    def test_a_token_to_another_host_without_tls_is_refused_in_one_line(self) -> None:
        done = idverify("clients", "list", "--token", "t", "--server", "idverify.invalid:50051")
        assert done.returncode == 2
        assert done.stderr == (
            "idverify: --server idverify.invalid:50051: the token would cross the network in the clear; "
            "give --tls-ca, or --plaintext if the network between is trusted\n"
        )

    def test_plaintext_says_the_network_is_trusted(self) -> None:
        """With --plaintext the command connects (here: to nothing) instead of refusing."""
        done = idverify(
            "clients", "list", "--token", "t", "--server", "idverify.invalid:50051", "--plaintext"
        )
        assert done.returncode != 0
        assert "in the clear" not in done.stderr

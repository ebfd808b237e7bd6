"""The ``idverify geo`` command line: ``geo lookup IP...`` and ``geo info``.

``idverify.cli.app`` calls ``add_geo_commands``; each handler returns the process exit code.
``lookup`` asks the files' readers directly (``idverify.geo.direct``): a server's range tables
take seconds to build and pay off only over many lookups. The bundled database's warning that it
is old is printed once per user and database file, not on every call: a stamp in the user's cache
directory (``$XDG_CACHE_HOME/idverify``, else ``~/.cache/idverify``) records that it was shown.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from idverify.domain.errors import InvalidArgument
from idverify.geo.database import DEFAULT_DATABASE_WARNING, KINDS, default_database_path
from idverify.geo.direct import DirectLookups
from idverify.geo.location import IpLocation
from idverify.geo.provider import DatabaseInfo, GeoDatabaseError

if TYPE_CHECKING:
    from idverify.geo.resolver import GeoResolver

__all__ = ["add_geo_commands"]

# sysexits.h: EX_USAGE for a bad address, EX_DATAERR-like for a bad database.
_EXIT_BAD_ADDRESS = 64
_EXIT_BAD_DATABASE = 65


def add_geo_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``geo lookup`` and ``geo info`` on the ``idverify`` command's subparsers.

    Each leaf parser sets ``handler``: a function of the parsed arguments that returns the
    exit code.
    """
    geo = subparsers.add_parser("geo", help="look up IP locations and inspect the IP database")
    commands = geo.add_subparsers(dest="geo_command", required=True, metavar="COMMAND")

    lookup = commands.add_parser("lookup", help="print the location label of each address")
    lookup.add_argument("ips", nargs="+", metavar="IP", help="IPv4 or IPv6 address")
    lookup.add_argument("--json", action="store_true", help="print one JSON object per line")
    _add_database_options(lookup)
    lookup.set_defaults(handler=run_lookup)

    info = commands.add_parser("info", help="print which IP database is loaded")
    info.add_argument("--json", action="store_true", help="print one JSON object per database")
    _add_database_options(info)
    info.set_defaults(handler=run_info)


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="an .mmdb or .xdb file; repeat for separate IPv4 and IPv6 files "
        "(default: the bundled GeoLite2 City)",
    )
    parser.add_argument(
        "--type", choices=KINDS, default=None, help="the file type (default: from its contents)"
    )


def run_lookup(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``idverify geo lookup``: one line per address, in the order given.

    Returns:
        0 when every address was answered, 64 if one is malformed, 65 if the database is unusable.
    """
    out = out or sys.stdout
    try:
        lookups = DirectLookups(_database_paths(args), kind=args.type)
    except GeoDatabaseError as error:
        _print_error(str(error))
        return _EXIT_BAD_DATABASE
    status = 0
    try:
        for ip in args.ips:
            try:
                location = lookups.lookup(ip)
            except InvalidArgument as error:
                _print_error(f"{ip}: {error.message}")
                status = _EXIT_BAD_ADDRESS
                continue
            if args.json:
                out.write(json.dumps({"ip": ip, **_location_fields(location)}, ensure_ascii=False) + "\n")
            else:
                fields = _location_fields(location)
                out.write("\t".join([ip, *(str(value or "-") for value in fields.values())]) + "\n")
    except GeoDatabaseError as error:
        _print_error(str(error))
        return _EXIT_BAD_DATABASE
    finally:
        lookups.close()
    return status


def run_info(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``idverify geo info``: type, path, build date and record count of each loaded database.

    Returns:
        0, or 65 if the database is unusable.
    """
    out = out or sys.stdout
    resolver = _open(args)
    if resolver is None:
        return _EXIT_BAD_DATABASE
    for info in resolver.info():
        fields = _info_fields(info)
        if args.json:
            out.write(json.dumps(fields, ensure_ascii=False) + "\n")
        else:
            for name, value in fields.items():
                out.write(f"{name}: {value}\n")
    return 0


def _open(args: argparse.Namespace) -> GeoResolver | None:
    from idverify.geo.resolver import GeoResolver  # noqa: PLC0415 - `geo lookup` builds no tables

    try:
        return GeoResolver(_database_paths(args), kind=args.type, check_interval=0)
    except GeoDatabaseError as error:
        _print_error(str(error))
        return None


def _database_paths(args: argparse.Namespace) -> list[Path]:
    """The files given, else the bundled one (with its warning, once).

    Raises:
        GeoDatabaseError: none given and the bundled one is not installed.
    """
    if args.database:
        return list(args.database)
    path = default_database_path()
    _warn_once(path, DEFAULT_DATABASE_WARNING)
    return [path]


def _warn_once(path: Path, warning: str) -> None:
    """Prints ``warning`` about a database file unless this user was shown it for this file.

    Where no stamp can be written (no home directory, a read-only one), it is printed each time.
    """
    try:
        status = path.stat()
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "idverify"
    except (OSError, RuntimeError):
        cache = None
    if cache is not None:
        version = f"{path.absolute()}\0{status.st_size}\0{status.st_mtime_ns}"
        stamp = cache / f"geo-warned-{hashlib.sha256(version.encode()).hexdigest()[:16]}"
        if stamp.exists():
            return
        try:
            cache.mkdir(parents=True, exist_ok=True)
            stamp.touch()
        except OSError:
            pass
        else:
            warning += f" (shown once; {stamp} records it)"
    sys.stderr.write(f"idverify geo: warning: {warning}\n")


def _location_fields(location: IpLocation) -> dict[str, Any]:
    return {
        "display": location.display,
        "display_en": location.display_en,
        "country_code": location.country_code,
        "region_code": location.region_code,
        "source": location.source,
        "source_build_date": location.source_build_date.isoformat() if location.source_build_date else "",
    }


def _info_fields(info: DatabaseInfo) -> dict[str, Any]:
    return {
        "type": info.type,
        "path": str(info.path) if info.path else "",
        "name": info.name,
        "build_date": info.build_date.isoformat() if info.build_date else "",
        "record_count": info.record_count,
        "ip_versions": sorted(info.ip_versions),
    }


def _print_error(message: str) -> None:
    sys.stderr.write(f"idverify geo: {message}\n")

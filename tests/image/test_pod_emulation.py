"""The image's install run as the image runs it, served as the chart's pod runs it.

No container engine runs here, so this test emulates one (``tests/image/pod.py`` says exactly
how and what it cannot emulate): the Dockerfile's build-stage commands run as the non-root user
into a fresh virtual environment at ``/opt/idverify`` (wheels from a wheelhouse downloaded once
per lock into ``.cache/tools``), which is then made read-only; the rendered chart's container then
runs in a mount and network namespace with the host's root filesystem read-only and only the
chart's writable paths (``/var/lib/idverify``, ``/tmp``) writable, as the pod's user with no
capabilities. ``idverify serve`` must answer and ``idverify health`` (the image's HEALTHCHECK)
must report SERVING; nothing may be written outside the chart's writable paths.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from idverify.testing import redis_server_binary
from tests.helm.conftest import Helm
from tests.helm.tools import CACHE

from .image import ROOT, Image, load_image
from .pod import INSTALL, Pod, ensure_wheelhouse, install_like_the_image

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SERVING_TIMEOUT_SECONDS = 180.0  # a cold start builds the IP tables; 8 people share 2 cores

if os.geteuid() != 0:  # pragma: no cover - CI and the developers' machines run as root
    pytest.skip(
        "EMULATION NOT RUN: mount and network namespaces and setpriv need root (CI runs as root)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def pod(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """The image installed and the chart's pod started, Redis on the pod's loopback.

    With the defaults values plus the SMS gateway's secret, which a real install passes through
    extraEnv.
    """
    image: Image = load_image()
    docs = helm.template(
        ["defaults"],
        sets=[
            "externalRedis.url=redis://127.0.0.1:6379/0",
            "extraEnv[0].name=SMS_GATEWAY_SECRET",
            "extraEnv[0].value=not-a-real-gateway-secret-but-long-enough",
        ],
    )
    scratch = tmp_path_factory.mktemp("pod")
    uid, gid = (int(part) for part in image.user)
    started = time.monotonic()
    wheelhouse = ensure_wheelhouse(CACHE)
    downloaded = time.monotonic()
    install = install_like_the_image(image, scratch, wheelhouse, uid, gid)
    # The report's figures: how long the wheelhouse (cached after the first run) and the install took.
    print(f"\nwheelhouse {downloaded - started:.1f} s, install {time.monotonic() - downloaded:.1f} s")  # noqa: T201
    running = Pod(image, docs, install, scratch, redis_server_binary(prefer_system=True), time.time())
    running.start()
    try:
        running.wait_pids()
        yield running
    finally:
        running.stop()


def wait_serving(pod: Pod) -> str:
    """Runs the image's HEALTHCHECK command in the pod until it exits 0; its output."""
    _, command = pod.image.healthcheck
    deadline = time.monotonic() + SERVING_TIMEOUT_SECONDS
    while True:
        done = pod.exec(*command)
        if done.returncode == 0:
            return done.stdout
        assert pod.process is not None
        if pod.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"not SERVING ({done.stdout}{done.stderr}); pod log:\n{pod.log_text()[-4000:]}")
        time.sleep(1)


def test_the_server_answers_health_and_an_admin_call(pod: Pod) -> None:
    """The HEALTHCHECK says SERVING, and an admin call through Redis answers.

    The admin client is created with the bootstrap token read from the data directory, as
    `kubectl exec` would.
    """
    assert wait_serving(pod).strip() == "SERVING"
    print(f"SERVING {time.monotonic() - pod.started:.1f} s after the pod started")  # noqa: T201
    created = pod.exec("idverify", "clients", "--data-dir", pod.environment()["IDVERIFY_DATA_DIR"],
                       "create", "--role", "admin", "--description", "from inside the pod")  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    assert re.search(r"^token \(shown once\): \S+", created.stdout, re.MULTILINE)


def test_the_bundled_ip_database_is_in_the_install(pod: Pod) -> None:
    """Without geoip.* the image answers from the GeoLite2 City file its lock ships, in the install."""
    info = pod.exec("idverify", "geo", "info", "--json")
    assert info.returncode == 0, info.stderr
    (database,) = (json.loads(line) for line in info.stdout.splitlines())
    assert database["name"] == "GeoLite2-City"
    assert database["path"].startswith(f"{INSTALL}/lib/")
    assert database["record_count"] > 1_000_000


def test_the_consoles_assets_are_in_the_install(pod: Pod) -> None:
    """Every file the auditor's console serves ships in the installed package, not only the checkout.

    The console sends nothing from elsewhere, so a page or script left out of the package data
    would be a console that cannot load once the chart switches it on.
    """
    shipped = sorted(path.name for path in (ROOT / "idverify" / "console" / "static").iterdir())
    assert {"index.html", "signin.html", "console.js", "merkle.js", "console.css"} <= set(shipped)
    script = (
        "import pathlib, idverify.console as c; "
        "print(*sorted(p.name for p in (pathlib.Path(c.__file__).parent / 'static').iterdir()))"
    )
    listing = pod.exec(f"{INSTALL}/bin/python", "-c", script)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split() == shipped


def test_the_images_own_default_command_refuses_to_run_without_a_real_sms_sender(pod: Pod) -> None:
    """A careless `docker run idverify` (no settings at all) gets one line and exit 2.

    Not a server that writes every SMS code to its log.
    """
    done = pod.exec(*pod.image.entrypoint, *pod.image.cmd)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("idverify: configuration error:")
    assert "production mode refuses this" in line


def test_it_runs_as_the_pods_user_without_privileges(pod: Pod) -> None:
    """The server's process: the chart's user, group and fsGroup, no capabilities, no_new_privs."""
    wait_serving(pod)
    status = Path(f"/proc/{pod.pids['server']}/status").read_text(encoding="utf-8")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    uid, gid, fs_group = pod.ids
    assert fields["Uid"].split() == [str(uid)] * 4
    assert fields["Gid"].split() == [str(gid)] * 4
    assert fields["Groups"].split() == [str(fs_group)]
    assert int(fields["CapEff"], 16) == int(fields["CapPrm"], 16) == int(fields["CapBnd"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"


@pytest.mark.parametrize(
    "path",
    [
        f"{INSTALL}/bin/idverify",  # the entry point
        f"{INSTALL}/lib/written-by-the-server",  # a new file in the install
        "/etc/idverify/idverify.toml",  # the chart's read-only ConfigMap
        "/var/run/secrets/idverify/keyring/keyring.json",  # the keyring Secret
        "/usr/written-by-the-server",  # the root filesystem
    ],
)
def test_a_compromised_server_cannot_change_the_image_or_its_settings(pod: Pod, path: str) -> None:
    """Code running as the server cannot rewrite the install, the settings or the keys.

    Nor leave anything on the root filesystem: a hostile dependency, an exploited parser.
    """
    wait_serving(pod)
    done = pod.exec("sh", "-c", f"echo tampered >> {path}")
    assert done.returncode != 0
    assert re.search(r"Read-only file system|Permission denied", done.stderr), done.stderr


def written_files(pod: Pod) -> dict[str, int]:
    """The files in the pod's writable paths, by path, with their sizes."""
    paths = sorted(pod.image.volumes)
    listing = pod.exec("find", *paths, "-xdev", "-type", "f", "-printf", "%s %p\n", as_root=True)
    assert listing.returncode == 0, listing.stderr
    return {line.split(" ", 1)[1]: int(line.split(" ", 1)[0]) for line in listing.stdout.splitlines()}


def test_the_server_writes_only_in_the_writable_paths(pod: Pod) -> None:
    """Only the data directory and /tmp hold anything new once the IP tables are built.

    With room left in the chart's data volume for a reload's second table file.
    """
    wait_serving(pod)
    data = pod.environment()["IDVERIFY_DATA_DIR"]
    deadline = time.monotonic() + SERVING_TIMEOUT_SECONDS
    files = written_files(pod)
    while not any(name.endswith(".tables") for name in files):
        assert time.monotonic() < deadline, f"no IP tables built: {files}\n{pod.log_text()[-3000:]}"
        time.sleep(1)
        files = written_files(pod)
    print("written:", files)  # noqa: T201 - the report (sizes)
    assert f"{data}/bootstrap-token" in files
    (tables,) = [name for name in files if name.endswith(".tables")]
    assert tables.startswith(f"{data}/geo-tables/")
    (volume,) = [v for v in pod.spec["volumes"] if v["name"] == "data"]
    limit = int(volume["emptyDir"]["sizeLimit"].removesuffix("Mi")) * 2**20
    assert sum(files.values()) + files[tables] < limit
    # The install is as the build left it: no bytecode or cache written at run time.
    changed = [path for path in pod.install.rglob("*") if path.lstat().st_mtime > pod.installed_at]
    assert changed == []
    log = pod.log_text()
    assert "Traceback" not in log
    assert "Read-only file system" not in log


def test_a_sigterm_drains_and_exits_cleanly(pod: Pod) -> None:
    """Last: the kubelet's SIGTERM stops the server within the pod's grace period, exit 0."""
    wait_serving(pod)
    started = time.monotonic()
    status = pod.stop(timeout=pod.spec["terminationGracePeriodSeconds"])
    assert status == 0, pod.log_text()[-3000:]
    assert time.monotonic() - started < pod.spec["terminationGracePeriodSeconds"]

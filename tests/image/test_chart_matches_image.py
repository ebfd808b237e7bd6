"""The chart's container spec against the Dockerfile: user, ports, command, probes, writable paths.

Rendered with every values file of tests/helm/values (plaintext and TLS probes, metrics on and
off, the trial and production Redis setups): a chart change that the image cannot run, or an
image change that the chart does not follow, fails here.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
import yaml

from tests.helm.conftest import CHART, VALUES_FILES, Helm, one

from .image import ROOT, Image, load_image


@pytest.fixture(scope="module")
def image() -> Image:
    return load_image()


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (main,) = _pod(docs)["containers"]
    return main


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return tomllib.loads(one(docs, "ConfigMap")["data"]["idverify.toml"])


def writable_paths(docs: list[dict[str, Any]]) -> set[str]:
    """Where the chart lets the container write: its read-write mounts (the root is read-only)."""
    main = _container(docs)
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    return {mount["mountPath"] for mount in main["volumeMounts"] if not mount.get("readOnly")}


def _under(path: str, roots: set[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


@pytest.mark.parametrize("values", VALUES_FILES)
class TestTheChartRunsTheImage:
    def test_as_the_images_user(self, helm: Helm, image: Image, values: str) -> None:
        pod = _pod(helm.template([values]))
        user, group = image.user
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == int(user)
        assert pod["securityContext"]["runAsGroup"] == int(group)
        # emptyDirs and Secret files are group-owned by fsGroup: the image's group must read them.
        assert pod["securityContext"]["fsGroup"] == int(group)

    def test_with_the_images_entry_point(self, helm: Helm, image: Image, values: str) -> None:
        """No `command` (the image's ENTRYPOINT runs), and args that start as the image's CMD."""
        main = _container(helm.template([values]))
        assert "command" not in main
        assert main["args"][: len(image.cmd)] == image.cmd
        assert image.entrypoint == ["idverify"]

    def test_on_the_exposed_port(self, helm: Helm, image: Image, values: str) -> None:
        docs = helm.template([values])
        main = _container(docs)
        ports = {port["name"]: port["containerPort"] for port in main["ports"]}
        listen = _config(docs)["listen"]
        assert (
            ports["grpc"]
            == int(listen.rpartition(":")[2])
            == int(image.env["IDVERIFY_LISTEN"].rpartition(":")[2])
        )
        assert ports["grpc"] in image.exposed_ports
        # The console, where the values switch it on, on the port the image exposes for it.
        if "console" in ports:
            assert ports["console"] in image.exposed_ports - {ports["grpc"]}
        # Every interface of the pod: the Service and the kubelet's probes come from outside it.
        all_interfaces = "0.0.0.0"  # noqa: S104
        assert listen.rpartition(":")[0] == image.env["IDVERIFY_LISTEN"].rpartition(":")[0] == all_interfaces
        assert main["livenessProbe"]["tcpSocket"]["port"] == "grpc"

    def test_probing_what_the_images_health_check_probes(self, helm: Helm, image: Image, values: str) -> None:
        """The kubelet's gRPC probe on the port, or over TLS the image's `idverify health` command."""
        main = _container(helm.template([values]))
        options, health = image.healthcheck
        for name in ("startupProbe", "readinessProbe"):
            probe = main[name]
            if "grpc" in probe:
                assert probe["grpc"]["port"] == int(image.env["IDVERIFY_LISTEN"].rpartition(":")[2])
                assert probe["grpc"]["service"] == ""
            else:
                command = probe["exec"]["command"]
                # Run without a shell: the first word must be found on the image's PATH, as the
                # health check's is.
                assert command[:4] == health[:4], command
            assert f"{probe['timeoutSeconds']}s" == options["timeout"]
        startup = main["startupProbe"]
        assert f"{startup['periodSeconds'] * startup['failureThreshold']}s" == options["start-period"]

    def test_writing_only_where_the_image_has_volumes(self, helm: Helm, image: Image, values: str) -> None:
        """The chart's writable mounts are the image's VOLUMEs, and the audit tiles' when enabled.

        The server's data, home and working directory lie in the VOLUMEs; the tiles' volume is
        the chart's own, mounted where the settings' audit_tiles_dir points.
        """
        docs = helm.template([values])
        writable = writable_paths(docs)
        tiles = {_config(docs)["audit_tiles_dir"]} if "audit_tiles_dir" in _config(docs) else set()
        assert writable == image.volumes | tiles
        assert _config(docs)["data_dir"] == image.env["IDVERIFY_DATA_DIR"]
        assert _under(image.env["IDVERIFY_DATA_DIR"], writable)
        assert _under(image.env["HOME"], writable)
        assert _under(image.workdir, writable)
        read_only = {m["mountPath"] for m in _container(docs)["volumeMounts"] if m.get("readOnly")}
        assert not any(_under(path, image.volumes) for path in read_only), read_only
        # The image's code lies outside every mount (a mount would hide it).
        assert not any(_under("/opt/idverify", {m["mountPath"]}) for m in _container(docs)["volumeMounts"])

    def test_with_the_images_environment(self, helm: Helm, image: Image, values: str) -> None:
        """The chart's variables do not contradict the image's.

        E.g. a Python that would write bytecode into the read-only install, a PATH without it.
        """
        env = {item["name"]: item.get("value") for item in _container(helm.template([values]))["env"]}
        for name, value in env.items():
            if name in image.env:
                assert value == image.env[name], name
        assert "PATH" not in env
        assert image.env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_the_default_tag_is_the_version_the_image_builds() -> None:
    """Without image.tag the chart pulls its appVersion: the version pyproject.toml builds."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert chart["appVersion"] == project["version"]

"""The Helm chart: lint, render with several values files, Kubernetes schemas, posture, settings."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from idverify.config import development_mode_refusals, load_settings
from idverify.privacy.keyring import load_keyring
from idverify.store.topology import parse_redis_url

from .conftest import CHART, NAMESPACE, RELEASE, VALUES, VALUES_FILES, Helm, by_kind, one

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas known.
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
# Custom resources have no schema in kubernetes-validate; their shape is checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor"}
FULLNAME = f"{RELEASE}-idverify"


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (main,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return main


def config_of(docs: list[dict[str, Any]], tmp_path: Path) -> Any:
    """The rendered idverify.toml loaded by idverify's own settings loader."""
    text = one(docs, "ConfigMap")["data"]["idverify.toml"]
    path = tmp_path / "idverify.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ={})


def pod_volumes(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Deployment's pod volumes, by name."""
    return {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}


def mounts(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The container's volume mounts, by volume name."""
    return {m["name"]: m for m in container(docs)["volumeMounts"]}


def secret_value(docs: list[dict[str, Any]], name: str, key: str) -> bytes:
    secret = next(d for d in by_kind(docs, "Secret") if d["metadata"]["name"] == name)
    return base64.b64decode(secret["data"][key])


class TestLint:
    @pytest.mark.parametrize("values", VALUES_FILES)
    def test_helm_lint_strict_passes(self, helm: Helm, values: str) -> None:
        """`helm lint --strict` finds nothing with each values file."""
        done = helm.run(
            "lint", "--strict", str(helm.chart), "--values", str(VALUES / f"{values}.yaml"), check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def test_the_real_chart_only_misses_its_fetched_dependency(self, helm: Helm) -> None:
        """Linting the chart as shipped warns about nothing but the not-yet-built Redis dependency."""
        done = helm.run("lint", str(CHART), "--values", str(VALUES / "defaults.yaml"), check=False)
        warnings = [line for line in done.stdout.splitlines() if line.startswith(("[WARNING]", "[ERROR]"))]
        assert done.returncode == 0, done.stdout
        assert warnings == [f"[WARNING] {CHART}: chart directory is missing these dependencies: redis"]


class TestRender:
    @pytest.mark.parametrize("values", VALUES_FILES)
    def test_every_manifest_matches_the_kubernetes_schemas(self, helm: Helm, values: str) -> None:
        """Each rendered manifest validates strictly against the oldest and newest supported schemas."""
        docs = helm.template([values])
        assert docs
        for doc in docs:
            if doc["kind"] in CUSTOM_KINDS:
                continue
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{values}: {doc['kind']} {doc['metadata']['name']} on {version}: {exc}")

    def test_the_default_install_has_every_resource(self, helm: Helm) -> None:
        """Deployment, Service, ConfigMap, Secrets, HPA, PDB, NetworkPolicy and ServiceAccount."""
        kinds = sorted(doc["kind"] for doc in helm.template(["defaults"]))
        assert kinds == sorted(
            [
                "ConfigMap",
                "Deployment",
                "HorizontalPodAutoscaler",
                "NetworkPolicy",
                "PodDisruptionBudget",
                "Secret",  # keyring
                "Secret",  # audit signing key
                "Service",
                "ServiceAccount",
            ]
        )

    def test_the_autoscaler_owns_the_replica_count(self, helm: Helm) -> None:
        """With the HPA on, the Deployment leaves replicas alone; without it, replicaCount applies."""
        assert "replicas" not in one(helm.template(["defaults"]), "Deployment")["spec"]
        docs = helm.template(["tls"])
        assert one(docs, "Deployment")["spec"]["replicas"] == 3
        assert not by_kind(docs, "HorizontalPodAutoscaler")

    def test_metrics_get_one_port_per_worker_and_a_service_monitor(self, helm: Helm) -> None:
        """Each worker has its own metrics port, exposed, allowed and scraped with a worker label."""
        docs = helm.template(["cluster"])
        ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
        assert ports == {
            "grpc": 50051,
            "metrics-0": 9464,
            "metrics-1": 9465,
            "metrics-2": 9466,
            "metrics-3": 9467,
        }
        monitor = one(docs, "ServiceMonitor")
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == [f"metrics-{n}" for n in range(4)]
        service_ports = {p["name"] for p in one(docs, "Service")["spec"]["ports"]}
        assert service_ports == set(ports)

    def test_a_headless_service_lets_clients_balance_over_pods(self, helm: Helm) -> None:
        """service.headless renders clusterIP None (gRPC keeps one connection per address)."""
        assert one(helm.template(["cluster"]), "Service")["spec"]["clusterIP"] == "None"

    def test_the_network_policy_admits_named_clients_and_limits_egress(self, helm: Helm) -> None:
        """Ingress from the configured clients only; egress to DNS, Redis and HTTPS."""
        policy = one(helm.template(["cluster"]), "NetworkPolicy")["spec"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        grpc_rule = policy["ingress"][0]
        assert grpc_rule["from"][0]["podSelector"] == {"matchLabels": {"app": "signup"}}
        egress_ports = sorted(p["port"] for rule in policy["egress"] for p in rule["ports"])
        assert egress_ports == [53, 53, 443, 6379, 26379]

    def test_the_console_and_callbacks_get_ports_settings_and_their_own_ingress(
        self, helm: Helm, tmp_path: Path
    ) -> None:
        """Each portal: a named port on the pod and the Service, its listen setting, its peers."""
        docs = helm.template(["console-callbacks"])
        ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
        assert ports == {"grpc": 50051, "console": 50052, "callbacks": 8443}
        assert {p["name"] for p in one(docs, "Service")["spec"]["ports"]} == set(ports)
        settings = config_of(docs, tmp_path)
        assert settings.console_enabled
        assert settings.console.listen == "0.0.0.0:50052"
        assert (settings.callbacks.listen, settings.callbacks.public_url) == (
            "0.0.0.0:8443",
            "https://idv.example.com/callbacks",
        )
        rules = {rule["ports"][0]["port"]: rule for rule in one(docs, "NetworkPolicy")["spec"]["ingress"]}
        compliance = {"kubernetes.io/metadata.name": "compliance"}
        assert rules["console"]["from"] == [{"namespaceSelector": {"matchLabels": compliance}}]
        assert "from" not in rules["callbacks"]  # the vendor calls from outside the cluster

    def test_without_them_no_port_is_opened_and_the_console_is_off(self, helm: Helm, tmp_path: Path) -> None:
        docs = helm.template(["tls"])
        assert {p["name"] for p in container(docs)["ports"]} == {"grpc"}
        rules = one(docs, "NetworkPolicy")["spec"]["ingress"]
        assert [rule["ports"][0]["port"] for rule in rules] == ["grpc"]
        settings = config_of(docs, tmp_path)
        assert not settings.console_enabled
        assert not settings.callbacks_enabled

    def test_the_ip_database_volume_is_mounted_read_only(self, helm: Helm, tmp_path: Path) -> None:
        """Geoip mounts a claim (or any volume) and points geo.database at the file in it."""
        docs = helm.template(["cluster"])
        volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
        assert volumes["geoip"]["persistentVolumeClaim"] == {"claimName": "geoip-current", "readOnly": True}
        assert config_of(docs, tmp_path).geo.database == "/var/lib/idverify-geoip/GeoLite2-City.mmdb"
        csi = {
            v["name"]: v
            for v in one(helm.template(["external-secrets"]), "Deployment")["spec"]["template"]["spec"][
                "volumes"
            ]
        }
        assert csi["geoip"]["csi"]["driver"] == "secrets-store.csi.k8s.io"


class TestAuditTiles:
    def test_the_default_install_writes_no_tiles(self, helm: Helm, tmp_path: Path) -> None:
        """Off by default: no claim, no volume or mount, no audit_tiles_dir, the rolling update."""
        docs = helm.template(["defaults"])
        assert by_kind(docs, "PersistentVolumeClaim") == []
        assert "audit-tiles" not in pod_volumes(docs)
        assert "audit-tiles" not in mounts(docs)
        assert config_of(docs, tmp_path).audit_tiles_dir == ""
        assert one(docs, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"

    def test_a_created_claim_is_mounted_writable_and_named_in_the_settings(
        self, helm: Helm, tmp_path: Path
    ) -> None:
        """Without a claim or volume named, the chart creates a ReadWriteMany claim, kept on uninstall."""
        docs = helm.template(["audit-tiles"])
        claim = one(docs, "PersistentVolumeClaim")
        assert claim["metadata"]["name"] == f"{FULLNAME}-audit-tiles"
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert claim["spec"] == {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "cephfs",
            "resources": {"requests": {"storage": "50Gi"}},
        }
        claimed = pod_volumes(docs)["audit-tiles"]["persistentVolumeClaim"]
        assert claimed == {"claimName": f"{FULLNAME}-audit-tiles"}
        assert mounts(docs)["audit-tiles"] == {"name": "audit-tiles", "mountPath": "/var/lib/idverify-tiles"}
        assert config_of(docs, tmp_path).audit_tiles_dir == "/var/lib/idverify-tiles"
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
        # Shared by every node, so pods keep rolling one at a time.
        assert one(docs, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"

    def test_an_existing_claim_is_mounted_and_none_created(self, helm: Helm, tmp_path: Path) -> None:
        docs = helm.template(
            ["audit-tiles"], ["auditTiles.existingClaim=idverify-tiles", "auditTiles.mountPath=/srv/tiles"]
        )
        assert by_kind(docs, "PersistentVolumeClaim") == []
        assert pod_volumes(docs)["audit-tiles"]["persistentVolumeClaim"] == {"claimName": "idverify-tiles"}
        assert "readOnly" not in mounts(docs)["audit-tiles"]
        assert config_of(docs, tmp_path).audit_tiles_dir == "/srv/tiles"

    def test_any_volume_source_is_mounted_and_none_created(self, helm: Helm) -> None:
        nfs = ["auditTiles.volume.nfs.server=nfs.data.svc", "auditTiles.volume.nfs.path=/exports/tiles"]
        docs = helm.template(["audit-tiles"], nfs)
        assert by_kind(docs, "PersistentVolumeClaim") == []
        assert pod_volumes(docs)["audit-tiles"] == {
            "name": "audit-tiles",
            "nfs": {"server": "nfs.data.svc", "path": "/exports/tiles"},
        }
        assert "readOnly" not in mounts(docs)["audit-tiles"]

    def test_one_pod_may_write_a_read_write_once_claim_replaced_not_rolled(self, helm: Helm) -> None:
        """A claim one node attaches: the old pod stops first, or a surge pod elsewhere waits forever."""
        one_node = ["auditTiles.persistence.accessModes[0]=ReadWriteOnce"]
        docs = helm.template(["audit-tiles", "trial"], one_node)
        assert one(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert one(docs, "Deployment")["spec"]["replicas"] == 1
        assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}

    def test_a_bucket_is_named_in_the_settings_with_its_credentials_as_a_file(
        self, helm: Helm, tmp_path: Path
    ) -> None:
        """No volume: the settings name the bucket, the Secret's credentials file is mounted read-only."""
        docs = helm.template(["audit-bucket"])
        settings = config_of(docs, tmp_path)
        assert (settings.audit_tiles_url, settings.audit_tiles_dir) == ("s3://idverify-audit/prod", "")
        assert settings.audit_tiles_s3_endpoint == "https://minio.storage.svc:9000"
        assert settings.audit_tiles_s3_region == "eu-west-1"
        assert by_kind(docs, "PersistentVolumeClaim") == []
        assert "audit-tiles" not in pod_volumes(docs)
        assert pod_volumes(docs)["audit-tiles-credentials"]["secret"] == {
            "secretName": "idverify-audit-s3",
            "defaultMode": 0o440,
            "items": [{"key": "credentials", "path": "credentials"}],
        }
        assert mounts(docs)["audit-tiles-credentials"]["readOnly"] is True
        container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/etc/idverify-s3/credentials"
        assert not [name for name in env if name in {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}]

    def test_a_bucket_without_a_secret_uses_the_pods_identity(self, helm: Helm) -> None:
        docs = helm.template(["audit-bucket"], ["auditTiles.bucket.existingSecret="])
        assert "audit-tiles-credentials" not in pod_volumes(docs)
        container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        assert "AWS_SHARED_CREDENTIALS_FILE" not in {item["name"] for item in container["env"]}


class TestSecurityPosture:
    @pytest.mark.parametrize("values", VALUES_FILES)
    def test_the_pod_runs_locked_down(self, helm: Helm, values: str) -> None:
        """Non-root, read-only root, no privilege escalation, no capabilities, seccomp, no API token."""
        docs = helm.template([values])
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 10000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert not any(pod.get(host) for host in ("hostNetwork", "hostPID", "hostIPC"))
        assert all("hostPath" not in volume for volume in pod["volumes"])
        main = container(docs)
        assert main["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        }
        assert not main["image"].endswith(":latest")
        secret_mounts = {v["name"] for v in pod["volumes"] if "secret" in v}
        assert all(m.get("readOnly") for m in main["volumeMounts"] if m["name"] in secret_mounts)

    @pytest.mark.parametrize("values", VALUES_FILES)
    def test_resources_probes_and_spread_are_set(self, helm: Helm, values: str) -> None:
        """CPU and memory requests and limits, three probes, spread over zones and nodes, a drain."""
        docs = helm.template([values])
        main = container(docs)
        for bound in ("requests", "limits"):
            assert set(main["resources"][bound]) >= {"cpu", "memory"}
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(main)
        spec = one(docs, "Deployment")["spec"]["template"]["spec"]
        keys = [c["topologyKey"] for c in spec["topologySpreadConstraints"]]
        assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        assert spec["terminationGracePeriodSeconds"] > config_grace(docs)

    def test_readiness_asks_the_grpc_health_service(self, helm: Helm) -> None:
        """Plaintext: the kubelet's gRPC probe; TLS: `idverify health` with the CA (and client cert)."""
        assert container(helm.template(["defaults"]))["readinessProbe"]["grpc"] == {
            "port": 50051,
            "service": "",
        }
        command = container(helm.template(["tls"]))["readinessProbe"]["exec"]["command"]
        assert command[:4] == ["idverify", "health", "--server", "127.0.0.1:50051"]
        mutual = container(helm.template(["external-secrets"]))["readinessProbe"]["exec"]["command"]
        assert "--tls-cert" in mutual

    def test_secrets_are_files_never_in_the_config_map_or_environment(self, helm: Helm) -> None:
        """The Redis password is a mounted Secret file named by IDVERIFY_REDIS_PASSWORD_FILE."""
        docs = helm.template(["cluster"])
        assert redis_password_source(docs) == ("redis-auth", "password")
        assert "password" not in one(docs, "ConfigMap")["data"]["idverify.toml"]
        assert all("valueFrom" not in e for e in container(docs)["env"])


def redis_password_source(docs: list[dict[str, Any]]) -> tuple[str, str]:
    """(Secret, key) of the Redis password file the container is told to read."""
    env = {e["name"]: e.get("value") for e in container(docs)["env"]}
    path = Path(env["IDVERIFY_REDIS_PASSWORD_FILE"])
    mount = next(m for m in container(docs)["volumeMounts"] if m["mountPath"] == str(path.parent))
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == mount["name"])
    (item,) = volume["secret"]["items"]
    assert item["path"] == path.name
    return volume["secret"]["secretName"], item["key"]


def config_grace(docs: list[dict[str, Any]]) -> float:
    text = one(docs, "ConfigMap")["data"]["idverify.toml"]
    return float(re.search(r"grace_seconds = (\d+)", text).group(1))  # type: ignore[union-attr]


class TestSettings:
    @pytest.mark.parametrize("values", VALUES_FILES)
    def test_the_rendered_config_is_valid_for_idverify(self, helm: Helm, values: str, tmp_path: Path) -> None:
        """Idverify's own loader accepts every rendered idverify.toml, and production mode serves it."""
        settings = config_of(helm.template([values]), tmp_path)
        assert not settings.development
        assert development_mode_refusals(settings) == []
        assert settings.data_dir == Path("/var/lib/idverify")
        assert settings.keyring_file.startswith("/var/run/secrets/idverify/keyring/")
        parse_redis_url(settings.redis_url)

    def test_cluster_values_reach_the_settings(self, helm: Helm, tmp_path: Path) -> None:
        """Workers, Redis Cluster URL, user settings and metrics end up in the server's settings."""
        settings = config_of(helm.template(["cluster"]), tmp_path)
        assert settings.workers == 4
        assert parse_redis_url(settings.redis_url).ack.replicas == 1
        assert settings.verification.binding_limit == 3
        assert settings.telemetry.metrics == "prometheus"

    def test_tls_values_reach_the_settings(self, helm: Helm, tmp_path: Path) -> None:
        """TLS paths point into the mounted Secret; mTLS adds the client CA and principals."""
        settings = config_of(helm.template(["external-secrets"]), tmp_path)
        assert settings.tls.cert_file == "/var/run/secrets/idverify/tls/tls.crt"
        assert settings.tls.client_ca_file == "/var/run/secrets/idverify/client-ca/ca.crt"
        assert settings.tls.client_principals["cn:signup-service"] == "default/registrar"
        assert settings.tls.client_principals["uri:spiffe://prod/ns/chat/sa/messaging"] == "default/platform"

    def test_generated_secrets_are_usable(self, helm: Helm) -> None:
        """The generated keyring loads, the audit key is Ed25519, the certificate names the service."""
        docs = helm.template(["tls"])
        keyring = load_keyring(text=secret_value(docs, f"{FULLNAME}-keyring", "keyring.json").decode())
        assert keyring.pepper_current == "p1"
        key = load_pem_private_key(secret_value(docs, f"{FULLNAME}-audit", "signing-key.pem"), None)
        assert isinstance(key, Ed25519PrivateKey)
        cert = x509.load_pem_x509_certificate(secret_value(docs, f"{FULLNAME}-tls", "tls.crt"))
        names = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
        assert f"{FULLNAME}.{NAMESPACE}.svc" in names

    def test_existing_secrets_are_referenced_not_generated(self, helm: Helm) -> None:
        """Naming existing Secrets renders no Secret at all."""
        docs = helm.template(["external-secrets"])
        assert by_kind(docs, "Secret") == []
        volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
        assert volumes["keyring"]["secret"]["secretName"] == "idverify-keyring"
        assert volumes["audit-key"]["secret"]["secretName"] == "idverify-audit-key"
        assert volumes["tls"]["secret"]["secretName"] == "idverify-grpc-tls"

    def test_generated_keys_are_kept_on_uninstall(self, helm: Helm) -> None:
        """Keyring and signing key carry helm.sh/resource-policy: keep."""
        for secret in by_kind(helm.template(["defaults"]), "Secret"):
            assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    def test_the_trial_redis_is_found_through_its_sentinels(self, helm: Helm, tmp_path: Path) -> None:
        """redis.enabled points the server at the Bitnami chart's Sentinel service and password."""
        docs = helm.template(["trial"])
        assert config_of(docs, tmp_path).redis_url == f"redis+sentinel://{RELEASE}-redis:26379/mymaster"
        assert redis_password_source(docs) == (f"{RELEASE}-redis", "redis-password")

    def test_the_trial_dependency_is_declared_and_conditional(self) -> None:
        """Chart.yaml declares the Bitnami Redis chart, installed only with redis.enabled."""
        meta = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
        (redis,) = meta["dependencies"]
        assert (redis["name"], redis["condition"]) == ("redis", "redis.enabled")
        assert redis["repository"].startswith("oci://")


class TestValuesSchema:
    @pytest.mark.parametrize(
        ("sets", "message"),
        [
            ([], "externalRedis.url is required"),
            (["externalRedis.url=redis://user:secret@redis:6379"], "externalRedis.url"),
            (["externalRedis.url=redis://r:6379", "workers=-1"], "workers"),
            (
                ["externalRedis.url=redis://r:6379", "metrics.enabled=true", "workers=0"],
                "explicit workers count",
            ),
            (["externalRedis.url=redis://r:6379", "config.redis_url=redis://other"], "config"),
            (
                ["externalRedis.url=redis://r:6379", "tls.enabled=true", "tls.generate=false"],
                "tls.existingSecret",
            ),
            (["externalRedis.url=redis://r:6379", "geoip.enabled=true"], "geoip.existingClaim"),
            (["externalRedis.url=redis://r:6379", "replicas=3"], "replicas"),
            (
                ["externalRedis.url=redis://r:6379", "tls.clientPrincipals.admin-svc=default/admin"],
                "admin-svc",
            ),
            (["externalRedis.url=redis://r:6379", "config.sms.sender="], "config.sms.sender is required"),
            (
                ["externalRedis.url=redis://r:6379", "config.sms.sender=console"],
                "config.sms.sender: the console sender writes every code to the log",
            ),
            (["externalRedis.url=redis://r:6379", "config.mode=development"], "config.mode"),
            (
                ["externalRedis.url=redis://r:6379", "console.enabled=true"],
                "console.enabled needs tls.enabled",
            ),
            (
                ["externalRedis.url=redis://r:6379", "callbacks.enabled=true"],
                "callbacks.publicUrl is required",
            ),
            (
                ["externalRedis.url=redis://r:6379", "callbacks.publicUrl=http://idv.example.com/cb"],
                "callbacks.publicUrl",
            ),
            (
                ["externalRedis.url=redis://r:6379", "auditTiles.enabled=true", "auditTiles.mountPath=tiles"],
                "auditTiles.mountPath",
            ),
            (["externalRedis.url=redis://r:6379", "config.audit_tiles_dir=/srv/tiles"], "config"),
            (["externalRedis.url=redis://r:6379", "config.audit_tiles_url=s3://tiles"], "config"),
            (
                [
                    "externalRedis.url=redis://r:6379",
                    "auditTiles.enabled=true",
                    "auditTiles.bucket.url=s3://tiles",
                ],
                "auditTiles: enabled (a volume) or bucket.url (a bucket), not both",
            ),
            (
                [
                    "externalRedis.url=redis://r:6379",
                    "auditTiles.bucket.url=s3://tiles",
                    "auditTiles.bucket.endpoint=https://key:secret@minio:9000",
                ],
                "auditTiles.bucket.endpoint",
            ),
            (
                [
                    "externalRedis.url=redis://r:6379",
                    "auditTiles.enabled=true",
                    "auditTiles.persistence.accessModes={ReadWriteOnce}",
                ],
                "auditTiles.persistence.accessModes [ReadWriteOnce]: up to 10 pods would write the tiles",
            ),
            (
                [
                    "externalRedis.url=redis://r:6379",
                    "auditTiles.enabled=true",
                    "auditTiles.persistence.accessModes={ReadWriteOncePod}",
                    "autoscaling.enabled=false",
                    "replicaCount=2",
                ],
                "up to 2 pods would write the tiles",
            ),
        ],
    )
    def test_bad_values_are_refused_with_a_message(self, helm: Helm, sets: list[str], message: str) -> None:
        """Helm refuses values the schema or the templates rule out, naming the value."""
        # A sender, which the chart cannot default, so that each case meets its own refusal.
        args = ["template", RELEASE, str(helm.chart), "--set", "config.sms.sender=http"]
        for pair in sets:
            args += ["--set", pair]
        done = helm.run(*args, check=False)
        assert done.returncode != 0
        assert message in done.stderr

    @pytest.mark.parametrize("values", VALUES_FILES)
    def test_the_test_values_files_satisfy_the_schema(self, values: str) -> None:
        """values.schema.json accepts the defaults merged with each values file."""
        schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
        merged = deep_merge(
            yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8")),
            yaml.safe_load((VALUES / f"{values}.yaml").read_text(encoding="utf-8")),
        )
        jsonschema.validate(merged, schema)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = (
            deep_merge(merged[key], value)
            if isinstance(value, dict) and isinstance(merged.get(key), dict)
            else value
        )
    return merged


def leaf_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in {"requests", "limits"}:
            paths += leaf_paths(value, f"{path}.")
        else:
            paths.append(path)
    return paths


class TestReadme:
    def test_every_value_is_documented(self) -> None:
        """The chart README's values table names every key of values.yaml."""
        readme = (CHART / "README.md").read_text(encoding="utf-8")
        values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
        missing = [path for path in leaf_paths(values) if f"`{path}`" not in readme]
        assert missing == []


def test_rendering_is_deterministic_apart_from_generated_secrets(helm: Helm) -> None:
    """Two renders differ only in the randomly generated secrets, so upgrades do not churn pods."""

    def stable(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [doc for doc in docs if doc["kind"] != "Secret"]

    assert stable(helm.template(["cluster"])) == stable(helm.template(["cluster"]))

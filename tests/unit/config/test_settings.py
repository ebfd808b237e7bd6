"""Settings: defaults < TOML < environment < overrides, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from idverify.config import load_settings
from idverify.domain.errors import ConfigError
from idverify.domain.methods import establishes_claim
from idverify.domain.subjects import AssuranceLevel, SubjectKind


class TestLayers:
    def test_defaults_are_the_embedded_setup(self) -> None:
        """With nothing given: loopback port 50051, embedded Redis, OWASP argon2, default methods."""
        settings = load_settings(environ={})
        assert settings.listen == "127.0.0.1:50051"
        assert settings.redis_url == ""
        assert (settings.argon2.memory_kib, settings.argon2.time_cost, settings.argon2.parallelism) == (
            19456,
            2,
            1,
        )
        assert [m.id for m in settings.methods_for("default").for_kind(SubjectKind.PERSON)] == ["sms"]

    def test_environment_beats_file_and_overrides_beat_environment(self, tmp_path: Path) -> None:
        """IDVERIFY_* variables override the TOML file; command-line overrides win over both."""
        path = tmp_path / "c.toml"
        path.write_text('listen = "127.0.0.1:1"\n[verification]\nbinding_limit = 2\n', encoding="utf-8")
        env = {"IDVERIFY_LISTEN": "127.0.0.1:2", "IDVERIFY_VERIFICATION__BINDING_LIMIT": "3"}
        settings = load_settings(path, environ=env)
        assert settings.listen == "127.0.0.1:2"
        assert settings.verification.binding_limit == 3
        assert load_settings(path, environ=env, overrides={"listen": "127.0.0.1:3"}).listen == "127.0.0.1:3"

    def test_config_file_from_environment(self, tmp_path: Path) -> None:
        """IDVERIFY_CONFIG names the file when no path is passed."""
        path = tmp_path / "c.toml"
        path.write_text('log_format = "json"\n', encoding="utf-8")
        assert load_settings(environ={"IDVERIFY_CONFIG": str(path)}).log_format == "json"

    def test_unknown_tenant_uses_the_default_methods(self, tmp_path: Path) -> None:
        """A tenant without its own table gets the default tenant's methods."""
        path = tmp_path / "c.toml"
        path.write_text(
            '[tenants.acme.methods.org]\nsubject_kinds = ["organization"]\nsteps = ["document"]\n',
            encoding="utf-8",
        )
        settings = load_settings(path, environ={})
        assert [m.id for m in settings.methods_for("acme").methods] == ["org"]
        assert [m.id for m in settings.methods_for("other").methods] == ["sms", "org_document"]


class TestClaimAssurance:
    def test_sms_is_low_and_claims_need_substantial_by_default(self) -> None:
        """The built-in sms method proves no name: it is LOW and establishes no claim."""
        methods = load_settings(environ={}).methods_for("default")
        assert methods.get("sms").assurance is AssuranceLevel.LOW
        assert methods.claim_assurance is AssuranceLevel.SUBSTANTIAL
        assert not establishes_claim(methods.get("sms"), methods)

    def test_a_tenant_sets_its_claim_assurance(self, tmp_path: Path) -> None:
        """[tenants.<t>] claim_assurance alone keeps the built-in methods and lowers the bar."""
        path = tmp_path / "c.toml"
        path.write_text('[tenants.acme]\nclaim_assurance = "low"\n', encoding="utf-8")
        methods = load_settings(path, environ={}).methods_for("acme")
        assert [m.id for m in methods.methods] == ["sms", "org_document"]
        assert establishes_claim(methods.get("sms"), methods)

    def test_org_document_is_low_and_never_establishes_a_claim(self, tmp_path: Path) -> None:
        """A checksum judges no name: not by default, and not where claims need only LOW."""
        path = tmp_path / "c.toml"
        path.write_text('[tenants.acme]\nclaim_assurance = "low"\n', encoding="utf-8")
        settings = load_settings(path, environ={})
        for tenant in ("default", "acme"):
            methods = settings.methods_for(tenant)
            assert methods.get("org_document").assurance is AssuranceLevel.LOW
            assert not establishes_claim(methods.get("org_document"), methods)

    def test_org_registry_is_offered_once_it_has_a_vendor(self, tmp_path: Path) -> None:
        """[verifiers.org_registry] adds the SUBSTANTIAL registry method, which establishes claims."""
        assert "org_registry" not in [m.id for m in load_settings(environ={}).methods_for("default").methods]
        path = tmp_path / "c.toml"
        path.write_text(
            '[verifiers.org_registry]\nvendor = "alibaba"\n[tenants.acme]\nclaim_assurance = "high"\n',
            encoding="utf-8",
        )
        settings = load_settings(path, environ={})
        methods = settings.methods_for("default")
        assert [m.id for m in methods.for_kind(SubjectKind.ORGANIZATION)] == ["org_document", "org_registry"]
        registry = methods.get("org_registry")
        assert (registry.assurance, registry.steps) == (
            AssuranceLevel.SUBSTANTIAL,
            ("document", "org_registry"),
        )
        assert establishes_claim(registry, methods)
        # A tenant table without methods keeps the same built-in ones.
        acme = settings.methods_for("acme")
        assert "org_registry" in [m.id for m in acme.methods]
        assert not establishes_claim(acme.get("org_registry"), acme)

    def test_an_unknown_level_is_one_line_naming_the_tenant(self, tmp_path: Path) -> None:
        """A misspelt level names the setting and the levels there are."""
        path = tmp_path / "c.toml"
        path.write_text('[tenants.acme]\nclaim_assurance = "medium"\n', encoding="utf-8")
        with pytest.raises(ConfigError, match=r"tenants\.acme\.claim_assurance: expected one of low"):
            load_settings(path, environ={})


class TestValidation:
    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("bogus = 1\n", "bogus"),
            ("[verification]\nbinding_limt = 3\n", "binding_limt"),
            ("[verification]\nbinding_limit = 0\n", "binding_limit"),
            ('listen = "nowhere"\n', "listen"),
            ('redis_url = "http://x"\n', "redis_url"),
            ('log_format = "xml"\n', "log_format"),
            ("[tenants.default.methods.x]\nsteps = []\n", "steps"),
            ('[tenants.default.methods.x]\nassurance = "ultra"\nsteps = ["document"]\n', "ultra"),
            ('[tenants.default.methods.BAD]\nsteps = ["document"]\n', "ids are lower-case"),
            ('[tls]\ncert_file = "a"\n', "go together"),
            ('[telemetry]\ntraces = "carrier-pigeon"\n', "telemetry.traces"),
            ("[grpc]\npublic_streams_per_worker = 0\n", "public_streams_per_worker"),
            ("[grpc]\npublic_stream_lifetime_seconds = 0\n", "public_stream_lifetime_seconds"),
            ("not toml ===", "config file"),
        ],
    )
    def test_bad_settings_name_the_culprit(self, tmp_path: Path, text: str, fragment: str) -> None:
        """Each invalid setting is refused at start-up with a message naming it."""
        path = tmp_path / "c.toml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=fragment):
            load_settings(path, environ={})

    def test_bad_environment_values_are_refused(self) -> None:
        """A non-numeric number in the environment is a configuration error, not a crash."""
        with pytest.raises(ConfigError, match="binding_limit"):
            load_settings(environ={"IDVERIFY_VERIFICATION__BINDING_LIMIT": "many"})

    @pytest.mark.parametrize("word", ["flase", "ture", "2", ""])
    def test_a_misspelt_boolean_is_refused_not_read_as_false(self, word: str) -> None:
        """Only true/false (and 1/0, yes/no, on/off from the environment) are booleans."""
        with pytest.raises(ConfigError, match=r"grpc\.reflection: expected true or false"):
            load_settings(environ={"IDVERIFY_GRPC__REFLECTION": word})

    def test_a_boolean_setting_is_not_a_number_in_toml(self, tmp_path: Path) -> None:
        """``reflection = 3`` is refused, not taken as true."""
        path = tmp_path / "c.toml"
        path.write_text("[grpc]\nreflection = 3\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="reflection"):
            load_settings(path, environ={})

    @pytest.mark.parametrize(
        ("word", "expected"), [("yes", True), ("Off", False), ("0", False), ("TRUE", True)]
    )
    def test_the_environment_spells_booleans_several_ways(self, word: str, expected: bool) -> None:
        """The words an operator types in an environment variable still work."""
        assert load_settings(environ={"IDVERIFY_GRPC__REFLECTION": word}).grpc.reflection is expected


class TestClientPrincipals:
    def test_typed_keys_are_accepted(self, tmp_path: Path) -> None:
        """Keys name the kind of certificate name they match: cn:, uri:, dns: or email:."""
        path = tmp_path / "c.toml"
        path.write_text(
            "[tls.client_principals]\n"
            '"cn:admin-svc" = "default/admin"\n'
            '"uri:spiffe://prod/ns/chat/sa/signup" = "default/registrar"\n'
            '"dns:platform.internal" = "default/platform"\n'
            '"email:audit@example.com" = "default/auditor"\n',
            encoding="utf-8",
        )
        principals = load_settings(path, environ={}).tls.client_principals
        assert principals["cn:admin-svc"] == "default/admin"
        assert principals["uri:spiffe://prod/ns/chat/sa/signup"] == "default/registrar"

    @pytest.mark.parametrize(
        ("key", "typed"),
        [
            ("CN=admin-svc", "cn:admin-svc"),
            ("spiffe://prod/ns/chat/sa/signup", "uri:spiffe://prod/ns/chat/sa/signup"),
            ("platform.internal", "dns:platform.internal"),
            ("audit@example.com", "email:audit@example.com"),
        ],
    )
    def test_untyped_keys_are_refused_with_their_typed_form(
        self, tmp_path: Path, key: str, typed: str
    ) -> None:
        """An old untyped key stops start-up with one line that names the key's new form."""
        path = tmp_path / "c.toml"
        path.write_text(f'[tls.client_principals]\n"{key}" = "default/registrar"\n', encoding="utf-8")
        with pytest.raises(ConfigError) as refused:
            load_settings(path, environ={})
        message = str(refused.value)
        assert "\n" not in message
        assert f'"{typed}"' in message
        assert "tls.client_principals" in message

    @pytest.mark.parametrize(
        ("key", "target", "fragment"),
        [
            ("ip:10.0.0.1", "default/registrar", "ip:10.0.0.1"),
            ("cn:", "default/registrar", "names nothing"),
            ("cn:admin-svc", "default/superuser", "superuser"),
            ("cn:admin-svc", "default", "tenant/role"),
            # The bootstrap principal is the bootstrap token's client, never granted by name.
            ("cn:admin-svc", "default/bootstrap", "default/bootstrap"),
        ],
    )
    def test_bad_entries_are_refused(self, tmp_path: Path, key: str, target: str, fragment: str) -> None:
        """An unknown name type, an empty name or a target that is not tenant/role stops start-up."""
        path = tmp_path / "c.toml"
        path.write_text(f'[tls.client_principals]\n"{key}" = "{target}"\n', encoding="utf-8")
        with pytest.raises(ConfigError, match=fragment):
            load_settings(path, environ={})


def test_witness_dirs_come_from_a_list_or_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "idverify.toml"
    config.write_text('audit_witness_dirs = ["/mnt/a", "/mnt/b"]\n', encoding="utf-8")
    assert load_settings(config, environ={}).audit_witness_dirs == ("/mnt/a", "/mnt/b")
    from_env = load_settings(environ={"IDVERIFY_AUDIT_WITNESS_DIRS": "/mnt/a, /mnt/c"})
    assert from_env.audit_witness_dirs == ("/mnt/a", "/mnt/c")


def test_audit_tiles_are_off_unless_a_directory_is_named(tmp_path: Path) -> None:
    assert load_settings(environ={}).audit_tiles_dir == ""
    config = tmp_path / "idverify.toml"
    config.write_text('audit_tiles_dir = "/srv/tiles"\n', encoding="utf-8")
    assert load_settings(config, environ={}).audit_tiles_dir == "/srv/tiles"
    assert load_settings(environ={"IDVERIFY_AUDIT_TILES_DIR": "/mnt/t"}).audit_tiles_dir == "/mnt/t"


def test_audit_stage_buckets_are_none_unless_counted(tmp_path: Path) -> None:
    assert load_settings(environ={}).audit_stage_buckets == 0
    config = tmp_path / "idverify.toml"
    config.write_text("audit_stage_buckets = 64\n", encoding="utf-8")
    assert load_settings(config, environ={}).audit_stage_buckets == 64
    assert load_settings(environ={"IDVERIFY_AUDIT_STAGE_BUCKETS": "1024"}).audit_stage_buckets == 1024


INTERVAL = "audit_integration_interval_seconds"


def test_the_integration_interval_is_half_a_second_unless_set(tmp_path: Path) -> None:
    assert load_settings(environ={}).audit_integration_interval_seconds == 0.5
    config = tmp_path / "idverify.toml"
    config.write_text("audit_integration_interval_seconds = 2.5\n", encoding="utf-8")
    assert load_settings(config, environ={}).audit_integration_interval_seconds == 2.5
    environ = {"IDVERIFY_AUDIT_INTEGRATION_INTERVAL_SECONDS": "3600"}
    assert load_settings(environ=environ).audit_integration_interval_seconds == 3600


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        *((f"{INTERVAL} = {v}", f"{INTERVAL}: 0.05 to 3600, got {v}") for v in ("0", "0.01", "3601")),
        ("audit_stage_buckets = -1", "audit_stage_buckets: expected 0 to 1024, got -1"),
        ("audit_stage_buckets = 1025", "audit_stage_buckets: expected 0 to 1024, got 1025"),
        ("audit_stage_buckets = true", "audit_stage_buckets: expected 0 to 1024, got True"),
        ('audit_stage_buckets = "many"', "audit_stage_buckets: expected int, got 'many'"),
        ('audit_witness_dirs = ["rel/dir"]', "audit_witness_dirs: 'rel/dir' is not an absolute path"),
        ("audit_witness_dirs = [1]", "audit_witness_dirs: expected a list of directory paths"),
        ("audit_witness_dirs = 3", "audit_witness_dirs: expected a list of directory paths"),
        ('audit_tiles_dir = "tiles"', "audit_tiles_dir: 'tiles' is not an absolute path"),
        ("audit_tiles_dir = 3", "audit_tiles_dir: expected a directory path, got 3"),
    ],
)
def test_bad_audit_settings_are_named(tmp_path: Path, toml: str, message: str) -> None:
    config = tmp_path / "idverify.toml"
    config.write_text(toml + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^{message}$"):
        load_settings(config, environ={})


def test_audit_tiles_in_a_bucket_are_named_by_url_endpoint_and_region(tmp_path: Path) -> None:
    config = tmp_path / "idverify.toml"
    config.write_text(
        'audit_tiles_url = "s3://audit-tiles/prod/eu"\n'
        'audit_tiles_s3_endpoint = "https://minio.internal:9000"\n'
        'audit_tiles_s3_region = "eu-west-1"\n',
        encoding="utf-8",
    )
    settings = load_settings(config, environ={})
    assert (settings.audit_tiles_url, settings.audit_tiles_dir) == ("s3://audit-tiles/prod/eu", "")
    assert settings.audit_tiles_s3_endpoint == "https://minio.internal:9000"
    assert settings.audit_tiles_s3_region == "eu-west-1"
    environ = {"IDVERIFY_AUDIT_TILES_URL": "s3://tiles"}
    assert load_settings(environ=environ).audit_tiles_url == "s3://tiles"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('audit_tiles_url = "tiles/x"', "audit_tiles_url: 'tiles/x' is not an s3://bucket/prefix URL"),
        ('audit_tiles_url = "gs://tiles"', "audit_tiles_url: 'gs://tiles' is not an s3://bucket/prefix URL"),
        ('audit_tiles_url = "s3://Tiles"', r"audit_tiles_url: 'Tiles' is not an S3 bucket name .*"),
        ('audit_tiles_url = "s3://tiles/a/../b"', r"audit_tiles_url: the prefix 'a/\.\./b' has a segment .*"),
        ('audit_tiles_url = "s3://tiles/a//b"', r"audit_tiles_url: the prefix 'a//b' has a segment '' .*"),
        (
            'audit_tiles_url = "s3://tiles"\naudit_tiles_dir = "/srv/tiles"',
            "audit_tiles_url: set either audit_tiles_dir or audit_tiles_url, not both",
        ),
        (
            'audit_tiles_s3_region = "eu-west-1"',
            "audit_tiles_s3_endpoint/region: set only with audit_tiles_url",
        ),
        (
            'audit_tiles_url = "s3://tiles"\naudit_tiles_s3_endpoint = "minio:9000"',
            "audit_tiles_s3_endpoint: expected http\\(s\\)://host\\[:port\\], got 'minio:9000'",
        ),
        (
            'audit_tiles_url = "s3://tiles"\naudit_tiles_s3_region = "EU West"',
            "audit_tiles_s3_region: 'EU West' is not a region name",
        ),
    ],
)
def test_bad_audit_bucket_settings_are_one_line_naming_the_setting(
    tmp_path: Path, toml: str, message: str
) -> None:
    config = tmp_path / "idverify.toml"
    config.write_text(toml + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^{message}$"):
        load_settings(config, environ={})


def test_an_endpoint_carrying_credentials_is_refused_without_echoing_them(tmp_path: Path) -> None:
    config = tmp_path / "idverify.toml"
    config.write_text(
        'audit_tiles_url = "s3://tiles"\naudit_tiles_s3_endpoint = "https://admin:hunter2@minio:9000"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(config, environ={})
    assert "hunter2" not in str(refused.value)
    assert str(refused.value).startswith("audit_tiles_s3_endpoint: no user:password@ here")


class TestIncident:
    def test_defaults_are_100000_people_and_4_hours_1_for_critical_infrastructure(self) -> None:
        incident = load_settings(environ={}).incident
        assert (incident.threshold_people, incident.report_hours, incident.critical_report_hours) == (
            100_000,
            4.0,
            1.0,
        )

    def test_the_2021_drafts_8_hours_is_a_setting(self, tmp_path: Path) -> None:
        path = tmp_path / "c.toml"
        path.write_text("[incident]\nreport_hours = 8\nthreshold_people = 1000\n", encoding="utf-8")
        incident = load_settings(path, environ={}).incident
        assert (incident.report_hours, incident.threshold_people) == (8.0, 1000)

    @pytest.mark.parametrize(
        "line", ["threshold_people = 0", "report_hours = 0", "critical_report_hours = -1", "hours = 4"]
    )
    def test_nonsense_is_refused_in_one_line(self, tmp_path: Path, line: str) -> None:
        path = tmp_path / "c.toml"
        path.write_text(f"[incident]\n{line}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="incident") as refused:
            load_settings(path, environ={})
        assert "\n" not in str(refused.value)


class TestArgon2Niceness:
    def test_hashes_run_at_the_lowest_priority_unless_told(self, tmp_path: Path) -> None:
        """19 by default; 0 (the server's priority) stays selectable."""
        path = tmp_path / "c.toml"
        path.write_text("[argon2]\nniceness = 0\n", encoding="utf-8")
        assert load_settings(None, environ={}).argon2.niceness == 19
        assert load_settings(path, environ={}).argon2.niceness == 0

    @pytest.mark.parametrize("value", ["-5", "20"])
    def test_a_nice_value_linux_would_not_take_is_refused(self, tmp_path: Path, value: str) -> None:
        """-5 would ask for more than the server's priority (it needs privileges); 19 is the lowest."""
        path = tmp_path / "c.toml"
        path.write_text(f"[argon2]\nniceness = {value}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="argon2: niceness"):
            load_settings(path, environ={})

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Tests of idverify.verifiers.registry against real entry points of installed and fake distributions."""

from __future__ import annotations

import textwrap
import uuid
from typing import TYPE_CHECKING

import pytest

from idverify.domain.errors import ConfigError
from idverify.verifiers.base import ENTRY_POINT_GROUP, StepContext, StepResult, VerifierDeps
from idverify.verifiers.document import DocumentVerifier
from idverify.verifiers.registry import (
    SMS_SENDER_ENTRY_POINT_GROUP,
    build_verifier,
    load_sms_sender,
    load_verifier_factories,
)
from idverify.verifiers.sms_otp import SmsOtpVerifier
from idverify.verifiers.sms_senders import ConsoleSender

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


class FakeDistributions:
    """Writes *.dist-info directories and plugin modules into a directory on sys.path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def module(self, source: str) -> str:
        """Write a uniquely named module and returns its name (no stale sys.modules entries)."""
        name = f"fake_plugin_{uuid.uuid4().hex}"
        (self.root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        return name

    def distribution(self, name: str, entry_points: dict[str, dict[str, str]]) -> None:
        info = self.root / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8"
        )
        sections = [
            f"[{group}]\n" + "".join(f"{ep} = {target}\n" for ep, target in entries.items())
            for group, entries in entry_points.items()
        ]
        (info / "entry_points.txt").write_text("\n".join(sections), encoding="utf-8")


@pytest.fixture
def fake_dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDistributions:
    monkeypatch.syspath_prepend(str(tmp_path))
    return FakeDistributions(tmp_path)


_PLUGINS = """
    from idverify.verifiers.base import StepResult

    NOT_A_FACTORY = 42

    class Kba:
        def __init__(self, options, deps):
            self.name = options.get("name", "kba")
            self.biometric = False
            self.required_fields = frozenset({"name"})

        async def check(self, context):
            return StepResult.passed()

    class SyncSender:
        def __init__(self, options):
            pass

        def send_code(self, phone_e164, code, *, tenant, verification_id):
            pass
"""


class GoodVerifier:
    def __init__(self, name: str = "good") -> None:
        self.name = name
        self.biometric = False
        self.required_fields = frozenset({"name"})

    async def check(self, context: StepContext) -> StepResult:
        del context
        return StepResult.passed()


def returning(built: object) -> Callable[..., object]:
    """Return a factory that ignores its options and deps and returns ``built``."""

    def factory(*_: object) -> object:
        return built

    return factory


class TestLoadVerifierFactories:
    def test_loads_the_built_in_verifiers(self) -> None:
        """The package's own entry points resolve to the built-in verifier classes."""
        factories = load_verifier_factories(["document", "sms_otp"])
        assert factories == {"document": DocumentVerifier, "sms_otp": SmsOtpVerifier}

    def test_repeated_names_are_loaded_once(self) -> None:
        """A verifier used by several methods appears once in the result."""
        assert list(load_verifier_factories(["document", "document"])) == ["document"]

    def test_unknown_name_lists_what_is_available(self) -> None:
        """The error for a typo names the group and every installed verifier."""
        with pytest.raises(ConfigError) as caught:
            load_verifier_factories(["documnet"])
        message = str(caught.value)
        assert "'documnet'" in message
        assert ENTRY_POINT_GROUP in message
        assert "document" in message.split("available:")[1]
        assert "sms_otp" in message.split("available:")[1]

    def test_loads_a_third_party_entry_point(self, fake_dists: FakeDistributions) -> None:
        """A verifier from another distribution is found by its entry point alone."""
        module = fake_dists.module(_PLUGINS)
        fake_dists.distribution("acme-kba", {ENTRY_POINT_GROUP: {"kba": f"{module}:Kba"}})
        factory = load_verifier_factories(["kba"])["kba"]
        assert factory.__module__ == module

    def test_duplicate_name_is_refused_naming_both_distributions(self, fake_dists: FakeDistributions) -> None:
        """Two distributions claiming one name fail start-up instead of racing on sys.path order."""
        module = fake_dists.module(_PLUGINS)
        fake_dists.distribution("acme-verifiers", {ENTRY_POINT_GROUP: {"document": f"{module}:Kba"}})
        with pytest.raises(ConfigError, match="more than once") as caught:
            load_verifier_factories(["document"])
        assert "acme-verifiers" in str(caught.value)
        assert "idverify (" in str(caught.value)

    def test_duplicate_of_an_unused_name_does_not_matter(self, fake_dists: FakeDistributions) -> None:
        """Only the names the configuration uses must be unambiguous."""
        module = fake_dists.module(_PLUGINS)
        fake_dists.distribution("acme-verifiers", {ENTRY_POINT_GROUP: {"document": f"{module}:Kba"}})
        assert list(load_verifier_factories(["sms_otp"])) == ["sms_otp"]

    def test_non_callable_entry_point_is_refused(self, fake_dists: FakeDistributions) -> None:
        """An entry point naming a constant is reported with its type and distribution."""
        module = fake_dists.module(_PLUGINS)
        fake_dists.distribution("acme-broken", {ENTRY_POINT_GROUP: {"broken": f"{module}:NOT_A_FACTORY"}})
        with pytest.raises(ConfigError, match=r"is a int, not a factory") as caught:
            load_verifier_factories(["broken"])
        assert "acme-broken" in str(caught.value)

    def test_import_failure_is_a_config_error(self, fake_dists: FakeDistributions) -> None:
        """An entry point whose module cannot be imported fails start-up with the cause."""
        fake_dists.distribution("acme-missing", {ENTRY_POINT_GROUP: {"gone": "no_such_module_xyz:Gone"}})
        with pytest.raises(ConfigError, match="failed to load") as caught:
            load_verifier_factories(["gone"])
        assert isinstance(caught.value.__cause__, ImportError)


class TestBuildVerifier:
    def test_returns_what_the_factory_built(self, deps: VerifierDeps) -> None:
        """A well-formed verifier under its own name is returned as is."""
        built = build_verifier("good", returning(GoodVerifier()), {}, deps)
        assert isinstance(built, GoodVerifier)

    def test_builds_the_built_ins(self, deps: VerifierDeps) -> None:
        """The built-in factories pass the registry's own checks."""
        for name, factory in load_verifier_factories(["document", "sms_otp"]).items():
            assert build_verifier(name, factory, {}, deps).name == name

    def test_result_that_is_not_a_verifier_is_refused(self, deps: VerifierDeps) -> None:
        """A factory returning something without the protocol's members fails start-up."""
        with pytest.raises(ConfigError, match="lacks part of the Verifier protocol"):
            build_verifier("good", returning(object()), {}, deps)

    @pytest.mark.parametrize(
        ("attribute", "value", "complaint"),
        [
            ("name", 7, "`name` must be a str"),
            ("biometric", "no", "`biometric` must be a bool"),
            ("biometric", 0, "`biometric` must be a bool"),
            ("required_fields", {"name"}, "frozenset of str"),
            ("required_fields", frozenset({1}), "frozenset of str"),
            ("check", StepResult.passed, "`check` must be an async method"),
        ],
    )
    def test_members_of_the_wrong_type_are_refused(
        self, deps: VerifierDeps, attribute: str, value: object, complaint: str
    ) -> None:
        """Attributes that exist but have the wrong type are caught at start-up."""
        verifier = GoodVerifier()
        setattr(verifier, attribute, value)
        with pytest.raises(ConfigError, match=complaint):
            build_verifier("good", returning(verifier), {}, deps)

    def test_name_mismatch_is_refused(self, deps: VerifierDeps) -> None:
        """A verifier must call itself by the name it was registered under."""
        with pytest.raises(ConfigError, match="registered as 'good' calls itself 'other'"):
            build_verifier("good", returning(GoodVerifier("other")), {}, deps)

    def test_failing_factory_becomes_a_config_error(self, deps: VerifierDeps) -> None:
        """Any exception from a factory is reported as configuration trouble, with its cause."""

        def factory(*_: object) -> GoodVerifier:
            raise ValueError("boom")

        with pytest.raises(ConfigError, match="could not be built") as caught:
            build_verifier("good", factory, {}, deps)
        assert isinstance(caught.value.__cause__, ValueError)

    def test_config_error_from_a_factory_passes_through(self, deps: VerifierDeps) -> None:
        """A factory's own option error keeps its message."""
        with pytest.raises(ConfigError, match="sms_otp option 'code_length'"):
            build_verifier("sms_otp", SmsOtpVerifier, {"code_length": 3}, deps)

    def test_third_party_factory_gets_its_options(
        self, fake_dists: FakeDistributions, deps: VerifierDeps
    ) -> None:
        """Options reach the factory: here they rename the verifier, which is then refused."""
        module = fake_dists.module(_PLUGINS)
        fake_dists.distribution("acme-kba", {ENTRY_POINT_GROUP: {"kba": f"{module}:Kba"}})
        factory = load_verifier_factories(["kba"])["kba"]
        assert build_verifier("kba", factory, {}, deps).name == "kba"
        with pytest.raises(ConfigError, match="calls itself 'renamed'"):
            build_verifier("kba", factory, {"name": "renamed"}, deps)


class TestLoadSmsSender:
    def test_loads_the_console_sender(self) -> None:
        """The built-in console sender is found under its entry-point name."""
        assert isinstance(load_sms_sender("console", {}), ConsoleSender)

    def test_unknown_sender_lists_what_is_available(self) -> None:
        """The error names the sender group and the installed senders."""
        with pytest.raises(ConfigError, match=SMS_SENDER_ENTRY_POINT_GROUP) as caught:
            load_sms_sender("carrier_pigeon", {})
        assert "available: console, http" in str(caught.value)

    def test_sender_options_are_checked(self) -> None:
        """A sender's factory validates its options at load time."""
        with pytest.raises(ConfigError, match="'url' is required"):
            load_sms_sender("http", {"secret_env": "X"})

    def test_sender_without_async_send_code_is_refused(self, fake_dists: FakeDistributions) -> None:
        """A sender whose send_code is not a coroutine function fails start-up."""
        module = fake_dists.module(_PLUGINS)
        fake_dists.distribution("acme-sms", {SMS_SENDER_ENTRY_POINT_GROUP: {"sync": f"{module}:SyncSender"}})
        with pytest.raises(ConfigError, match="without an async send_code"):
            load_sms_sender("sync", {})

# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Finds verifiers and SMS senders by entry point and checks what they build, once at start-up.

Every failure here is a :class:`~idverify.domain.errors.ConfigError` whose message says what
is installed, so an operator can fix the configuration without reading code.
"""

from __future__ import annotations

import inspect
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, cast

from idverify.domain.errors import ConfigError
from idverify.verifiers.base import ENTRY_POINT_GROUP, SmsSender, Verifier, VerifierDeps, VerifierFactory

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

SMS_SENDER_ENTRY_POINT_GROUP = "idverify.sms_senders"


def _distribution_name(entry_point: EntryPoint) -> str:
    dist = entry_point.dist
    return dist.name if dist is not None else "<unknown distribution>"


def _load_entry_point(group: str, name: str, *, kind: str) -> Callable[..., object]:
    """Load the one entry point called ``name`` in ``group`` and check it is callable.

    Args:
        group: the entry-point group (``idverify.verifiers``).
        name: the entry point's name, as written in the configuration.
        kind: what the entry point provides, for error messages ("verifier").

    Returns:
        The loaded callable (a factory).

    Raises:
        ConfigError: no entry point has that name (the message lists those that exist), two
            distributions both claim it, it cannot be imported, or it is not callable.

    """
    candidates = [ep for ep in entry_points(group=group) if ep.name == name]
    if not candidates:
        available = sorted({ep.name for ep in entry_points(group=group)})
        listing = ", ".join(available) if available else "none installed"
        raise ConfigError(f"unknown {kind} {name!r} (entry-point group {group!r}); available: {listing}")
    if len(candidates) > 1:
        # Picking one silently would make the running code depend on sys.path order.
        owners = " and ".join(sorted(f"{_distribution_name(ep)} ({ep.value})" for ep in candidates))
        raise ConfigError(f"{kind} {name!r} is registered more than once in {group!r}: by {owners}")
    entry_point = candidates[0]
    origin = f"{entry_point.value} from {_distribution_name(entry_point)}"
    try:
        loaded = entry_point.load()
    except Exception as exc:
        raise ConfigError(f"{kind} {name!r} ({origin}) failed to load: {exc!r}") from exc
    if not callable(loaded):
        raise ConfigError(f"{kind} {name!r} ({origin}) is a {type(loaded).__name__}, not a factory")
    return cast("Callable[..., object]", loaded)


def load_verifier_factories(names: Iterable[str]) -> dict[str, VerifierFactory]:
    """Load the factory of each named verifier from the ``idverify.verifiers`` group.

    Args:
        names: verifier names used by the configured methods; repeats are loaded once.

    Returns:
        The factories by name, in the order the names were first given.

    Raises:
        ConfigError: a name is unknown, claimed by two distributions, fails to import or
            does not name a callable.

    """
    factories: dict[str, VerifierFactory] = {}
    for name in names:
        if name not in factories:
            loaded = _load_entry_point(ENTRY_POINT_GROUP, name, kind="verifier")
            factories[name] = cast("VerifierFactory", loaded)
    return factories


def build_verifier(
    name: str, factory: VerifierFactory, options: Mapping[str, Any], deps: VerifierDeps
) -> Verifier:
    """Call a verifier factory and check that what it built is a usable ``name`` verifier.

    Args:
        name: the name the factory was loaded under.
        factory: from :func:`load_verifier_factories`.
        options: the verifier's options table from the configuration.
        deps: the narrow services a verifier may use.

    Returns:
        The verifier.

    Raises:
        ConfigError: the factory rejected its options or failed, or built something that does
            not satisfy :class:`~idverify.verifiers.base.Verifier` or calls itself otherwise.

    """
    try:
        built: object = factory(options, deps)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"verifier {name!r} could not be built: {exc!r}") from exc
    if not isinstance(built, Verifier):
        raise ConfigError(
            f"verifier {name!r}: factory returned a {type(built).__name__}, which lacks part of the "
            "Verifier protocol (name, biometric, required_fields, check)"
        )
    # isinstance() on a runtime protocol only proves the attributes exist; the engine relies on
    # their types (a truthy string as `biometric` would skip biometric consent).
    if not isinstance(built.name, str):
        raise ConfigError(f"verifier {name!r}: `name` must be a str")
    if not isinstance(built.biometric, bool):
        raise ConfigError(f"verifier {name!r}: `biometric` must be a bool")
    fields = built.required_fields
    if not isinstance(fields, frozenset) or not all(isinstance(field, str) for field in fields):
        raise ConfigError(f"verifier {name!r}: `required_fields` must be a frozenset of str")
    if not inspect.iscoroutinefunction(built.check):
        raise ConfigError(f"verifier {name!r}: `check` must be an async method")
    if built.name != name:
        raise ConfigError(f"verifier registered as {name!r} calls itself {built.name!r}")
    return built


def load_sms_sender(name: str, options: Mapping[str, Any]) -> SmsSender:
    """Load the SMS sender called ``name`` from the ``idverify.sms_senders`` group and build it.

    Args:
        name: the sender's entry-point name (``console``, ``http``).
        options: the sender's options table from the configuration.

    Returns:
        The sender.

    Raises:
        ConfigError: the name is unknown, claimed twice, fails to import, the factory rejects
            its options, or the result has no async ``send_code`` method.

    """
    factory = _load_entry_point(SMS_SENDER_ENTRY_POINT_GROUP, name, kind="SMS sender")
    try:
        built = factory(options)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"SMS sender {name!r} could not be built: {exc!r}") from exc
    if not inspect.iscoroutinefunction(getattr(built, "send_code", None)):
        raise ConfigError(
            f"SMS sender {name!r}: factory returned a {type(built).__name__} without an async send_code()"
        )
    return cast("SmsSender", built)

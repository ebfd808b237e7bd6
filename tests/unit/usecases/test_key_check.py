"""The start-up guard (``flows.key_check``) over its port: without Redis, and the port's contract.

The use-case tests run the guard on ``idverify.testing.memory_key_checks.MemoryKeyChecks``, the
shared in-memory ``KeyCheckStore``; the contract tests run the same assertions on it and on
``store.key_checks.RedisKeyChecks`` over a real redis-server, so what the guard is shown to do
here it does over Redis too.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import pytest

from idverify.audit.checkpoint import key_id_for
from idverify.audit.signing_key import load_signing_key
from idverify.config import Settings
from idverify.domain.errors import ConfigError, StoreUnavailable
from idverify.flows.key_check import (
    KeyCheckStore,
    check_signing_key,
    forget_key_version,
    key_check_values,
    open_keyring,
    record_key_versions,
    record_signing_key,
    recorded_signing_key,
    store_holds_data,
)
from idverify.privacy.keyring import Keyring
from idverify.store.connection import RedisClient, connect
from idverify.store.key_checks import RedisKeyChecks
from idverify.store.keys import GlobalKeys
from idverify.testing.memory_key_checks import MemoryKeyChecks

NO_ENV: Mapping[str, str] = {}


# --- the use case, without Redis -------------------------------------------------------------


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


async def test_a_keyring_is_generated_over_an_empty_store_and_its_versions_recorded(tmp_path: Path) -> None:
    store = MemoryKeyChecks()
    keyring = await open_keyring(settings(tmp_path), store, NO_ENV)
    assert (tmp_path / "keyring.json").exists()
    assert store.values == key_check_values(keyring)
    # The next start opens the same file and finds every version recorded.
    again = await open_keyring(settings(tmp_path), store, NO_ENV)
    assert key_check_values(again) == store.values


@pytest.mark.parametrize("held", ["markers", "tenant_keys", "audit_logs"])
async def test_no_keyring_is_generated_over_a_store_that_holds_data(tmp_path: Path, held: str) -> None:
    store = MemoryKeyChecks()
    setattr(store, held, True)
    with pytest.raises(ConfigError, match=r"keyring file .* is missing, but Redis holds data"):
        await open_keyring(settings(tmp_path), store, NO_ENV)
    assert not (tmp_path / "keyring.json").exists()
    assert store.values == {}


async def test_no_keyring_is_generated_when_the_store_cannot_say_it_is_empty(tmp_path: Path) -> None:
    store = MemoryKeyChecks()
    store.down = True
    with pytest.raises(ConfigError, match="Redis cannot be reached"):
        await open_keyring(settings(tmp_path), store, NO_ENV)
    assert not (tmp_path / "keyring.json").exists()


async def test_a_configured_keyring_over_an_unreachable_store_is_checked_at_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryKeyChecks()
    keyring = await open_keyring(settings(tmp_path), store, NO_ENV)
    store.down = True
    with caplog.at_level(logging.WARNING, logger="idverify.keys"):
        assert await open_keyring(settings(tmp_path), store, NO_ENV) is not None
    assert "checked against it at the next start" in caplog.text
    assert key_check_values(keyring) == store.values


async def test_another_keyring_is_refused_naming_each_version_and_nothing_is_recorded() -> None:
    store = MemoryKeyChecks()
    first, other = Keyring.generate(), Keyring.generate()
    await record_key_versions(store, first, "the first")
    recorded = dict(store.values)
    with pytest.raises(ConfigError) as refused:
        await record_key_versions(store, other, "keyring file other.json")
    message = str(refused.value)
    assert message.startswith("keyring file other.json cannot open the data in Redis: key versions ")
    assert "(another secret)" in message
    assert "nothing was changed" in message
    assert store.values == recorded


async def test_a_retired_version_is_forgotten_and_a_keyring_without_it_then_opens() -> None:
    store = MemoryKeyChecks()
    keyring = Keyring.generate()
    await record_key_versions(store, keyring, "k")
    store.values["p:old"] = "00" * 16  # a version the keyring file no longer holds
    store.values["w:old"] = "11" * 16
    with pytest.raises(ConfigError, match=r"old \(missing\)"):
        await record_key_versions(store, keyring, "k")
    await forget_key_version(store, "old")
    await record_key_versions(store, keyring, "k")
    assert store.values == key_check_values(keyring)


async def test_the_first_signing_key_is_recorded_and_another_refused(tmp_path: Path) -> None:
    store = MemoryKeyChecks()
    await check_signing_key(settings(tmp_path), store, NO_ENV)
    key_id = key_id_for(load_signing_key(tmp_path, "", NO_ENV).public_key())
    assert await recorded_signing_key(store) == key_id
    await check_signing_key(settings(tmp_path), store, NO_ENV)  # the same key starts again

    (tmp_path / "audit-signing-key.pem").unlink()
    with pytest.raises(
        ConfigError, match=f"is missing, but the audit log in Redis is signed by key {key_id}"
    ):
        await check_signing_key(settings(tmp_path), store, NO_ENV)

    (tmp_path / "other").mkdir()
    await check_signing_key(settings(tmp_path / "other"), MemoryKeyChecks(), NO_ENV)
    other_id = key_id_for(load_signing_key(tmp_path / "other", "", NO_ENV).public_key())
    configured = Settings(
        data_dir=tmp_path, audit_signing_key_file=str(tmp_path / "other" / "audit-signing-key.pem")
    )
    with pytest.raises(
        ConfigError, match=f"is key {other_id}, but the audit log in Redis is signed by key {key_id}"
    ):
        await check_signing_key(configured, store, NO_ENV)
    assert await record_signing_key(store, other_id) == key_id  # the explicit rotation
    await check_signing_key(configured, store, NO_ENV)


async def test_a_missing_generated_signing_key_over_a_log_is_refused(tmp_path: Path) -> None:
    store = MemoryKeyChecks()
    store.audit_logs = True  # a log written by a build that recorded no signing key
    with pytest.raises(ConfigError, match="signed by key of an earlier start"):
        await check_signing_key(settings(tmp_path), store, NO_ENV)
    assert store.audit_key is None


async def test_an_unreachable_store_leaves_the_signing_key_to_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryKeyChecks()
    store.down = True
    with caplog.at_level(logging.WARNING, logger="idverify.keys"):
        await check_signing_key(settings(tmp_path), store, NO_ENV)
    assert "checked at the next start" in caplog.text


# --- the port's contract: the in-memory store and Redis answer alike --------------------------


Seed = Callable[[str], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
async def port(
    request: pytest.FixtureRequest, own_client: RedisClient
) -> AsyncIterator[tuple[KeyCheckStore, Seed]]:
    """A key-check store, empty, and how to give it a marker, a tenant's key or an audit log."""
    if request.param == "memory":
        memory = MemoryKeyChecks()

        async def seed_memory(kind: str) -> None:
            setattr(memory, kind, True)

        yield memory, seed_memory
        return
    keys = {
        "markers": GlobalKeys.BOOTSTRAP,
        "tenant_keys": "iv1:{t:acme}:acct:1",
        "audit_logs": "iv1:{t:acme}:audit:log",
    }

    async def seed_redis(kind: str) -> None:
        await own_client.set(keys[kind], b"1")

    yield RedisKeyChecks(own_client), seed_redis


async def test_contract_an_empty_store(port: tuple[KeyCheckStore, Seed]) -> None:
    store, _ = port
    assert not await store.holds_markers()
    assert not await store.any_tenant_key()
    assert not await store.any_audit_log()
    assert not await store_holds_data(store)
    assert await store.recorded_values() == {}
    assert await store.signing_key() is None


async def test_contract_signs_of_data(port: tuple[KeyCheckStore, Seed]) -> None:
    store, seed = port
    await seed("audit_logs")
    assert await store.any_audit_log()
    assert await store.any_tenant_key()  # a log is a tenant's key
    assert not await store.holds_markers()
    assert await store_holds_data(store)


async def test_contract_a_tenant_key_is_not_an_audit_log(port: tuple[KeyCheckStore, Seed]) -> None:
    store, seed = port
    await seed("tenant_keys")
    assert await store.any_tenant_key()
    assert not await store.any_audit_log()
    await seed("markers")
    assert await store.holds_markers()


async def test_contract_key_check_values(port: tuple[KeyCheckStore, Seed]) -> None:
    store, _ = port
    await store.add_values({})
    assert not await store.holds_markers()  # nothing was written
    await store.add_values({"p:1": "a" * 32, "w:1": "b" * 32, "p:2": "c" * 32})
    await store.add_values({"pseudonym": "1"})
    assert await store.holds_markers()  # the key-check record is a marker
    await store.forget_version("1")
    assert await store.recorded_values() == {"p:2": "c" * 32, "pseudonym": "1"}
    await store.forget_version("absent")
    assert await store.recorded_values() == {"p:2": "c" * 32, "pseudonym": "1"}


async def test_contract_the_signing_key(port: tuple[KeyCheckStore, Seed]) -> None:
    store, _ = port
    await store.record_first_signing_key("first")
    await store.record_first_signing_key("second")  # the first stays
    assert await store.signing_key() == "first"
    assert await store.replace_signing_key("third") == "first"
    assert await store.signing_key() == "third"


async def test_contract_the_guard_over_either_store(port: tuple[KeyCheckStore, Seed], tmp_path: Path) -> None:
    store, _ = port
    keyring = await open_keyring(settings(tmp_path), store, NO_ENV)
    assert await store.recorded_values() == key_check_values(keyring)
    with pytest.raises(ConfigError, match="another secret"):
        await record_key_versions(store, Keyring.generate(), "other")


async def test_an_unreachable_redis_is_store_unavailable(tmp_path: Path) -> None:
    store = RedisKeyChecks(connect(f"unix://{tmp_path}/absent.sock"))
    with pytest.raises(StoreUnavailable):
        await store.recorded_values()

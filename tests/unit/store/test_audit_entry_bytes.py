"""The prelude's ``audit()`` writes the same bytes as it always did, on a real redis-server.

An entry's bytes are its Merkle leaf: a signed head of an existing log covers them, and the
in-memory double (``testing.memory_audit_log``), ``store.synthetic_audit`` and the parsers expect
them. So a change to how ``audit()`` builds an entry (issue 26's cheaper append) must not move one
byte of what it stores: the entries, the index postings, the head's fields and the outbox records.
``tests/fixtures/audit_entry_bytes.json`` holds what the prelude of 50729e6 (before the cheaper
append) wrote for ``EVENTS``; regenerate it only for a deliberate change of the entry format, with
``python -m tests.unit.store.test_audit_entry_bytes`` (it needs a redis-server on the PATH).

``json_text`` is compared with Redis's own cjson (its ``/`` unescaped) on every byte value alone
and among plain text, since a fast path for text that needs no escaping decides by bytes.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from idverify.store.connection import RedisClient, connect
from idverify.store.keys import TenantKeys
from idverify.store.synthetic_audit import SyntheticAppender, prelude_source
from idverify.testing import RedisProcess, free_port, redis_server_binary
from idverify.testing.memory_audit_log import MemoryAuditLog

GOLDEN = Path(__file__).parents[2] / "fixtures" / "audit_entry_bytes.json"
TENANT = "golden"
# The head's last time, set before the appends: every entry takes it (time never runs backwards).
FIXED_MS = 4_000_000_000_000
# The account of ps1's events: its hash holds its audit pseudonym before the appends, as a bound
# account's does, so the binding's event keeps its sealed id there.
ACCOUNT_KEY = TenantKeys(TENANT).account("golden-account")

CONTROL = "".join(chr(c) for c in range(32))
# Every field audit() writes, every class of character in each kind of field.
TEXTS = {
    "empty": "",
    "plain": "abc-XYZ_019.~ ",
    "slash": "acme/registrar/c1/",
    "escaped slash text": "a\\/b",
    "quotes": 'say "hi"',
    "backslash": "C:\\path\\",
    "control": CONTROL,
    "DEL": "a\x7fb",
    "non-ASCII": "Zoë Ångström ñ 日本 \u2028\u2029 😀",
    "mixed": 'x/"\\\n\t\x01é',
}


def _events() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    events: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for label, text in TEXTS.items():
        request = {"principal": text, "request_id": f"r-{label}", "trace_id": text}
        events.append(
            (
                request,
                {
                    "type": f"thing.{label}",
                    "verification_id": text,
                    "account": text,
                    "method": text,
                    "outcome": text,
                    "reason": text,
                    "attr": text,
                    text or "blank": label,
                },
            )
        )
    steps = [{"verifier": text, "outcome": text, "reason": text} for text in TEXTS.values()]
    events += [
        # Steps, in order, of every class; a step missing fields.
        ({"principal": "acme/p"}, {"type": "verification.verified", "outcome": "verified", "steps": steps}),
        ({}, {"type": "verification.rejected", "steps": [{}]}),
        # Attributes sorted by name; numbers and booleans as the prelude's tostring writes them.
        ({"zeta": "1", "alpha": "2"}, {"type": "client.created", "Mid": "3", "n": 7, "f": 0.5, "t": True}),
        # An event type: an outbox record with the sealed account, kept in the account's hash at
        # its binding, then found there by a step that names the account's key but not its id.
        (
            {
                "principal": "p",
                "event_account": "sealed-1",
                "event_account_for": "ps1",
                "event_account_key": ACCOUNT_KEY,
                "span": "t-s-01",
            },
            {"type": "account.bound", "account": "ps1", "outcome": "bound", "method": "sms"},
        ),
        (
            {"principal": "p", "event_account_key": ACCOUNT_KEY},
            {"type": "account.cancelled", "account": "ps1", "outcome": "cancelled"},
        ),
        ({"principal": "p"}, {"type": "consent.granted", "account": "", "outcome": "granted"}),
        # The bench's usual shape.
        (
            {"principal": "rate/registrar/c1", "request_id": "r0-1", "trace_id": ""},
            {"type": "verification.completed", "outcome": "verified", "account": "a1", "method": "sms"},
        ),
    ]
    return events


EVENTS = _events()


def _text(mapping: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in sorted(mapping.items())}


async def emptied(redis: RedisClient) -> None:
    """The golden tenant's keys gone (its buckets' too), its log's last time set to ``FIXED_MS``.

    ps1's account hash is left holding only its audit pseudonym.
    """
    stale = [key async for key in redis.scan_iter(match=f"iv1:{{t:{TENANT}[:}}]*")]
    if stale:
        await redis.delete(*stale)
    await redis.hset(TenantKeys(TENANT).audit_head(), "last_ms", str(FIXED_MS))
    await redis.hset(ACCOUNT_KEY, "audit", "ps1")


async def written(redis: RedisClient) -> dict[str, Any]:
    """What ``EVENTS`` appended leave in Redis: entries, postings (hex), head, outbox, kept ids."""
    await emptied(redis)
    await SyntheticAppender(redis).append(TENANT, EVENTS)
    return await stored(redis)


async def stored(redis: RedisClient) -> dict[str, Any]:
    """The golden tenant's log as the golden file has it."""
    keys = TenantKeys(TENANT)
    prefix = keys.audit_log()[: -len("log")]
    log = await redis.hgetall(keys.audit_log())
    postings = {
        key.decode(): (await redis.get(key)).hex() async for key in redis.scan_iter(match=f"{prefix}ix:*")
    }
    outbox = await redis.xrange(keys.events_outbox())
    return {
        "entries": [log[str(index).encode()].decode() for index in range(len(log))],
        "postings": dict(sorted(postings.items())),
        "head": _text(await redis.hgetall(prefix + "head")),
        "outbox": [_text(fields) for _, fields in outbox],
        # Audit pseudonym -> sealed id kept for events: older servers' map, then the account's hash
        # (the golden file's shape from before the id moved into the account).
        "event_accounts": await _kept_event_accounts(redis, keys),
    }


async def _kept_event_accounts(redis: RedisClient, keys: TenantKeys) -> dict[str, str]:
    kept = _text(await redis.hgetall(keys.events_accounts()))
    audit_ps, sealed = await redis.hmget(ACCOUNT_KEY, ["audit", "event_account"])
    if audit_ps is not None and sealed is not None:
        kept[audit_ps.decode()] = sealed.decode()
    return kept


async def test_audit_writes_the_bytes_it_wrote_before(redis: RedisClient) -> None:
    assert await written(redis) == json.loads(GOLDEN.read_text(encoding="utf-8"))


async def test_audit_writes_the_bytes_of_the_memory_double(redis: RedisClient) -> None:
    # The double writes no steps, only strings, keeps no event's account or span apart and
    # JSON-escapes no DEL (cjson writes \u007f): those entries aside.
    stored = (await written(redis))["entries"]
    double = MemoryAuditLog(now_ms=FIXED_MS)
    compared = 0
    for index, (request, fields) in enumerate(EVENTS):
        values = [*request.values(), *fields.values()]
        apart = {"steps", "event_account", "event_account_key", "span"} & {*request, *fields}
        if apart or any(not isinstance(v, str) or "\x7f" in v for v in values):
            continue
        double.append(TENANT, request, fields)
        entry = (await double.entries(TENANT, [compared]))[0]
        assert entry is not None
        assert stored[index].encode().replace(b'"seq":%d' % index, b'"seq":%d' % compared) == entry
        compared += 1
    assert compared >= len(TEXTS)


# json_text against cjson, on raw bytes (any byte string a script may hold, UTF-8 or not); twice,
# so the second pass reads what the first left in json_text's memo, and over more texts than the
# memo holds, so it starts afresh on the way.
_COMPARE = """
local mismatched = {}
for pass = 1, 2 do
  for i, text in ipairs(ARGV) do
    if json_text(text) ~= string.gsub(cjson.encode(text), '\\\\/', '/') then
      mismatched[#mismatched + 1] = i - 1
    end
  end
end
return mismatched
"""


async def test_json_text_is_cjson_on_every_byte(redis: RedisClient) -> None:
    texts = [b""]
    for value in range(256):
        byte = bytes([value])
        texts += [byte, b"plain" + byte, byte + b"plain", b"a/b" + byte + b'"\\', byte * 3]
    texts += ["Zoë 日本 😀".encode(), b"\xff\xfe invalid", b"/" * 40, b"\\/" * 5, b"x" * 5000]
    mismatched = await redis.eval(prelude_source() + _COMPARE, 0, *texts)
    assert len(texts) > 2 * 512
    assert [texts[i] for i in mismatched] == []


async def test_postings_number_entries_in_six_big_endian_bytes(redis: RedisClient) -> None:
    numbers = [0, 1, 255, 256, 65_535, 2**32 - 1, 2**32, 2**40 + 12_345, 2**48 - 1]
    script = (
        prelude_source()
        + "\nlocal out = {}\nfor i, n in ipairs(ARGV) do out[i] = u48(tonumber(n)) end\nreturn out"
    )
    assert await redis.eval(script, 0, *numbers) == [n.to_bytes(6, "big") for n in numbers]


async def _generate() -> None:
    binary = redis_server_binary(prefer_system=True)
    with (
        tempfile.TemporaryDirectory() as directory,
        RedisProcess(Path(directory), port=free_port(), binary=binary) as server,
    ):
        client = connect(server.url)
        try:
            GOLDEN.write_text(json.dumps(await written(client), indent=1) + "\n", encoding="utf-8")
        finally:
            await client.aclose(close_connection_pool=True)


if __name__ == "__main__":
    asyncio.run(_generate())

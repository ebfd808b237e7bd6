"""The recorder of the keys a script call touches (``tests.touched_keys``) sees exactly those.

It is what the family tests (``test_binding_families.py``, ``test_step_families.py``) trust to
see the keys a script builds inside Lua, so it is checked here against scripts whose keys are
known: built from arguments with every byte MONITOR escapes, named where a command's keys are not
its first argument, in calls running at once.
"""

from __future__ import annotations

import asyncio

from idverify.store.connection import RedisClient
from tests.touched_keys import ScriptMonitor

# Builds its keys from ARGV, never given them; TIME names none, ZUNIONSTORE's are its 1st and 3rd+.
DERIVING = """
redis.call('SET', ARGV[1], 'v')
redis.call('TIME')
redis.call('HGET', KEYS[1], 'f')
redis.call('ZUNIONSTORE', ARGV[2], 2, KEYS[1] .. ':z', ARGV[3])
redis.call('SET', ARGV[1], 'again')
return 1
"""


async def test_the_keys_a_script_builds_are_seen_exactly(
    own_client: RedisClient, script_monitor: ScriptMonitor
) -> None:
    script = own_client.register_script(DERIVING)
    awkward = 'k "quoted" back\\slash\nline\ttab\a\b é \x00 \x7f'
    keys, args = ["given"], [awkward, "{z}out", "{z}in"]
    result, touched = await script_monitor.touched(script, keys, args, script(keys=keys, args=args))
    assert result == 1
    assert touched == [awkward, "given", "{z}out", "given:z", "{z}in"]
    assert await own_client.get(awkward) == b"again"


async def test_a_script_touching_nothing_touched_nothing(
    own_client: RedisClient, script_monitor: ScriptMonitor
) -> None:
    script = own_client.register_script("return redis.call('TIME')[1] and 0")
    _, touched = await script_monitor.touched(script, ["unused"], [], script(keys=["unused"]))
    assert touched == []


async def test_calls_at_once_each_see_their_own_keys(
    own_client: RedisClient, script_monitor: ScriptMonitor
) -> None:
    """Twenty calls of one script at once, their brackets overlapping: each is told its key alone."""
    script = own_client.register_script("return redis.call('INCR', ARGV[1])")

    async def one(n: int) -> list[str]:
        args = [f"counter:{n}"]
        _, touched = await script_monitor.touched(script, [], args, script(args=args))
        return touched

    assert await asyncio.gather(*(one(n) for n in range(20))) == [[f"counter:{n}"] for n in range(20)]

-- The repairer takes a due intent (flows/bucket_repair.py): a check-and-set on its score, pushed
-- forward so that another repairer leaves it alone while this one finishes it, and the check of
-- what the sequence's first step recorded, as that step would see it. It only finishes what step
-- 1 recorded: an intent planted by someone with write access to Redis, or one malformed, is
-- removed, never acted on. An 'unbind' intent needs its account cancelled and unbound (and so
-- existing); an 'erase' intent needs its account gone, as the erasure's first step left it.
-- KEYS: intents, the intent's record, the account it names (any key of the slot when it names none)
-- ARGV: intent member, its score as read, the delay in ms before it may be taken again
-- Replies: {'TAKEN', ref, claim tag, due ms} an unbind; {'TAKEN'} an erase; {'RACED'} its score
--   moved (another repairer took it, or its sequence finished); {'DROPPED', why} refused and removed.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return {'RACED'} end
local function drop(why)
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
  return {'DROPPED', why}
end
local kind, subject = string.match(ARGV[1], '^([a-z]+):(.+)$')
if kind ~= 'unbind' and kind ~= 'erase' then return drop('UNKNOWN_KIND') end
local intent = hgetall(KEYS[2])
if intent.kind ~= kind or intent.subject ~= subject then return drop('MALFORMED') end
local taken = NOW + tonumber(ARGV[3])
if kind == 'erase' then
  -- The account still there: its erasure's first step never ran, so nothing is to finish.
  if redis.call('EXISTS', KEYS[3]) == 1 then return drop('NOT_ERASED') end
  redis.call('ZADD', KEYS[1], 'XX', taken, ARGV[1])
  return {'TAKEN'}
end
if (intent.ref or '') == '' or not string.match(intent.due_ms or '', '^%d+$') then
  return drop('MALFORMED')
end
local acct = redis.call('HMGET', KEYS[3], 'cancelled_ms', 'identity')
if not acct[1] then return drop('NOT_CANCELLED') end
if acct[2] then return drop('STILL_BOUND') end
redis.call('ZADD', KEYS[1], 'XX', taken, ARGV[1])
return {'TAKEN', intent.ref, intent.tag or '', intent.due_ms}

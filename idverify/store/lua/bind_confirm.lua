-- A binding's last step, in the identity's slot (docs/ARCHITECTURE.md, "3.1 Binding"): the
-- pending member 'p:<tag>:<vf id>' becomes 'b:<tag>' when the commit bound the account, and is
-- removed (set and field) when it did not: the one undo of the steps. A pending member whose
-- claim another verification established meanwhile under another name is removed too, and the
-- reply says so: its account, bound by the commit, is the caller's to supersede
-- (bind_supersede.lua) before it removes the intent itself. Otherwise the intent 'place:<vf id>'
-- goes with this step. Idempotent: only the member's pending value for this verification is
-- acted on (a supersession once answered is remembered in the intent).
-- Step by step, an identity that a move (docs/ARCHITECTURE.md, "3.4 Re-indexing") took elsewhere
-- after the place answers MOVED: its pending member went with the record, and the caller follows it
-- (store/binding_steps.py); while the move is in flight it answers RETRY, since what it wrote here
-- would be deleted with the old record.
-- KEYS: identity, identity accounts, intents, the intent's record
-- ARGV: account pseudonym, verification id, the commit's reply (bind_commit.lua: its status third)
-- Replies: {'OK'}; {'SUPERSEDED'} the account is to be superseded, the intent kept until then;
--   {'RETRY'} a move of the record is in flight; {'MOVED'} the record moved (or is gone).
local field = MEMBER_FIELD .. ARGV[1]
if KEYS[3] and redis.call('HEXISTS', KEYS[1], 'moving_to') == 1 then return {'RETRY'} end
local value = redis.call('HGET', KEYS[1], field)
local tag, pending = false, nil
if value then tag, pending = member_parts(value) end
if KEYS[3] and pending ~= ARGV[2]
  and (redis.call('HEXISTS', KEYS[1], 'moved_to') == 1 or redis.call('EXISTS', KEYS[1]) == 0) then
  return {'MOVED'}
end
local superseded = KEYS[4] and redis.call('HGET', KEYS[4], 'superseded_after') == '1'
if pending == ARGV[2] then
  local claim = redis.call('HMGET', KEYS[1], 'established', 'claim_tag')
  if ARGV[4] ~= 'VERIFIED' or (claim[1] == '1' and claim[2] ~= tag) then
    redis.call('SREM', KEYS[2], ARGV[1])
    redis.call('HDEL', KEYS[1], field)
    superseded = ARGV[4] == 'VERIFIED'
  else
    redis.call('HSET', KEYS[1], field, 'b:' .. tag)
  end
end
if not KEYS[3] then return {'OK'} end
if superseded then
  redis.call('HSET', KEYS[4], 'superseded_after', '1')
  return {'SUPERSEDED'}
end
redis.call('ZREM', KEYS[3], 'place:' .. ARGV[2])
redis.call('DEL', KEYS[4])
return {'OK'}

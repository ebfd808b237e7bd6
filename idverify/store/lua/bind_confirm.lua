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
-- Step by step, a place taken (or found bound: AGAIN) whose account is no member once this step
-- is done, in a record left without members, answers LAST with its tag, and the intent stays
-- until the caller has dropped the organization's names (drop_names.lua) and removes it: the
-- names leave the index with the last account, as a cancellation's identity step has them do.
-- Its account was refused at the commit (cancelled meanwhile), or bound and then cancelled before
-- this step, whose cancellation may have dropped the names before the binding's names step
-- indexed them again (bind_names.lua). Decided again from the record on a repeat, so a binding
-- that took a place meanwhile keeps the names. On one node the steps are one script with no
-- intent, and none of that can come between them.
-- KEYS: identity, identity accounts, intents, the intent's record
-- ARGV: account pseudonym, verification id, the commit's reply (bind_commit.lua: its status third)
-- Replies: {'OK'}; {'SUPERSEDED'} the account is to be superseded, the intent kept until then;
--   {'LAST', claim tag} the organization's names to drop, the intent kept until then; {'RETRY'} a
--   move of the record is in flight; {'MOVED'} the record moved (or is gone).
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
local placed = redis.call('HMGET', KEYS[4], 'decision', 'name_tag')
if (placed[1] == 'PLACED' or placed[1] == 'AGAIN') and (placed[2] or '') ~= ''
  and redis.call('HEXISTS', KEYS[1], field) == 0 and redis.call('SCARD', KEYS[2]) == 0 then
  return {'LAST', placed[2]}
end
redis.call('ZREM', KEYS[3], 'place:' .. ARGV[2])
redis.call('DEL', KEYS[4])
return {'OK'}

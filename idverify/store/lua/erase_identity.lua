-- An identity's erasure, once, when due (docs/ARCHITECTURE.md, "3.3 Erasure": one script, in
-- the identity's slot): the queue entry is removed in the same step, so a second worker racing
-- for it finds it gone. It deletes the identity record (with its members' claim tags) and its
-- account set, unless an account is bound to it again; a kept one loses the tags of accounts no
-- longer bound (member_fields). An account's erasure is erase_account.lua's and erase_minutes.lua's.
-- Step by step, an identity with a binding's place still being finished (its intent
-- 'place:<vf id>' pending, a worker killed after the commit) waits for the repairer, as an
-- account waits for its cancellation (erase_account.lua): that repair indexes the organization's
-- names again and relies on its confirm finding the record without members (LAST) to drop them;
-- erased first, the confirm would find nothing, which it cannot tell from a pepper move beyond
-- its forwarding record, and the names would stay indexed, held by no one (docs/ARCHITECTURE.md,
-- "3.1 Binding"). Intents are few (sequences in flight) and live in the identity's slot.
-- KEYS: erasure queue, audit log, identity, identity accounts, then step by step the intents
-- ARGV: queue member ('i:<identity ref>'), request json
-- Replies: {'OK'} erased or kept in use; {'GONE'} not queued or not due, moving out, or a place
--   of it still being finished (the next round).
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > NOW then return {'GONE'} end
-- A re-indexing moving it out (move_out.lua): its erasure moves with it, and is due there.
if redis.call('HEXISTS', KEYS[3], 'moving_to') == 1 then return {'GONE'} end
if KEYS[5] then
  local ref = string.sub(ARGV[1], 3)
  local records = string.sub(KEYS[5], 1, -#'intents' - 1) .. 'intent:'
  for _, member in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
    if string.sub(member, 1, 6) == 'place:' and redis.call('HGET', records .. member, 'ref') == ref then
      return {'GONE'}
    end
  end
end
local base = cjson.decode(ARGV[2])
if redis.call('SCARD', KEYS[4]) == 0 then
  redis.call('DEL', KEYS[3], KEYS[4])
  audit(KEYS[2], base, {type = 'identity.erased', outcome = 'erased', reason = ''})
else
  member_fields(KEYS[3], KEYS[4])
  audit(KEYS[2], base, {type = 'identity.erased', outcome = 'kept', reason = 'IDENTITY_IN_USE'})
end
redis.call('ZREM', KEYS[1], ARGV[1])
return {'OK'}

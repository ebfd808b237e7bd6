-- An identity's erasure, once, when due (docs/ARCHITECTURE.md, "3.3 Erasure": one script, in
-- the identity's slot): the queue entry is removed in the same step, so a second worker racing
-- for it finds it gone. It deletes the identity record (with its members' claim tags) and its
-- account set, unless an account is bound to it again; a kept one loses the tags of accounts no
-- longer bound (member_fields). An account's erasure is erase_account.lua's and erase_minutes.lua's.
-- KEYS: erasure queue, audit log, identity, identity accounts
-- ARGV: queue member ('i:<identity ref>'), request json
-- Replies: {'OK'} erased or kept in use; {'GONE'} not queued or not due, or moving out.
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > NOW then return {'GONE'} end
-- A re-indexing moving it out (move_out.lua): its erasure moves with it, and is due there.
if redis.call('HEXISTS', KEYS[3], 'moving_to') == 1 then return {'GONE'} end
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

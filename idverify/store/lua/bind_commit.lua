-- A binding's fourth step, in the account's slot (docs/ARCHITECTURE.md, "3.1 Binding"): the
-- account half of the identity step's decision (bind_account in the prelude) and the verification
-- finished, VERIFIED or REJECTED, with their entries in the order one script wrote them: the
-- claim established, the account updated, bound or refused, the verification's. The caller is
-- answered after this step. An account cancelled since the account's step, or bound to another
-- identity meanwhile, is refused here (the confirm then removes its place: the one undo).
-- Step by step, the verification gets its TTL back (its session's end, or a minute from now if
-- that passed while it was in flight, so that the caller can still read its answer; a repair
-- of the identity's confirm after it is gone reads the account: intent_take.lua) and the
-- account's 'binding' and
-- the intent 'bind:<vf id>' are removed. Idempotent: a verification no longer in flight (a
-- repeat, or a cancellation or withdrawal that ended it first) answers DONE and writes nothing
-- but that clean-up.
-- KEYS: verification, audit log, account, consent record (chained in a start: none), intents, the
--   intent's record
-- ARGV: request json, then the identity step's reply (bind_place.lua)
-- Replies: {'OK', record, status} finished now; {'DONE', record, status} before; {'NOT_FOUND'}.
local READABLE_AFTER_COMMIT_MS = 60000
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOT_FOUND'} end
local vf = hgetall(KEYS[1])
-- Step by step the account's step marked it (and the intent keys are given); chained, it ran
-- just before in the same script.
local stepwise = vf.binding == '1'
local function cleared()
  if not stepwise then return end
  redis.call('HDEL', KEYS[1], 'binding')
  redis.call('PEXPIREAT', KEYS[1], math.max(tonumber(vf.expires_ms), NOW + READABLE_AFTER_COMMIT_MS))
  if redis.call('HGET', KEYS[3], 'binding') == vf.id then redis.call('HDEL', KEYS[3], 'binding') end
  redis.call('ZREM', KEYS[5], 'bind:' .. vf.id)
  redis.call('DEL', KEYS[6])
end
-- Ended (by this step before, or by a cancellation or a withdrawal), or not in flight as its
-- account's step left it: nothing to bind.
local ended = vf.status == 'VERIFIED' or vf.status == 'REJECTED' or vf.status == 'EXPIRED'
if ended or not (stepwise or KEYS[5] == nil) then
  cleared()
  return {'DONE', redis.call('HGETALL', KEYS[1]), vf.status}
end
local base = event_base(vf, ARGV[1], KEYS[3])
local d = {decision = ARGV[2], reason = ARGV[3], established = ARGV[7] == '1'}
vf.name_tag, vf.establishes = ARGV[4], ARGV[5]
-- The claim the identity's step established stands, whatever becomes of this account.
if d.established then audit(KEYS[2], base, {type = 'claim.established', outcome = 'established', reason = ''}) end
local acct = redis.call('HMGET', KEYS[3], 'cancelled_ms', 'identity')
local status = 'REJECTED'
local reason
if acct[1] then
  reason = 'ACCOUNT_CANCELLED'
elseif acct[2] and acct[2] ~= vf.identity then
  reason = 'ACCOUNT_BOUND_TO_OTHER_IDENTITY'
else
  status, reason = bind_account(KEYS[3], vf, d, d.decision == 'AGAIN' and acct[2] == vf.identity, KEYS[2], base)
end
finish(KEYS[1], KEYS[2], base, vf, status, reason, true)
if KEYS[4] and status == 'VERIFIED' then redis.call('PERSIST', KEYS[4]) end
cleared()
return {'OK', redis.call('HGETALL', KEYS[1]), status}

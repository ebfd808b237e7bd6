-- How a binding's verification ended, read in the account's bucket (docs/ARCHITECTURE.md, "3.1
-- Binding") for the repairer's take of a 'place:' intent (intent_take.lua), which runs in the
-- identity's bucket and cannot read the verification or the account itself. A read: the take is
-- given its answer, which may be stale by then; intent_take.lua says why that is safe.
-- KEYS: verification, the account the intent names
-- ARGV: account pseudonym, identity ref (both the intent's, as read)
-- Replies: {'LIVE'} not ended (its binding still to finish, or a verification whose account's step
--   a failover lost: either may still bind, so the place waits); {'VERIFIED'} ended bound, for
--   this account; {'REJECTED'} ended otherwise. A verification gone (its session ended before the
--   repair came): its account says, 'VERIFIED' when bound to the intent's identity.
local vf = hgetall(KEYS[1])
if not vf.status then
  return {redis.call('HGET', KEYS[2], 'identity') == ARGV[2] and 'VERIFIED' or 'REJECTED'}
end
if vf.status == 'VERIFIED' then return {vf.acct == ARGV[1] and 'VERIFIED' or 'REJECTED'} end
if vf.status == 'REJECTED' or vf.status == 'EXPIRED' then return {'REJECTED'} end
return {'LIVE'}

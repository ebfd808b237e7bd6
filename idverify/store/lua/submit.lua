-- Judges one answer to a verification's challenge and, for a right one, binds the account: on
-- one node (standalone, Sentinel) a binding's five steps (docs/ARCHITECTURE.md, "3.1 Binding")
-- run here one after the other, in one atomic script with one round trip, each step's reply
-- passed to the next as a Cluster's runner passes it (store/binding_steps.py). Scripts.py
-- defines each step as a function of its own KEYS and ARGV before this body (bind_judge,
-- bind_place, bind_supersede, bind_commit, bind_confirm), and bind_after_account, which runs
-- those after the account's: nothing can come between them, so the account's step writes no
-- intent and no place is pending past this script.
-- KEYS: verification, audit log, account, identity, identity accounts, failure counter, the
--   account's consent record (made lasting once the account is bound, as ConsentFlow.keep does)
-- ARGV: answer digest (hex), binding limit, failure window ms, request json
--   [, verdict, reason, vendor code]: a vendor-judged challenge (face liveness) passes the
--   vendor's verdict ('pass' or 'fail') instead of a digest; it is final either way and never
--   touches the wrong-code counter.
-- Replies: {'OK', record} | {'NOT_FOUND'} | {'STATE', record} | {'MOVED'} | {'RETRY'} (a move of
--   the identity in flight: identity_move_reply)
-- Step by step the identity's step answers MOVED or RETRY (bind_place.lua), after the judge; here
-- nothing can come between the steps, so the identity is asked first, before the judge writes,
-- where the judge would have gone on to it: a verification waiting for its answer.
local waiting = redis.call('HMGET', KEYS[1], 'status', 'binding', 'name_binding_seen')
if waiting[1] == 'CHALLENGE_SENT' and waiting[2] ~= '1' then
  local moved = identity_move_reply(KEYS[4], {name_binding_seen = waiting[3]})
  if moved then return moved end
end
local judged = bind_judge({KEYS[1], KEYS[2], KEYS[3], KEYS[6]},
  {ARGV[1], ARGV[3], ARGV[4], ARGV[5] or '', ARGV[6] or '', ARGV[7] or '', '', ARGV[2]})
if judged[1] ~= 'BINDING' then return judged end
local committed = bind_after_account(judged, {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7]}, ARGV[2], ARGV[4])
return {'OK', committed[2]}

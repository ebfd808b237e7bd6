-- A binding's count of a refused claim, in the counter's slot (docs/ARCHITECTURE.md, "3.1
-- Binding"): run when the identity's step refused the place and the refusal counts against its
-- name's claim refusals (bind_place.lua's 'counted'), before the commit (bind_commit.lua), so that
-- no refusal the caller is answered was left uncounted. refuse_counted.lua reads the counter.
-- Step by step a repair runs this again (from the 'bind:' intent, the place answering its kept
-- decision): the marker, set with the counter's window in the same slot, makes it count once per
-- verification. The marker outlives the count it marks (both have the window's length, the
-- counter's from its first count), so a repeat however late never counts one refusal twice in a
-- live window. On one node the steps are one script, which no repeat can split: no marker.
-- KEYS: the name's claim-refusal counter, then step by step the verification's marker
-- ARGV: none
-- Replies: {'OK'} counted now; {'DONE'} counted before.
if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', CLAIM_REFUSALS_WINDOW_MS) then
  return {'DONE'}
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], CLAIM_REFUSALS_WINDOW_MS) end
return {'OK'}

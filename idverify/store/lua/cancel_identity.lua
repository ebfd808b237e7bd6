-- A cancellation's second step, in the identity's slot: the account leaves the identity's
-- members (the idacc set and its m: field in the identity record). Idempotent by the account's
-- pseudonym: removing an absent member changes nothing, so a repeat answers as the first run did.
-- When no member is left, the identity's erasure is queued (NX: a first due time stays).
-- A record marked moving_to is frozen as the move read it, and the member's place is freed where
-- the move takes it: the move copies the member to the new ref, may merge it there with members
-- bound under the new ref, and its settling step (move_settle.lua) drops it, since its account,
-- cancelled first, follows neither ref. Only that step sees the merged record, so it alone
-- decides whether the member was the identity's last (docs/ARCHITECTURE.md, "3.4 Re-indexing").
-- A member already gone from the marked record left it before the move read it: its first run
-- decided then, and a repeat decides again from the record as it stands, as without a move.
-- KEYS: identity, identity accounts, erasure queue
-- ARGV: account pseudonym, identity ref, due ms
-- Replies: {'KEPT'} other accounts are bound to it; {'LAST'} none is (the organization's names
--   go next, drop_names.lua); {'MOVING'} the record is moving and still holds the member (the
--   move's settling step frees its place and decides; nothing is queued or dropped on this
--   word); {'GONE'} no such identity record (erased since, or a ref that never was one: nothing
--   to queue, and no names are dropped on its word), or only a move's forwarding record (the
--   identity lives on at 'moved_to', where the move's settling step dropped this member).
if redis.call('HEXISTS', KEYS[1], 'moving_to') == 1 and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return {'MOVING'}
end
redis.call('SREM', KEYS[2], ARGV[1])
-- Its member field goes with it (no longer a member's), and so do any fields 0.1.0's
-- cancellations left.
member_fields(KEYS[1], KEYS[2])
if redis.call('SCARD', KEYS[2]) > 0 then return {'KEPT'} end
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'moved_to') == 1 then
  return {'GONE'}
end
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], 'i:' .. ARGV[2])
return {'LAST'}

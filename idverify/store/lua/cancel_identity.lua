-- A cancellation's second step, in the identity's slot: the account leaves the identity's
-- members (the idacc set and its m: field in the identity record). Idempotent by the account's
-- pseudonym: removing an absent member changes nothing, so a repeat answers as the first run did.
-- When no member is left, the identity's erasure is queued (NX: a first due time stays) and,
-- step by step, the word is written in the record (LAST_FIELD, 'last:<tag>'): the names' step
-- comes later in the tenant's slot, and a re-indexing that reads the record before it carries
-- the word to the new ref, where its settling step drops the names once no member of either ref
-- is left (a repair here then finds GONE). On one node the names' step is in the same EVAL, and
-- no word is written.
-- A record marked moving_to is frozen as the move read it, and the member's place is freed where
-- the move takes it: the move copies the member to the new ref, may merge it there with members
-- bound under the new ref, and its settling step (move_settle.lua) drops it, since its account,
-- cancelled first, follows neither ref. Only that step sees the merged record, so it alone
-- decides whether the member was the identity's last (docs/ARCHITECTURE.md, "3.4 Re-indexing").
-- A member already gone from the marked record left it before the move read it: its first run
-- decided then. If that run's word is in the record, the move read it too and its settling step
-- decides (MOVING again: a LAST here would drop names a member at the new ref still holds);
-- otherwise (a cancellation without a tag, no names to drop) it decides again from the record as
-- it stands, as without a move. Nothing is written to the frozen record.
-- KEYS: identity, identity accounts, erasure queue
-- ARGV: account pseudonym, identity ref, due ms, the claim tag whose names the names' step drops
--   after LAST ('': none, or one EVAL with it)
-- Replies: {'KEPT'} other accounts are bound to it; {'LAST'} none is (the organization's names
--   go next, drop_names.lua); {'MOVING'} the record is moving and still holds the member, or
--   holds this cancellation's word (the move's settling step frees its place and decides;
--   nothing is queued or dropped on this word); {'GONE'} no such identity record (erased since,
--   or a ref that never was one: nothing to queue, and no names are dropped on its word), or only
--   a move's forwarding record (the identity lives on at 'moved_to', where the move's settling
--   step dropped this member, or found this cancellation's word).
local moving = redis.call('HEXISTS', KEYS[1], 'moving_to') == 1
if moving and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return {'MOVING'} end
redis.call('SREM', KEYS[2], ARGV[1])
-- Its member field goes with it (no longer a member's), and so do any fields 0.1.0's
-- cancellations left.
member_fields(KEYS[1], KEYS[2])
if redis.call('SCARD', KEYS[2]) > 0 then return {'KEPT'} end
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'moved_to') == 1 then
  return {'GONE'}
end
local word = ARGV[4] ~= '' and LAST_FIELD .. ARGV[4]
if moving and word and redis.call('HEXISTS', KEYS[1], word) == 1 then return {'MOVING'} end
if word and not moving then redis.call('HSET', KEYS[1], word, '1') end
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], 'i:' .. ARGV[2])
return {'LAST'}

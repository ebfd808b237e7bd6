-- A re-indexing's step in a member's account slot: its reference follows the identity to the new
-- ref, only if it still holds the old one. An account that holds neither (cancelled, erased, or
-- its binding still pending) is left alone and named in the reply, so that the new record's
-- settling step (move_settle.lua) drops the place a cancellation racing the move could not reach.
-- KEYS: account
-- ARGV: old ref, new ref
-- Replies: {'OK'} pointed anew; {'DONE'} it pointed there already (a repeat); {'SKIP', its
--   erasure's due ms or ''} it holds neither ref.
local held = redis.call('HMGET', KEYS[1], 'identity', 'erase_due_ms')
if held[1] == ARGV[2] then return {'DONE'} end
if held[1] ~= ARGV[1] then return {'SKIP', held[2] or ''} end
redis.call('HSET', KEYS[1], 'identity', ARGV[2])
return {'OK'}

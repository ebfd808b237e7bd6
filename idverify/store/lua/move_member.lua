-- A re-indexing's step in a member's account slot: its reference follows the identity to the new
-- ref, only if it still holds the old one (cancelled, or bound elsewhere since: left alone).
-- KEYS: account
-- ARGV: old ref, new ref
-- Replies: {'OK'} pointed anew; {'SKIP'} it did not hold the old ref (or it is done already).
if redis.call('HGET', KEYS[1], 'identity') ~= ARGV[1] then return {'SKIP'} end
redis.call('HSET', KEYS[1], 'identity', ARGV[2])
return {'OK'}
